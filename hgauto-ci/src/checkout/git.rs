//! The git side of [`checkout`](super::checkout): a bare store filled by `fetch` (so no
//! remote URL, and no credential in one, is stored), working copies that borrow its objects
//! (`clone --shared`, i.e. alternates).

use std::path::Path;
use std::time::SystemTime;

use super::remote::Remote;
use super::run::run_with_env;
use super::{run, Backend, Ctx};
use hgauto_core::error::{Error, Result};

pub(crate) struct Git;

fn s(p: &Path) -> &str {
    p.to_str().unwrap_or_default()
}

fn canonical(p: &Path) -> Option<std::path::PathBuf> {
    std::fs::canonicalize(p).ok()
}

impl Backend for Git {
    fn root_of(&self, cx: &Ctx, url: &str, scratch: &Path) -> Result<String> {
        let repo = scratch.join("repo");
        self.clone_store(cx, url, &repo)?;
        let roots = run(
            cx,
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

    fn clone_store(&self, cx: &Ctx, url: &str, store: &Path) -> Result<()> {
        run(
            cx,
            "git",
            &["init", "--bare", "--quiet", "--", s(store)],
            None,
        )?;
        self.pull(cx, store, url)
    }

    fn verify(&self, cx: &Ctx, store: &Path) -> Result<()> {
        // Every ref tip must be readable (`objecttype` reads the object): a lost pack file
        // shows up here, in one process.
        run(
            cx,
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

    fn clear_locks(&self, cx: &Ctx, dir: &Path) -> Vec<String> {
        let git_dir = if dir.join(".git").is_dir() {
            dir.join(".git")
        } else {
            dir.to_path_buf()
        };
        let mut removed = Vec::new();
        if let Some(holder) = super::locks::process_in(&git_dir) {
            tracing::debug!(dir = %git_dir.display(), holder, "a process works in the repository; locks kept");
            return removed;
        }
        let now = SystemTime::now();
        let old_enough = |p: &Path| {
            std::fs::metadata(p)
                .and_then(|m| m.modified())
                .is_ok_and(|t| now.duration_since(t).unwrap_or_default() >= cx.stale_lock_age)
        };
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
                    && old_enough(&p)
                    && std::fs::remove_file(&p).is_ok()
                {
                    removed.push(format!("removed the stale lock {}", p.display()));
                }
            }
        }
        removed
    }

    fn has(&self, cx: &Ctx, store: &Path, rev: &str) -> bool {
        run(
            cx,
            "git",
            &["cat-file", "-e", &format!("{rev}^{{commit}}")],
            Some(store),
        )
        .is_ok()
    }

    fn pull(&self, cx: &Ctx, store: &Path, url: &str) -> Result<()> {
        // gc runs in the foreground, so none outlives our lock on the store; FETCH_HEAD
        // would record the URL. Credentials go through the environment, not argv.
        let remote = Remote::parse(url);
        run_with_env(
            cx,
            "git",
            &[
                "-c",
                "gc.autoDetach=false",
                "fetch",
                "--quiet",
                "--prune",
                "--no-write-fetch-head",
                "--",
                &remote.url,
                "+refs/heads/*:refs/heads/*",
                "+refs/tags/*:refs/tags/*",
            ],
            Some(store),
            &remote.git_env(),
        )
        .map(drop)
    }

    fn resolve(&self, cx: &Ctx, store: &Path, branch: &str) -> Result<String> {
        run(
            cx,
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

    fn share(&self, cx: &Ctx, store: &Path, dest: &Path) -> Result<()> {
        run(
            cx,
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

    fn update(&self, cx: &Ctx, dest: &Path, rev: &str, purge: bool) -> Result<()> {
        run(
            cx,
            "git",
            &["checkout", "--quiet", "--force", "--detach", rev],
            Some(dest),
        )?;
        if purge {
            run(cx, "git", &["clean", "-ffdxq"], Some(dest))?;
        }
        Ok(())
    }

    fn is_repo(&self, dir: &Path) -> bool {
        dir.join(".git").exists() || (dir.join("HEAD").is_file() && dir.join("objects").is_dir())
    }

    fn checked_out(&self, cx: &Ctx, dest: &Path) -> Result<String> {
        run(cx, "git", &["rev-parse", "--verify", "HEAD"], Some(dest))
    }
}
