//! Build outputs to publish: [`Artifact`].

use std::io::Read;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

/// A file to publish under a name, with its sha256 computed when it was described.
/// Publishers verify the digest while they copy, so a file changed since then is caught.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Artifact {
    /// The file on this host.
    pub path: PathBuf,
    /// The published name: one path component, no `/`, `\`, `..` or NUL.
    pub name: String,
    /// Lowercase hex sha256 of the content.
    pub sha256: String,
    /// Size in bytes.
    pub size: u64,
}

impl Artifact {
    /// Describes `path`, published under its own file name.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let name = path.file_name().and_then(|n| n.to_str()).ok_or_else(|| {
            Error::invalid(
                format!("artifact path {}", path.display()),
                "has no UTF-8 file name",
            )
        })?;
        Self::named(path, name)
    }

    /// Describes `path`, published as `name`.
    pub fn named(path: impl AsRef<Path>, name: impl Into<String>) -> Result<Self> {
        let path = path.as_ref().to_owned();
        let name = name.into();
        validate_name(&name)?;
        let (sha256, size) = sha256_file(&path)?;
        Ok(Artifact {
            path,
            name,
            sha256,
            size,
        })
    }
}

/// Checks that `name` is a single, harmless path component.
pub fn validate_name(name: &str) -> Result<()> {
    let bad = name.is_empty()
        || name == "."
        || name == ".."
        || name.contains(['/', '\\', '\0'])
        || name.starts_with('.')
        || name.chars().any(char::is_control);
    if bad {
        return Err(Error::invalid(
            format!("artifact name {name:?}"),
            "must be one non-hidden path component without '/', '\\', control characters or NUL",
        ));
    }
    Ok(())
}

/// Checks every name in a publish batch, and that no name appears twice.
pub fn validate_batch(artifacts: &[Artifact]) -> Result<()> {
    let mut names = std::collections::HashSet::new();
    for a in artifacts {
        validate_name(&a.name)?;
        if !names.insert(a.name.as_str()) {
            return Err(Error::invalid(
                format!("artifact name {:?}", a.name),
                "appears twice in one publish",
            ));
        }
    }
    Ok(())
}

/// The sha256 (lowercase hex) and size of a file, streamed in 256 KiB blocks.
pub fn sha256_file(path: &Path) -> Result<(String, u64)> {
    let mut f = std::fs::File::open(path).map_err(|e| Error::io("open", path, "localhost", e))?;
    sha256_reader(&mut f).map_err(|e| Error::io("read", path, "localhost", e))
}

/// The sha256 (lowercase hex) and length of everything `r` yields.
pub fn sha256_reader(r: &mut dyn Read) -> std::io::Result<(String, u64)> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    let mut total = 0u64;
    loop {
        let n = r.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        total += n as u64;
    }
    Ok((hex::encode(hasher.finalize()), total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_escape_are_rejected() {
        for bad in [
            "", ".", "..", "../x", "a/b", "a\\b", ".hidden", "a\nb", "a\0b",
        ] {
            assert!(validate_name(bad).is_err(), "{bad:?}");
        }
        for good in ["hgauto-0.1.tar.gz", "wheel_1.0-py3-none-any.whl", "ü.zip"] {
            assert!(validate_name(good).is_ok(), "{good:?}");
        }
    }

    #[test]
    fn digest_of_known_content() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("abc.txt");
        std::fs::write(&p, "abc").unwrap();
        let a = Artifact::from_file(&p).unwrap();
        assert_eq!(
            a.sha256,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(a.size, 3);
        assert_eq!(a.name, "abc.txt");
    }
}
