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
//!   are removed (under hgauto's own lock on the store, and only when no process is at work
//!   in the store: a git lock must also be older than [`CheckoutOptions::stale_lock_age`],
//!   a Mercurial lock must name a dead process of this host); a destination that is a
//!   repository hgauto did not make is never deleted: it is updated in place from the
//!   store, and refused (naming the path and what would be lost) when it has local
//!   changes, commits the remote lacks, or, with `purge`, untracked files. Network errors are retried under
//!   [`RetryPolicy::network`]. Our fetches run `git gc --auto` in the foreground
//!   (`gc.autoDetach=false`), so no gc of ours outlives the lock.
//! - Every git or hg process has a deadline ([`CheckoutOptions::timeout`]); a stalled one is
//!   killed with its whole process group and the attempt fails with [`Error::Timeout`].
//! - `purge`: the working copy ends with exactly the revision's files.
//! - Credentials in the URL never reach a log line, an error, a progress line or a file:
//!   stores are filled by `init` + `fetch`/`pull` (so no remote URL is stored in them), the
//!   URL index is keyed by a hash, and tool output is scrubbed (see [`hgauto_core::redact`]).

mod adopt;
mod git;
mod hg;
mod locks;
mod remote;
mod store;

mod run;

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::progress::{step, StepProgress};
use hgauto_core::error::{Error, Result};
use hgauto_core::redact::{redact_url, Secrets};
use hgauto_core::retry::RetryPolicy;
pub(crate) use run::{run, Ctx};
pub use store::{resolve_heads, working_revision};

/// Which version control system.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Vcs {
    /// git
    Git,
    /// Mercurial
    Hg,
}

/// `git` or `hg`; anything else is `InvalidInput` naming it.
impl std::str::FromStr for Vcs {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        hgauto_core::suggest::one_of("vcs", s, &[("git", Vcs::Git), ("hg", Vcs::Hg)])
    }
}

impl Vcs {
    /// `git` or `hg`.
    pub fn name(self) -> &'static str {
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

impl Want {
    /// What a caller's optional `revision` and `branch` ask for: the revision, else the
    /// branch, else the repository's usual default branch (`main` for git, `default` for
    /// hg). Giving both is an error: which one wins would be a guess.
    pub fn from_options(
        vcs: Vcs,
        revision: Option<String>,
        branch: Option<String>,
    ) -> Result<Self> {
        match (revision, branch) {
            (Some(_), Some(_)) => Err(Error::invalid(
                "checkout",
                "give a revision or a branch, not both",
            )),
            (Some(r), None) => Ok(Want::Revision(r)),
            (None, Some(b)) => Ok(Want::Branch(b)),
            (None, None) => Ok(Want::Branch(
                match vcs {
                    Vcs::Git => "main",
                    Vcs::Hg => "default",
                }
                .into(),
            )),
        }
    }
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
    /// Longest any one git or hg process may run (a clone included); past it the process
    /// group is killed and the attempt fails with [`Error::Timeout`] (retried like a
    /// network error). Default: one hour.
    pub timeout: Duration,
    /// A git `*.lock` file younger than this is left alone even when nothing seems to hold
    /// the store: it may belong to a git process that is starting. Default: two minutes.
    pub stale_lock_age: Duration,
}

/// The pooled stores' default home: `vcs-stores` under the state directory
/// ([`default_state_dir`](hgauto_core::env::default_state_dir)), so every checkout on a machine
/// (from Rust, Python or the `hgauto` command) shares one store per repository unless told
/// otherwise.
pub fn default_share_base() -> Result<PathBuf> {
    Ok(share_base_in(&hgauto_core::env::default_state_dir()?))
}

/// The pooled stores' home under the state directory `state_dir`.
pub fn share_base_in(state_dir: &Path) -> PathBuf {
    state_dir.join("vcs-stores")
}

impl CheckoutOptions {
    /// Stores under [`default_share_base`], no purge, network retries.
    pub fn from_env() -> Result<Self> {
        Ok(Self::new(default_share_base()?))
    }

    /// Stores under `share_base` (or, when `None`, [`default_share_base`]).
    pub fn with_share_base_or_default(share_base: Option<PathBuf>) -> Result<Self> {
        match share_base {
            Some(dir) => Ok(Self::new(dir)),
            None => Self::from_env(),
        }
    }

    /// Stores under `share_base`, no purge, network retries.
    pub fn new(share_base: impl Into<PathBuf>) -> Self {
        CheckoutOptions {
            share_base: share_base.into(),
            purge: false,
            retry: RetryPolicy::network(),
            progress: None,
            timeout: Duration::from_secs(3600),
            stale_lock_age: Duration::from_secs(120),
        }
    }

    /// Sets the per-process deadline.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
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

/// One VCS's operations on a store and a working copy.
/// Every method that runs the VCS gets the [`Ctx`] that bounds and scrubs it.
pub(crate) trait Backend {
    /// The root commit of the repository at `url` (may clone into `scratch`).
    fn root_of(&self, cx: &Ctx, url: &str, scratch: &Path) -> Result<String>;
    /// Fills a new store at `store` from `url` (recording no URL in it).
    fn clone_store(&self, cx: &Ctx, url: &str, store: &Path) -> Result<()>;
    /// Is the store sound (cheap check, then verification)?
    fn verify(&self, cx: &Ctx, store: &Path) -> Result<()>;
    /// Removes stale lock files; returns what was removed.
    fn clear_locks(&self, cx: &Ctx, dir: &Path) -> Vec<String>;
    /// Does the store have `rev`?
    fn has(&self, cx: &Ctx, store: &Path, rev: &str) -> bool;
    /// Pulls from `url` into the store.
    fn pull(&self, cx: &Ctx, store: &Path, url: &str) -> Result<()>;
    /// The revision `branch` points to in the store.
    fn resolve(&self, cx: &Ctx, store: &Path, branch: &str) -> Result<String>;
    /// Is `dest` a working copy sharing `store`?
    fn shares(&self, dest: &Path, store: &Path) -> bool;
    /// Creates `dest` sharing `store` (no files checked out yet).
    fn share(&self, cx: &Ctx, store: &Path, dest: &Path) -> Result<()>;
    /// Updates `dest` to `rev`, discarding local changes; with `purge`, removes extra files.
    fn update(&self, cx: &Ctx, dest: &Path, rev: &str, purge: bool) -> Result<()>;
    /// Is `dir` a repository of this VCS?
    fn is_repo(&self, dir: &Path) -> bool;
    /// The revision the working copy `dest` has checked out.
    fn checked_out(&self, cx: &Ctx, dest: &Path) -> Result<String>;
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
    let secrets = Secrets::of_urls([url]);
    let shown = redact_url(url);
    let mut attempt = 0u32;
    loop {
        let (url2, dest2, want2, opts2) =
            (url.to_owned(), dest.to_owned(), want.clone(), opts.clone());
        let cx = Ctx {
            timeout: opts.timeout,
            shown: shown.clone(),
            stale_lock_age: opts.stale_lock_age,
        };
        let result = hgauto_core::backend::task::run_blocking("checkout", move || {
            checkout_blocking(&cx, vcs, &url2, &dest2, &want2, &opts2)
        })
        .await
        .map_err(|e| secrets.scrub_error(e));
        match result {
            Err(e) if is_network(&e) && attempt < opts.retry.max_retries => {
                let delay = opts.retry.delay(attempt, rand::random::<f64>());
                tracing::warn!(url = %shown, retry = attempt + 1, in_ = ?delay, error = %e, "checkout failed; retrying");
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

/// Pulls the store because `rev` is not in it; `NotFound` when the remote lacks it too.
fn pull_for(
    cx: &Ctx,
    be: &dyn Backend,
    store: &Path,
    url: &str,
    rev: &str,
    opts: &CheckoutOptions,
) -> Result<()> {
    let shown = cx.shown.as_str();
    step(
        &opts.progress,
        &format!("{rev} is not in the store: pulling {shown}"),
    );
    be.pull(cx, store, url)?;
    if !be.has(cx, store, rev) {
        return Err(Error::NotFound {
            what: format!("revision {rev} in {shown}"),
        });
    }
    Ok(())
}

fn checkout_blocking(
    cx: &Ctx,
    vcs: Vcs,
    url: &str,
    dest: &Path,
    want: &Want,
    opts: &CheckoutOptions,
) -> Result<CheckoutReport> {
    let be = backend(vcs);
    let shown = cx.shown.as_str();
    let mut recovered = Vec::new();
    let (store, _lock, cloned) = store::open(cx, vcs, url, opts, &mut recovered)?;
    let mut pulled = false;
    // A wanted revision is looked up by updating to it (one process fewer on the common
    // path); only when that fails does the store pull.
    let (rev, known) = match want {
        Want::Revision(r) => (r.to_ascii_lowercase(), false),
        Want::Branch(b) => {
            if !cloned {
                step(&opts.progress, &format!("pulling {shown}"));
                be.pull(cx, &store, url)?;
                pulled = true;
            }
            (be.resolve(cx, &store, b)?, true)
        }
    };

    // The destination: reuse it if it shares this store; a repository hgauto did not make
    // is adopted in place (never deleted); an empty directory is filled.
    if dest.exists() && !be.shares(dest, &store) {
        let empty = std::fs::read_dir(dest)
            .map(|mut d| d.next().is_none())
            .unwrap_or(false);
        if be.is_repo(dest) {
            if !known && !be.has(cx, &store, &rev) {
                pull_for(cx, be, &store, url, &rev, opts)?;
                pulled = true;
            }
            step(
                &opts.progress,
                &format!("updating the existing clone {} to {rev}", dest.display()),
            );
            recovered.extend(be.clear_locks(cx, dest));
            adopt::adopt(cx, vcs, &store, dest, &rev, opts.purge)?;
            recovered.push(format!(
                "updated the existing clone at {} in place",
                dest.display()
            ));
            return Ok(CheckoutReport {
                revision: rev,
                store,
                cloned,
                pulled,
                recovered,
            });
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
        be.share(cx, &store, dest)?;
    } else {
        recovered.extend(be.clear_locks(cx, dest));
    }
    for fixed in &recovered {
        step(&opts.progress, &format!("repaired: {fixed}"));
    }
    step(
        &opts.progress,
        &format!("updating {} to {rev}", dest.display()),
    );
    if let Err(e) = be.update(cx, dest, &rev, opts.purge) {
        if known || pulled || be.has(cx, &store, &rev) {
            return Err(e);
        }
        pull_for(cx, be, &store, url, &rev, opts)?;
        pulled = true;
        be.update(cx, dest, &rev, opts.purge)?;
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
            status: hgauto_core::ExitStatus::Code(128),
            stderr_tail: stderr.into(),
        };
        assert!(is_network(&failed(
            "fatal: unable to access 'https://x/': Could not resolve host: x"
        )));
        assert!(is_network(&failed("abort: error: Connection refused")));
        assert!(!is_network(&failed("fatal: bad object HEAD")));
    }
}
