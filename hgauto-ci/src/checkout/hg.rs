//! The Mercurial side of [`checkout`](super::checkout): a store without a working copy
//! (`init` + `pull`, so no remote URL, and no credential in one, is stored) and working
//! copies made by `hg share`.

use std::path::Path;

use super::remote::Remote;
use super::{run, Backend, Ctx};
use hgauto_core::error::{Error, Result};

pub(crate) struct Hg;

fn s(p: &Path) -> &str {
    p.to_str().unwrap_or_default()
}

const SHARE: &str = "extensions.share=";
const PURGE: &str = "extensions.purge=";

impl Backend for Hg {
    fn root_of(&self, cx: &Ctx, url: &str, scratch: &Path) -> Result<String> {
        // `-T '{node}'`: the full hash and nothing else (`--debug` would print protocol
        // chatter before it for http URLs). Credentials need a repository whose hgrc can
        // hold them: an empty one in the scratch directory.
        let remote = Remote::parse(url);
        let mut args = vec!["identify", "-r", "0", "-T", "{node}"];
        let repo = scratch.join("auth");
        let _auth = match remote.creds {
            Some(_) => {
                run(cx, "hg", &["init", "--", s(&repo)], None)?;
                args.extend(["-R", s(&repo)]);
                remote.hg_auth(&repo)?
            }
            None => None,
        };
        args.extend(["--", &remote.url]);
        let out = run(cx, "hg", &args, None)?;
        Some(out.trim())
            .filter(|h| super::is_full_hash(h))
            .map(str::to_owned)
            .ok_or_else(|| Error::invalid(format!("repository {url}"), "has no commits"))
    }

    fn clone_store(&self, cx: &Ctx, url: &str, store: &Path) -> Result<()> {
        run(cx, "hg", &["init", "--", s(store)], None)?;
        self.pull(cx, store, url)
    }

    fn verify(&self, _cx: &Ctx, store: &Path) -> Result<()> {
        // Cheap: the changelog, the manifest, and every revlog the fncache lists must exist
        // (names that need no filename encoding; a lost revlog shows up here).
        let st = store.join(".hg/store");
        let mut missing: Vec<String> = ["00changelog.i", "00manifest.i"]
            .iter()
            .filter(|f| !st.join(f).exists())
            .map(|f| (*f).to_owned())
            .collect();
        if let Ok(fncache) = std::fs::read_to_string(st.join("fncache")) {
            missing.extend(
                fncache
                    .lines()
                    .filter(|l| l.ends_with(".i") && stored_verbatim(l))
                    .filter(|l| !st.join(l).exists())
                    .map(str::to_owned),
            );
        }
        match missing.first() {
            None => Ok(()),
            Some(f) => Err(Error::Integrity {
                what: format!("hg store {}", store.display()),
                expected: format!("revlog {f}"),
                actual: "missing".into(),
            }),
        }
    }

    fn clear_locks(&self, _cx: &Ctx, dir: &Path) -> Vec<String> {
        let host = hgauto_core::session::hostname();
        let mut removed = Vec::new();
        for lock in [dir.join(".hg/wlock"), dir.join(".hg/store/lock")] {
            // Mercurial's lock is a symlink (or file) holding "host:pid".
            let holder = std::fs::read_link(&lock)
                .map(|t| t.to_string_lossy().into_owned())
                .or_else(|_| std::fs::read_to_string(&lock));
            let Ok(holder) = holder else { continue };
            let (h, pid) = holder.rsplit_once(':').unwrap_or((&holder, ""));
            let pid: i32 = pid.trim().parse().unwrap_or(0);
            // Another user's live process answers EPERM: alive, its lock kept.
            let alive = hgauto_core::session::pid_alive(pid);
            if h == host && !alive && std::fs::remove_file(&lock).is_ok() {
                removed.push(format!(
                    "removed the stale lock {} ({holder})",
                    lock.display()
                ));
            }
        }
        removed
    }

    fn has(&self, cx: &Ctx, store: &Path, rev: &str) -> bool {
        run(
            cx,
            "hg",
            &["log", "-R", s(store), "-r", rev, "-T", "{node}"],
            None,
        )
        .is_ok_and(|n| n == rev)
    }

    fn pull(&self, cx: &Ctx, store: &Path, url: &str) -> Result<()> {
        let remote = Remote::parse(url);
        let _auth = remote.hg_auth(store)?;
        run(
            cx,
            "hg",
            &["pull", "-R", s(store), "--quiet", "--", &remote.url],
            None,
        )
        .map(drop)
    }

    fn resolve(&self, cx: &Ctx, store: &Path, branch: &str) -> Result<String> {
        run(
            cx,
            "hg",
            &[
                "log",
                "-R",
                s(store),
                "-b",
                branch,
                "-l",
                "1",
                "-T",
                "{node}",
            ],
            None,
        )
        .ok()
        .filter(|n| super::is_full_hash(n))
        .ok_or_else(|| Error::NotFound {
            what: format!("branch {branch}"),
        })
    }

    fn shares(&self, dest: &Path, store: &Path) -> bool {
        let Ok(text) = std::fs::read_to_string(dest.join(".hg/sharedpath")) else {
            return false;
        };
        let got = std::fs::canonicalize(text.trim()).ok();
        got.is_some() && got == std::fs::canonicalize(store.join(".hg")).ok()
    }

    fn share(&self, cx: &Ctx, store: &Path, dest: &Path) -> Result<()> {
        run(
            cx,
            "hg",
            &[
                "--config",
                SHARE,
                "share",
                "-U",
                "--quiet",
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
            "hg",
            &["update", "-R", s(dest), "-C", "-r", rev, "--quiet"],
            None,
        )?;
        if purge {
            run(
                cx,
                "hg",
                &["--config", PURGE, "purge", "-R", s(dest), "--all"],
                None,
            )?;
        }
        Ok(())
    }

    fn is_repo(&self, dir: &Path) -> bool {
        dir.join(".hg").is_dir()
    }

    fn checked_out(&self, cx: &Ctx, dest: &Path) -> Result<String> {
        run(
            cx,
            "hg",
            &["log", "-R", s(dest), "-r", ".", "-T", "{node}"],
            None,
        )
    }
}

/// True when Mercurial stores the revlog `path` under its own name (no filename
/// encoding: lowercase, no leading or trailing dot, no Windows device names, short).
fn stored_verbatim(path: &str) -> bool {
    let parts: Vec<&str> = path.split('/').collect();
    path.len() < 100
        && parts.iter().enumerate().all(|(i, c)| {
            let is_dir = i + 1 < parts.len();
            !c.is_empty()
                && c.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-.".contains(&b))
                && !c.starts_with('.')
                && !c.ends_with('.')
                && !(is_dir && (c.ends_with(".i") || c.ends_with(".d") || c.ends_with(".hg")))
                && !["aux", "con", "prn", "nul", "com", "lpt"]
                    .iter()
                    .any(|r| c.starts_with(r))
        })
}

#[cfg(test)]
mod tests {
    #[test]
    fn only_verbatim_revlog_names_are_checked() {
        use super::stored_verbatim as v;
        assert!(v("data/file.txt.i"));
        assert!(v("data/src/main-2.c.i"));
        assert!(!v("data/.hgignore.i"));
        assert!(!v("data/README.i"));
        assert!(!v("data/dir.i/x.i"));
        assert!(!v("data/aux.c.i"));
        assert!(!v("data/a_b.i"));
    }
}
