//! [`checkout`]: robust working copies of git and Mercurial repositories, sharing one
//! pooled store per repository (like Mozilla's robustcheckout).
//!
//! - The store lives under `share_base/<vcs>/<root commit>`: every clone of the same
//!   repository (whatever its URL) shares it. A URL's root commit is remembered in
//!   `share_base/<vcs>/urls.json`, so later checkouts need no network to find the store.
//! - Checkouts share the store (`hg share`; git `clone --shared`, i.e. alternates). The store
//!   pulls only when the wanted revision is missing, or when a branch is asked for.
//! - A revision is a full 40-digit hash; a branch resolves to one, which is returned.
//! - Recovery: a store whose clone was interrupted (no completion marker) or that fails
//!   verification (a missing revlog or pack file) is removed and cloned again; stale locks
//!   are removed (under hgauto's own lock on the store); a destination holding an unrelated
//!   repository is replaced. Network errors are retried under [`RetryPolicy::network`].
//! - `purge`: the working copy ends with exactly the revision's files.

mod git;
mod hg;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::progress::{step, StepProgress};
use crate::retry::RetryPolicy;

/// Which version control system.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Vcs {
    /// git
    Git,
    /// Mercurial
    Hg,
}

impl Vcs {
    fn name(self) -> &'static str {
        match self {
            Vcs::Git => "git",
            Vcs::Hg => "hg",
        }
    }
}

/// What to check out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Want {
    /// A full 40-hex-digit revision.
    Revision(String),
    /// A branch; the revision it points to is resolved (after pulling).
    Branch(String),
}

/// How to check out.
#[derive(Debug, Clone)]
pub struct CheckoutOptions {
    /// Where pooled stores live.
    pub share_base: PathBuf,
    /// Remove untracked and ignored files, so the working copy holds exactly the revision.
    pub purge: bool,
    /// Retries for network failures.
    pub retry: RetryPolicy,
    /// Told of each step (cloning, pulling, updating, repairs) as it starts.
    pub progress: Option<StepProgress>,
}

impl CheckoutOptions {
    /// Stores under `share_base`, no purge, network retries.
    pub fn new(share_base: impl Into<PathBuf>) -> Self {
        CheckoutOptions {
            share_base: share_base.into(),
            purge: false,
            retry: RetryPolicy::network(),
            progress: None,
        }
    }

    /// Sets purge.
    pub fn with_purge(mut self, purge: bool) -> Self {
        self.purge = purge;
        self
    }
}

/// What a checkout did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckoutReport {
    /// The revision now checked out (full hash).
    pub revision: String,
    /// The pooled store used.
    pub store: PathBuf,
    /// The store was cloned by this call.
    pub cloned: bool,
    /// The store pulled from the remote.
    pub pulled: bool,
    /// What was found broken and repaired.
    pub recovered: Vec<String>,
}

/// Runs a VCS command; `Err` carries its stderr.
pub(crate) fn run(program: &str, args: &[&str], cwd: Option<&Path>) -> Result<String> {
    let mut cmd = std::process::Command::new(program);
    cmd.args(args)
        .stdin(Stdio::null())
        .env("HGPLAIN", "1")
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("LC_ALL", "C");
    if let Some(d) = cwd {
        cmd.current_dir(d);
    }
    let out = cmd.output().map_err(|source| Error::Spawn {
        machine: "localhost".into(),
        program: program.into(),
        source,
    })?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    } else {
        Err(Error::CommandFailed {
            machine: "localhost".into(),
            command: format!("{program} {}", args.join(" ")),
            status: crate::command::ExitStatus::Code(out.status.code().unwrap_or(-1)),
            stderr_tail: String::from_utf8_lossy(&out.stderr).into_owned(),
        })
    }
}

/// One VCS's operations on a store and a working copy.
pub(crate) trait Backend {
    /// The root commit of the repository at `url` (may clone into `scratch`).
    fn root_of(&self, url: &str, scratch: &Path) -> Result<String>;
    /// Clones `url` into a new store at `store`.
    fn clone_store(&self, url: &str, store: &Path) -> Result<()>;
    /// Is the store sound (cheap check, then verification)?
    fn verify(&self, store: &Path) -> Result<()>;
    /// Removes stale lock files; returns what was removed.
    fn clear_locks(&self, dir: &Path) -> Vec<String>;
    /// Does the store have `rev`?
    fn has(&self, store: &Path, rev: &str) -> bool;
    /// Pulls from `url` into the store.
    fn pull(&self, store: &Path, url: &str) -> Result<()>;
    /// The revision `branch` points to in the store.
    fn resolve(&self, store: &Path, branch: &str) -> Result<String>;
    /// Is `dest` a working copy sharing `store`?
    fn shares(&self, dest: &Path, store: &Path) -> bool;
    /// Creates `dest` sharing `store` (no files checked out yet).
    fn share(&self, store: &Path, dest: &Path) -> Result<()>;
    /// Updates `dest` to `rev`, discarding local changes; with `purge`, removes extra files.
    fn update(&self, dest: &Path, rev: &str, purge: bool) -> Result<()>;
    /// Is `dir` a repository of this VCS?
    fn is_repo(&self, dir: &Path) -> bool;
}

fn backend(vcs: Vcs) -> &'static dyn Backend {
    match vcs {
        Vcs::Git => &git::Git,
        Vcs::Hg => &hg::Hg,
    }
}

const STORE_OK: &str = ".hgauto-store-ok";

fn is_full_hash(s: &str) -> bool {
    s.len() == 40 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Checks out `want` of the `vcs` repository at `url` into `dest` (see the
/// [module docs](self)). Blocking work runs on a blocking thread.
pub async fn checkout(
    vcs: Vcs,
    url: &str,
    dest: &Path,
    want: &Want,
    opts: &CheckoutOptions,
) -> Result<CheckoutReport> {
    if let Want::Revision(r) = want {
        if !is_full_hash(r) {
            return Err(Error::invalid(
                format!("revision {r:?}"),
                "must be a full 40-digit hash (use Want::Branch for names)",
            ));
        }
    }
    if let Want::Branch(b) = want {
        if b.is_empty() || b.starts_with('-') || b.contains(['\n', '\0']) {
            return Err(Error::invalid(
                format!("branch {b:?}"),
                "is not a branch name",
            ));
        }
    }
    let mut attempt = 0u32;
    loop {
        let (url2, dest2, want2, opts2) =
            (url.to_owned(), dest.to_owned(), want.clone(), opts.clone());
        let result = crate::task::run_blocking("checkout", move || {
            checkout_blocking(vcs, &url2, &dest2, &want2, &opts2)
        })
        .await;
        match result {
            Err(e) if is_network(&e) && attempt < opts.retry.max_retries => {
                let delay = opts.retry.delay(attempt, rand::random::<f64>());
                tracing::warn!(%url, retry = attempt + 1, in_ = ?delay, error = %e, "checkout failed; retrying");
                tokio::time::sleep(delay).await;
                attempt += 1;
            }
            other => return other,
        }
    }
}

/// A failure that talking to the remote again may fix.
fn is_network(e: &Error) -> bool {
    let Error::CommandFailed { stderr_tail, .. } = e else {
        return e.is_retryable();
    };
    let s = stderr_tail.to_ascii_lowercase();
    [
        "could not resolve host",
        "connection refused",
        "connection reset",
        "connection timed out",
        "timed out",
        "unable to access",
        "early eof",
        "remote end hung up",
        "http error",
        "error: 5",
        "abort: error:",
        "temporary failure",
    ]
    .iter()
    .any(|p| s.contains(p))
}

/// An exclusive `flock` on `path`, held while alive.
struct StoreLock(#[allow(dead_code)] std::fs::File);

impl StoreLock {
    fn acquire(path: &Path) -> Result<StoreLock> {
        use std::os::unix::io::AsRawFd;
        let f = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)
            .map_err(|e| Error::io("open", path, "localhost", e))?;
        // SAFETY: flock on an open descriptor we own.
        if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) } != 0 {
            return Err(Error::io(
                "lock",
                path,
                "localhost",
                std::io::Error::last_os_error(),
            ));
        }
        Ok(StoreLock(f))
    }
}

fn checkout_blocking(
    vcs: Vcs,
    url: &str,
    dest: &Path,
    want: &Want,
    opts: &CheckoutOptions,
) -> Result<CheckoutReport> {
    let be = backend(vcs);
    let base = opts.share_base.join(vcs.name());
    std::fs::create_dir_all(&base).map_err(|e| Error::io("create", &base, "localhost", e))?;
    let mut recovered = Vec::new();
    let mut cloned = false;
    let root = {
        let _index = StoreLock::acquire(&base.join("urls.lock"))?;
        let index_path = base.join("urls.json");
        let mut index: BTreeMap<String, String> = std::fs::read(&index_path)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        match index.get(url) {
            Some(root) => root.clone(),
            None => {
                let scratch = tempfile::Builder::new()
                    .prefix(".root-")
                    .tempdir_in(&base)
                    .map_err(|e| Error::io("create", &base, "localhost", e))?;
                step(&opts.progress, &format!("looking up {url}"));
                let root = be.root_of(url, scratch.path())?;
                // A git scratch clone is a full store: keep it if there is none yet.
                let store = base.join(&root);
                if vcs == Vcs::Git
                    && !store.join(STORE_OK).exists()
                    && scratch.path().join("repo").exists()
                {
                    let _ = std::fs::remove_dir_all(&store);
                    std::fs::rename(scratch.path().join("repo"), &store)
                        .map_err(|e| Error::io("rename into", &store, "localhost", e))?;
                    crate::ledger::write_atomic(&store.join(STORE_OK), url.as_bytes())?;
                    cloned = true;
                }
                index.insert(url.to_owned(), root.clone());
                crate::ledger::write_atomic(
                    &index_path,
                    &serde_json::to_vec_pretty(&index).unwrap_or_default(),
                )?;
                root
            }
        }
    };
    let store = base.join(&root);
    let _lock = StoreLock::acquire(&base.join(format!("{root}.lock")))?;
    let mut pulled = false;

    // An interrupted clone, or a corrupt store: start it over.
    if store.exists() && !store.join(STORE_OK).exists() {
        recovered.push(format!("removed the unfinished store {}", store.display()));
        std::fs::remove_dir_all(&store).map_err(|e| Error::io("remove", &store, "localhost", e))?;
    }
    if store.exists() {
        recovered.extend(be.clear_locks(&store));
        if let Err(e) = be.verify(&store) {
            recovered.push(format!(
                "removed the corrupt store {} ({e})",
                store.display()
            ));
            std::fs::remove_dir_all(&store)
                .map_err(|e| Error::io("remove", &store, "localhost", e))?;
        }
    }
    if !store.exists() {
        let tmp = tempfile::Builder::new()
            .prefix(&format!(".{root}-clone-"))
            .tempdir_in(&base)
            .map_err(|e| Error::io("create", &base, "localhost", e))?;
        let staged = tmp.path().join("repo");
        step(
            &opts.progress,
            &format!("cloning {url} into {}", store.display()),
        );
        be.clone_store(url, &staged)?;
        std::fs::rename(&staged, &store)
            .map_err(|e| Error::io("rename into", &store, "localhost", e))?;
        crate::ledger::write_atomic(&store.join(STORE_OK), url.as_bytes())?;
        cloned = true;
    }
    // A wanted revision is looked up by updating to it (one process fewer on the common
    // path); only when that fails does the store pull.
    let (rev, known) = match want {
        Want::Revision(r) => (r.to_ascii_lowercase(), false),
        Want::Branch(b) => {
            if !cloned {
                step(&opts.progress, &format!("pulling {url}"));
                be.pull(&store, url)?;
                pulled = true;
            }
            (be.resolve(&store, b)?, true)
        }
    };

    // The destination: reuse it if it shares this store, else replace a repository there.
    if dest.exists() && !be.shares(dest, &store) {
        let empty = std::fs::read_dir(dest)
            .map(|mut d| d.next().is_none())
            .unwrap_or(false);
        if be.is_repo(dest) {
            recovered.push(format!(
                "replaced the unrelated repository at {}",
                dest.display()
            ));
            std::fs::remove_dir_all(dest).map_err(|e| Error::io("remove", dest, "localhost", e))?;
        } else if empty {
            std::fs::remove_dir(dest).map_err(|e| Error::io("remove", dest, "localhost", e))?;
        } else {
            return Err(Error::invalid(
                format!("checkout destination {}", dest.display()),
                "exists, is not empty and is not a repository (refusing to delete it)",
            ));
        }
    }
    if !dest.exists() {
        if let Some(parent) = dest.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| Error::io("create", parent, "localhost", e))?;
        }
        be.share(&store, dest)?;
    } else {
        recovered.extend(be.clear_locks(dest));
    }
    for fixed in &recovered {
        step(&opts.progress, &format!("repaired: {fixed}"));
    }
    step(
        &opts.progress,
        &format!("updating {} to {rev}", dest.display()),
    );
    if let Err(e) = be.update(dest, &rev, opts.purge) {
        if known || pulled || be.has(&store, &rev) {
            return Err(e);
        }
        step(
            &opts.progress,
            &format!("{rev} is not in the store: pulling {url}"),
        );
        be.pull(&store, url)?;
        pulled = true;
        if !be.has(&store, &rev) {
            return Err(Error::NotFound {
                what: format!("revision {rev} in {url}"),
            });
        }
        be.update(dest, &rev, opts.purge)?;
    }
    Ok(CheckoutReport {
        revision: rev,
        store,
        cloned,
        pulled,
        recovered,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn short_revisions_and_odd_branches_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let o = CheckoutOptions::new(dir.path());
        let e = checkout(
            Vcs::Git,
            "x",
            &dir.path().join("d"),
            &Want::Revision("abc123".into()),
            &o,
        )
        .await
        .unwrap_err();
        assert!(
            e.to_string().contains("abc123") && e.to_string().contains("40"),
            "{e}"
        );
        let e = checkout(
            Vcs::Hg,
            "x",
            &dir.path().join("d"),
            &Want::Branch("-rf".into()),
            &o,
        )
        .await
        .unwrap_err();
        assert!(e.to_string().contains("-rf"), "{e}");
    }

    #[test]
    fn network_failures_are_told_apart_from_others() {
        let failed = |stderr: &str| Error::CommandFailed {
            machine: "localhost".into(),
            command: "git fetch".into(),
            status: crate::command::ExitStatus::Code(128),
            stderr_tail: stderr.into(),
        };
        assert!(is_network(&failed(
            "fatal: unable to access 'https://x/': Could not resolve host: x"
        )));
        assert!(is_network(&failed("abort: error: Connection refused")));
        assert!(!is_network(&failed("fatal: bad object HEAD")));
    }
}
