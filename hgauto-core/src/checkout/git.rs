//! The git side of [`checkout`](super::checkout): a `--mirror` store, working copies that
//! borrow its objects (`clone --shared`, i.e. alternates).

use std::path::Path;

use super::{run, Backend};
use crate::error::{Error, Result};

pub(crate) struct Git;

fn s(p: &Path) -> &str {
    p.to_str().unwrap_or_default()
}

fn canonical(p: &Path) -> Option<std::path::PathBuf> {
    std::fs::canonicalize(p).ok()
}

impl Backend for Git {
    fn root_of(&self, url: &str, scratch: &Path) -> Result<String> {
        let repo = scratch.join("repo");
        self.clone_store(url, &repo)?;
        let roots = run(
            "git",
            &["rev-list", "--max-parents=0", "--all"],
            Some(&repo),
        )?;
        let mut roots: Vec<&str> = roots.lines().collect();
        roots.sort();
        roots
            .first()
            .map(|r| (*r).to_owned())
            .ok_or_else(|| Error::invalid(format!("repository {url}"), "has no commits"))
    }

    fn clone_store(&self, url: &str, store: &Path) -> Result<()> {
        run(
            "git",
            &["clone", "--mirror", "--quiet", "--", url, s(store)],
            None,
        )
        .map(drop)
    }

    fn verify(&self, store: &Path) -> Result<()> {
        // Every ref tip must be readable (`objecttype` reads the object): a lost pack file
        // shows up here, in one process.
        run(
            "git",
            &["for-each-ref", "--format=%(objecttype)"],
            Some(store),
        )
        .map(drop)
        .map_err(|e| Error::Integrity {
            what: format!("git store {}", store.display()),
            expected: "every ref tip readable".into(),
            actual: match e {
                Error::CommandFailed { stderr_tail, .. } => stderr_tail.trim().to_owned(),
                other => other.to_string(),
            },
        })
    }

    fn clear_locks(&self, dir: &Path) -> Vec<String> {
        let git_dir = if dir.join(".git").is_dir() {
            dir.join(".git")
        } else {
            dir.to_path_buf()
        };
        let mut removed = Vec::new();
        let mut stack = vec![git_dir];
        while let Some(d) = stack.pop() {
            let Ok(entries) = std::fs::read_dir(&d) else {
                continue;
            };
            for e in entries.flatten() {
                let p = e.path();
                if p.file_name().is_some_and(|n| n == "objects") {
                    continue;
                }
                if p.is_dir() {
                    stack.push(p);
                } else if p.extension().is_some_and(|x| x == "lock")
                    && std::fs::remove_file(&p).is_ok()
                {
                    removed.push(format!("removed the stale lock {}", p.display()));
                }
            }
        }
        removed
    }

    fn has(&self, store: &Path, rev: &str) -> bool {
        run(
            "git",
            &["cat-file", "-e", &format!("{rev}^{{commit}}")],
            Some(store),
        )
        .is_ok()
    }

    fn pull(&self, store: &Path, url: &str) -> Result<()> {
        run(
            "git",
            &[
                "fetch",
                "--quiet",
                "--prune",
                "--",
                url,
                "+refs/heads/*:refs/heads/*",
                "+refs/tags/*:refs/tags/*",
            ],
            Some(store),
        )
        .map(drop)
    }

    fn resolve(&self, store: &Path, branch: &str) -> Result<String> {
        run(
            "git",
            &[
                "rev-parse",
                "--verify",
                "--quiet",
                &format!("refs/heads/{branch}^{{commit}}"),
            ],
            Some(store),
        )
        .map_err(|_| Error::NotFound {
            what: format!("branch {branch}"),
        })
    }

    fn shares(&self, dest: &Path, store: &Path) -> bool {
        let alt = dest.join(".git/objects/info/alternates");
        let Ok(text) = std::fs::read_to_string(alt) else {
            return false;
        };
        let want = canonical(&store.join("objects"));
        text.lines()
            .any(|l| canonical(Path::new(l.trim())) == want && want.is_some())
    }

    fn share(&self, store: &Path, dest: &Path) -> Result<()> {
        run(
            "git",
            &[
                "clone",
                "--shared",
                "--no-checkout",
                "--quiet",
                "--",
                s(store),
                s(dest),
            ],
            None,
        )
        .map(drop)
    }

    fn update(&self, dest: &Path, rev: &str, purge: bool) -> Result<()> {
        run(
            "git",
            &["checkout", "--quiet", "--force", "--detach", rev],
            Some(dest),
        )?;
        if purge {
            run("git", &["clean", "-ffdxq"], Some(dest))?;
        }
        Ok(())
    }

    fn is_repo(&self, dir: &Path) -> bool {
        dir.join(".git").exists() || (dir.join("HEAD").is_file() && dir.join("objects").is_dir())
    }
}
