//! Which files a release expects in its directory, and finding them there.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::checksums::SUMS_NAME;
use super::sign::SIGNATURE_SUFFIX;
use hgauto_core::error::{Error, Result};

/// One expected artifact: an exact file name, or a glob pattern (`*`, `?`, `[...]`) with the
/// number of files it must match (`None`: at least one).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Expected {
    /// Exactly this file name.
    Name(String),
    /// Files matching a pattern.
    Glob {
        /// The pattern, matched against file names.
        pattern: String,
        /// How many files it must match; `None` for one or more.
        count: Option<usize>,
    },
}

impl Expected {
    /// `text` as a glob pattern when it has `*`, `?` or `[` in it (with `count`, `None`:
    /// at least one), else as an exact name (and `count`, if given, must be 1).
    pub fn pattern(text: impl Into<String>, count: Option<usize>) -> Result<Self> {
        let text = text.into();
        if text.contains(['*', '?', '[']) {
            return Ok(Expected::Glob {
                pattern: text,
                count,
            });
        }
        match count {
            None | Some(1) => Ok(Expected::Name(text)),
            Some(n) => Err(Error::invalid(
                format!("expected artifact {text:?}"),
                format!("is one name, not a pattern, so it cannot match {n} files"),
            )),
        }
    }

    /// The command line's form, `PATTERN` or `PATTERN=COUNT`, by the rule of
    /// [`pattern`](Self::pattern): `dist/*.whl=4`, `hgauto-1.0.tar.gz`.
    pub fn parse(spec: &str) -> Result<Self> {
        match spec.rsplit_once('=') {
            Some((text, n)) => {
                let n = n.parse::<usize>().map_err(|_| {
                    Error::invalid(
                        format!("expected artifact {spec:?}"),
                        "the count after '=' is not a number",
                    )
                })?;
                Expected::pattern(text, Some(n))
            }
            None => Expected::pattern(spec, None),
        }
    }
}

/// What was found in the directory.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Collected {
    /// The expected files' names, sorted.
    pub selected: Vec<String>,
    /// Files no expectation matched, left alone (only when unexpected files are allowed).
    pub ignored: Vec<String>,
}

/// Whether `name` is one a release writes itself (checksums and signatures).
pub fn is_generated(name: &str) -> bool {
    name == SUMS_NAME || name.ends_with(SIGNATURE_SUFFIX)
}

/// Matches the regular files of `dir` (not hidden, not generated) against `expected`. Every
/// problem is reported at once, in one [`Error::InvalidInput`]: missing names, patterns
/// matching the wrong number of files, and unexpected files unless `allow_unexpected`.
pub fn collect(dir: &Path, expected: &[Expected], allow_unexpected: bool) -> Result<Collected> {
    let what = || format!("release in {}", dir.display());
    if expected.is_empty() {
        return Err(Error::invalid(
            what(),
            "expects no artifact: name at least one",
        ));
    }
    let patterns = expected
        .iter()
        .map(|e| match e {
            Expected::Name(n) => {
                hgauto_core::artifact::validate_name(n)?;
                Ok(None)
            }
            Expected::Glob { pattern, .. } => glob::Pattern::new(pattern).map(Some).map_err(|e| {
                Error::invalid(format!("artifact pattern {pattern:?}"), e.to_string())
            }),
        })
        .collect::<Result<Vec<_>>>()?;

    let mut files = Vec::new();
    let entries = std::fs::read_dir(dir).map_err(|e| Error::io("list", dir, "localhost", e))?;
    for entry in entries {
        let entry = entry.map_err(|e| Error::io("list", dir, "localhost", e))?;
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
            continue;
        };
        // Through symlinks: a collected artifact may be a link to the build's output.
        let is_file = std::fs::metadata(entry.path()).is_ok_and(|m| m.is_file());
        if is_file && !name.starts_with('.') && !is_generated(&name) {
            files.push(name);
        }
    }
    files.sort();

    let mut problems = Vec::new();
    let mut matched = vec![false; files.len()];
    for (e, pattern) in expected.iter().zip(&patterns) {
        let hits: Vec<usize> = (0..files.len())
            .filter(|&i| match (e, pattern) {
                (Expected::Name(n), _) => files[i] == *n,
                (_, Some(p)) => p.matches(&files[i]),
                _ => false,
            })
            .collect();
        for &i in &hits {
            matched[i] = true;
        }
        let names = || {
            hits.iter()
                .map(|&i| files[i].as_str())
                .collect::<Vec<_>>()
                .join(", ")
        };
        match e {
            Expected::Name(n) if hits.is_empty() => problems.push(format!("{n} is missing")),
            Expected::Glob {
                pattern,
                count: Some(c),
            } if hits.len() != *c => problems.push(format!(
                "{c} file(s) should match {pattern:?}, {} do: [{}]",
                hits.len(),
                names()
            )),
            Expected::Glob {
                pattern,
                count: None,
            } if hits.is_empty() => problems.push(format!("no file matches {pattern:?}")),
            _ => {}
        }
    }
    let (selected, unexpected): (Vec<_>, Vec<_>) =
        files.into_iter().zip(matched).partition(|(_, m)| *m);
    let selected: Vec<String> = selected.into_iter().map(|(n, _)| n).collect();
    let unexpected: Vec<String> = unexpected.into_iter().map(|(n, _)| n).collect();
    if !unexpected.is_empty() && !allow_unexpected {
        problems.push(format!("unexpected file(s): {}", unexpected.join(", ")));
    }
    if !problems.is_empty() {
        return Err(Error::invalid(
            what(),
            format!("{}; nothing was published", problems.join("; ")),
        ));
    }
    Ok(Collected {
        selected,
        ignored: unexpected,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_form_follows_the_pattern_rule() {
        let glob = |p: &str, count| Expected::Glob {
            pattern: p.into(),
            count,
        };
        assert_eq!(Expected::parse("*.whl=4").unwrap(), glob("*.whl", Some(4)));
        assert_eq!(Expected::parse("*.whl").unwrap(), glob("*.whl", None));
        assert_eq!(
            Expected::parse("a.tar.gz").unwrap(),
            Expected::Name("a.tar.gz".into())
        );
        assert_eq!(
            Expected::parse("a.tar.gz=1").unwrap(),
            Expected::Name("a.tar.gz".into())
        );
        let e = Expected::parse("a.tar.gz=3").unwrap_err().to_string();
        assert!(e.contains("one name, not a pattern"), "{e}");
        let e = Expected::parse("*.whl=many").unwrap_err().to_string();
        assert!(e.contains("not a number"), "{e}");
    }

    fn dir_with(names: &[&str]) -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        for n in names {
            std::fs::write(d.path().join(n), n).unwrap();
        }
        d
    }

    fn glob(p: &str, c: Option<usize>) -> Expected {
        Expected::Glob {
            pattern: p.into(),
            count: c,
        }
    }

    #[test]
    fn names_and_counted_patterns_select_files() {
        let d = dir_with(&[
            "a-1.0.tar.gz",
            "a-1.0-py3-none-any.whl",
            "b.whl",
            "SHA256SUMS",
            "x.whl.minisig",
            ".hidden",
        ]);
        let c = collect(
            d.path(),
            &[
                Expected::Name("a-1.0.tar.gz".into()),
                glob("*.whl", Some(2)),
            ],
            false,
        )
        .unwrap();
        assert_eq!(
            c.selected,
            vec!["a-1.0-py3-none-any.whl", "a-1.0.tar.gz", "b.whl"]
        );
        assert!(c.ignored.is_empty());
    }

    #[test]
    fn every_problem_is_named_at_once() {
        let d = dir_with(&["a.whl", "stray.log"]);
        let e = collect(
            d.path(),
            &[
                Expected::Name("a.tar.gz".into()),
                glob("*.whl", Some(2)),
                glob("*.zip", None),
            ],
            false,
        )
        .unwrap_err()
        .to_string();
        for needle in [
            "a.tar.gz is missing",
            "2 file(s) should match \"*.whl\", 1 do: [a.whl]",
            "no file matches \"*.zip\"",
            "unexpected file(s): stray.log",
        ] {
            assert!(e.contains(needle), "{needle:?} not in {e}");
        }
        let c = collect(d.path(), &[glob("*.whl", None)], true).unwrap();
        assert_eq!(c.ignored, vec!["stray.log"]);
    }

    #[test]
    fn bad_patterns_and_names_are_refused() {
        let d = dir_with(&[]);
        assert!(collect(d.path(), &[glob("[", None)], false).is_err());
        assert!(collect(d.path(), &[Expected::Name("../x".into())], false).is_err());
        assert!(collect(d.path(), &[], false).is_err());
    }
}
