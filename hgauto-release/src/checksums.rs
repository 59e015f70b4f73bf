//! `SHA256SUMS`, in the format `sha256sum -c` reads.

use std::path::Path;

use hgauto_core::artifact::Artifact;
use hgauto_core::backend::fs::write_atomic;
use hgauto_core::error::Result;

/// The checksum file's name.
pub const SUMS_NAME: &str = "SHA256SUMS";

/// One `<sha256>  <name>` line per artifact (two spaces: text mode, as `sha256sum` writes),
/// sorted by name. Artifact names are single path components without control characters
/// or backslashes, so no line needs `sha256sum`'s escaping.
pub fn render(artifacts: &[Artifact]) -> String {
    let mut lines: Vec<String> = artifacts
        .iter()
        .map(|a| format!("{}  {}\n", a.sha256, a.name))
        .collect();
    lines.sort_by(|a, b| a[66..].cmp(&b[66..]));
    lines.concat()
}

/// Writes `SHA256SUMS` for `artifacts` into `dir` (atomically, and only when its content
/// changes) and returns it as an artifact.
pub(super) fn write(dir: &Path, artifacts: &[Artifact]) -> Result<Artifact> {
    let path = dir.join(SUMS_NAME);
    let text = render(artifacts);
    if std::fs::read(&path).ok().as_deref() != Some(text.as_bytes()) {
        write_atomic(&path, text.as_bytes())?;
    }
    Artifact::from_file(&path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sorted_two_space_lines() {
        let a = |name: &str, sha: char| Artifact {
            path: name.into(),
            name: name.into(),
            sha256: sha.to_string().repeat(64),
            size: 1,
        };
        assert_eq!(
            render(&[a("b.whl", 'b'), a("a.tar.gz", 'a')]),
            format!("{}  a.tar.gz\n{}  b.whl\n", "a".repeat(64), "b".repeat(64))
        );
    }
}
