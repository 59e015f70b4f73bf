//! [`SelfUpdate`]: workers that update themselves from production branches, safely (seed
//! 004). Each [`update_once`](SelfUpdate::update_once) round reads the production branch heads of several
//! repositories (git or Mercurial, through the checkout pooled store) and applies an
//! update only when:
//! 1. a watched head moved;
//! 2. the quiet window has passed: no head moved in any watched repository for that long,
//!    measured from when this watcher first saw each head (not from commit dates); or the
//!    ready flag file exists;
//! 3. the check command passes on the new revisions, checked out in a staging area
//!    (seed 004's `checkconfig`);
//! 4. the CI gate command, if any, passes.
//!
//! It then updates the working copies in the order the repositories were given and runs
//! the hook (e.g. reconfigure), under a lock held with a heartbeat ([`UpdateLock`]: taken
//! over at once from a crashed holder, and from a live one only when its heartbeat is
//! stale). When the hook fails, the working copies go back to the revisions that were
//! running, the hook runs again on them, and the failed heads are recorded and skipped
//! until a branch moves. The state ([`UpdateState`]: running revisions, heads seen, "out
//! of sync since", the last error, the rejected heads) is kept in
//! `STATE/selfupdate.json`, and [`UpdateState::nagios`] turns it into a monitoring check.
//! Commands run in a process group of their own, killed whole at their timeout.
//!
//! Commands (check, gate, hook) are argument vectors, never shell strings. They get
//! `HGAUTO_UPDATE_<NAME>_DIR`, `_REV` and `_OLD_REV` for each repository (`<NAME>` in upper
//! case, other characters as `_`), the directory being the staged tree for the check and
//! the gate, and the working copy for the hook.

mod builder;
mod file;
mod lock;
mod state;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use builder::SelfUpdateBuilder;
pub use file::{RepositoryFile, SelfUpdateFile};
pub use lock::UpdateLock;
pub use state::{RejectedHeads, SeenHead, UpdateState};

use hgauto_ci::checkout::{checkout, resolve_heads, working_revision, CheckoutOptions, Vcs, Want};
use hgauto_core::clock::SharedClock;
use hgauto_core::error::{Error, Result};

/// One watched repository: its production branch and the working copy that runs it.
/// `Debug` shows the URL as [`redact_url`](hgauto_core::redact::redact_url) does.
#[derive(Clone, PartialEq, Eq)]
pub struct UpdateRepo {
    /// A short name (in the state, the status and the environment of commands).
    pub name: String,
    /// git or Mercurial.
    pub vcs: Vcs,
    /// Where to pull from.
    pub url: String,
    /// The production branch.
    pub branch: String,
    /// The working copy this machine runs from.
    pub working_copy: PathBuf,
}

impl std::fmt::Debug for UpdateRepo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpdateRepo")
            .field("name", &self.name)
            .field("vcs", &self.vcs)
            .field("url", &hgauto_core::redact::redact_url(&self.url))
            .field("branch", &self.branch)
            .field("working_copy", &self.working_copy)
            .finish()
    }
}

/// What one update round did. As data (JSON, Python) it is an object whose `outcome` names the
/// variant in snake case (`in_sync`, `rolled_back`), beside the variant's fields.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum UpdateOutcome {
    /// Every working copy runs its branch head.
    InSync,
    /// A head moved, and the quiet window has not passed (until `until_ms`).
    Waiting {
        /// When the window passes if nothing moves again.
        until_ms: u64,
    },
    /// The check command or the CI gate refused the new revisions.
    Blocked {
        /// What refused, and what it said.
        reason: String,
    },
    /// The update was applied: the revisions now running.
    Applied {
        /// Revision by repository name.
        running: BTreeMap<String, String>,
    },
    /// The hook failed and the working copies were put back (and the hook run again on
    /// them). The heads are recorded as rejected, and skipped until a branch moves.
    RolledBack {
        /// What the hook said.
        reason: String,
    },
    /// The heads are the ones whose update failed before; nothing is tried until a branch
    /// moves.
    Skipped {
        /// Which heads, and why they were rejected.
        reason: String,
    },
    /// Another updater holds a fresh lock.
    Locked,
}

/// Updates working copies from production branches (see the [module docs](self)).
#[derive(Debug)]
pub struct SelfUpdate {
    state_dir: PathBuf,
    repos: Vec<UpdateRepo>,
    quiet: Duration,
    ready_flag: Option<PathBuf>,
    check: Option<Vec<String>>,
    gate: Option<Vec<String>>,
    hook: Option<Vec<String>>,
    stale_lock: Duration,
    command_timeout: Duration,
    clock: SharedClock,
    checkout: CheckoutOptions,
}

/// `name 0123456789ab, other ...`: heads as a line shows them.
pub(crate) fn short_heads(heads: &BTreeMap<String, String>) -> String {
    heads
        .iter()
        .map(|(name, rev)| format!("{name} {}", &rev[..rev.len().min(12)]))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `HGAUTO_UPDATE_<NAME>_<what>`.
fn env_name(repo: &str, what: &str) -> String {
    format!("HGAUTO_UPDATE_{}_{what}", hgauto_core::env::name_part(repo))
}

impl SelfUpdate {
    fn state_path(&self) -> PathBuf {
        self.state_dir.join("selfupdate.json")
    }

    /// The state as last saved.
    pub fn state(&self) -> Result<UpdateState> {
        UpdateState::load(&self.state_path())
    }

    /// The Nagios-style check of the saved state (see [`UpdateState::nagios`]).
    pub fn nagios(&self, warn_minutes: u64, crit_minutes: u64) -> (i32, String) {
        match self.state() {
            Ok(s) => s.nagios(self.clock.now_ms(), warn_minutes, crit_minutes),
            Err(e) => (3, format!("SELFUPDATE UNKNOWN - {e}")),
        }
    }

    /// Runs `argv` in `cwd` with `env`; `Ok(Err(reason))` when it exits non-zero.
    async fn run(
        &self,
        what: &str,
        argv: &[String],
        cwd: &Path,
        env: &[(String, String)],
    ) -> Result<std::result::Result<(), String>> {
        let mut cmd = tokio::process::Command::new(&argv[0]);
        cmd.args(&argv[1..])
            .current_dir(cwd)
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(std::process::Stdio::null());
        // In a group of its own: a timeout kills what the command started, too.
        let out = hgauto_core::backend::process_group::output_in_group(
            cmd,
            &argv[0],
            self.command_timeout,
        )
        .await?;
        let Some(out) = out else {
            return Ok(Err(format!(
                "{what} did not finish within {} s",
                self.command_timeout.as_secs()
            )));
        };
        if out.status.success() {
            return Ok(Ok(()));
        }
        let stderr = String::from_utf8_lossy(&out.stderr);
        let last = stderr
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("");
        let how = out
            .status
            .code()
            .map_or_else(|| "was killed".to_owned(), |c| format!("exited {c}"));
        Ok(Err(format!("{what} {how}: {}", last.trim())))
    }

    /// The environment commands get: each repository's directory (from `dir`), new and
    /// old revision.
    fn env(
        &self,
        dir: impl Fn(&UpdateRepo) -> PathBuf,
        heads: &BTreeMap<String, String>,
        running: &BTreeMap<String, String>,
    ) -> Vec<(String, String)> {
        let mut env = Vec::new();
        for r in &self.repos {
            env.push((env_name(&r.name, "DIR"), dir(r).display().to_string()));
            env.push((env_name(&r.name, "REV"), heads[&r.name].clone()));
            env.push((
                env_name(&r.name, "OLD_REV"),
                running.get(&r.name).cloned().unwrap_or_default(),
            ));
        }
        env
    }

    /// Checks out `heads` into each repository's working copy, in order. When one fails,
    /// those already updated go back to `running`, in reverse order, and the first error
    /// is returned (with the rollback's, if that failed too).
    async fn update_working_copies(
        &self,
        heads: &BTreeMap<String, String>,
        running: &BTreeMap<String, String>,
    ) -> Result<()> {
        for (i, r) in self.repos.iter().enumerate() {
            let want = Want::Revision(heads[&r.name].clone());
            if let Err(e) = checkout(r.vcs, &r.url, &r.working_copy, &want, &self.checkout).await {
                return match self.roll_back(&self.repos[..i], running).await {
                    Ok(()) => Err(e),
                    Err(back) => Err(Error::invalid(
                        format!("self-update of {}", r.name),
                        format!("{e}; and rolling back the others failed: {back}"),
                    )),
                };
            }
        }
        Ok(())
    }

    /// Puts `repos` back to `running`, last first.
    async fn roll_back(
        &self,
        repos: &[UpdateRepo],
        running: &BTreeMap<String, String>,
    ) -> Result<()> {
        for r in repos.iter().rev() {
            if let Some(rev) = running.get(&r.name) {
                let want = Want::Revision(rev.clone());
                checkout(r.vcs, &r.url, &r.working_copy, &want, &self.checkout).await?;
            }
        }
        Ok(())
    }

    /// Runs an update round every `every`, forever, telling `on_round` of each result. A failed round (a
    /// remote that is down, a full disk, a working copy that refuses) is retried with
    /// backoff (1 s, 2 s, 4 s ... but never longer than `every`), never the end of the
    /// watch: configuration errors are caught when the updater is built. Stop it by
    /// dropping the future (the lock and any command in flight are released).
    pub async fn watch(&self, every: Duration, mut on_round: impl FnMut(&Result<UpdateOutcome>)) {
        let mut failures = 0u32;
        loop {
            let result = self.update_once().await;
            on_round(&result);
            let delay = match &result {
                Ok(_) => {
                    failures = 0;
                    every
                }
                Err(e) => {
                    let backoff = hgauto_core::retry::RetryPolicy {
                        max_retries: u32::MAX,
                        base_delay: Duration::from_secs(1),
                        factor: 2.0,
                        max_delay: every,
                        jitter: hgauto_core::retry::Jitter::None,
                    }
                    .delay(failures, 0.0);
                    failures = failures.saturating_add(1);
                    tracing::warn!(error = %e, retry_in = ?backoff, "self-update round failed");
                    backoff
                }
            };
            tokio::time::sleep(delay).await;
        }
    }

    /// One update round (see the module docs). Errors reading repositories or running commands
    /// are recorded as the state's last error and returned.
    pub async fn update_once(&self) -> Result<UpdateOutcome> {
        let now = self.clock.now_ms();
        let lock_path = self.state_dir.join("selfupdate.lock");
        let stale = self.stale_lock.as_millis() as u64;
        let Some(_lock) = UpdateLock::take(&lock_path, self.clock.clone(), stale)? else {
            return Ok(UpdateOutcome::Locked);
        };
        let mut state = self.state()?;
        let result = self.update_locked(&mut state, now).await;
        match &result {
            Ok(
                UpdateOutcome::Blocked { reason }
                | UpdateOutcome::RolledBack { reason }
                | UpdateOutcome::Skipped { reason },
            ) => {
                state.last_error = Some(reason.clone());
            }
            Ok(_) => {}
            Err(e) => state.last_error = Some(e.to_string()),
        }
        state.save(&self.state_path(), now)?;
        result
    }

    async fn update_locked(&self, state: &mut UpdateState, now: u64) -> Result<UpdateOutcome> {
        let mut heads = BTreeMap::new();
        for r in &self.repos {
            let found = resolve_heads(
                r.vcs,
                &r.url,
                std::slice::from_ref(&r.branch),
                &self.checkout,
            )
            .await?;
            let head = found
                .get(&r.branch)
                .cloned()
                .ok_or_else(|| Error::NotFound {
                    what: format!("branch {} of repository {}", r.branch, r.name),
                })?;
            if !state.running.contains_key(&r.name) {
                // First round: the working copy runs what it has, or the head if it is new.
                if !r.working_copy.exists() {
                    let want = Want::Revision(head.clone());
                    checkout(r.vcs, &r.url, &r.working_copy, &want, &self.checkout).await?;
                }
                let rev = working_revision(r.vcs, &r.working_copy, &self.checkout).await?;
                state.running.insert(r.name.clone(), rev);
            }
            if state.seen.get(&r.name).map(|s| &s.revision) != Some(&head) {
                state.seen.insert(
                    r.name.clone(),
                    SeenHead {
                        revision: head.clone(),
                        first_seen_ms: now,
                    },
                );
            }
            heads.insert(r.name.clone(), head);
        }
        let behind: Vec<&UpdateRepo> = self
            .repos
            .iter()
            .filter(|r| state.running.get(&r.name) != heads.get(&r.name))
            .collect();
        if behind.is_empty() {
            state.out_of_sync_since_ms = None;
            state.last_error = None;
            state.rejected = None;
            return Ok(UpdateOutcome::InSync);
        }
        match &state.rejected {
            Some(r) if r.heads == heads => {
                return Ok(UpdateOutcome::Skipped {
                    reason: format!(
                        "{} failed before ({}); skipped until a branch moves",
                        short_heads(&heads),
                        r.reason
                    ),
                });
            }
            Some(_) => state.rejected = None,
            None => {}
        }
        let since = behind
            .iter()
            .map(|r| state.seen[&r.name].first_seen_ms)
            .min()
            .unwrap_or(now);
        state.out_of_sync_since_ms =
            Some(state.out_of_sync_since_ms.map_or(since, |s| s.min(since)));
        let last_move = state
            .seen
            .values()
            .map(|s| s.first_seen_ms)
            .max()
            .unwrap_or(now);
        let until_ms = last_move + self.quiet.as_millis() as u64;
        let ready = self.ready_flag.as_ref().is_some_and(|f| f.exists());
        if now < until_ms && !ready {
            return Ok(UpdateOutcome::Waiting { until_ms });
        }
        let staging = self.state_dir.join("staging");
        for r in &self.repos {
            let want = Want::Revision(heads[&r.name].clone());
            checkout(r.vcs, &r.url, &staging.join(&r.name), &want, &self.checkout).await?;
        }
        let staged = self.env(|r| staging.join(&r.name), &heads, &state.running);
        for (what, argv) in [("check command", &self.check), ("CI gate", &self.gate)] {
            if let Some(argv) = argv {
                if let Err(reason) = self.run(what, argv, &staging, &staged).await? {
                    return Ok(UpdateOutcome::Blocked { reason });
                }
            }
        }
        let running = state.running.clone();
        self.update_working_copies(&heads, &running).await?;
        if let Some(hook) = &self.hook {
            let live = self.env(|r| r.working_copy.clone(), &heads, &running);
            let cwd = self.repos[0].working_copy.clone();
            if let Err(reason) = self.run("hook", hook, &cwd, &live).await? {
                self.roll_back(&self.repos, &running).await?;
                // The old revisions are back: the hook runs again so that what it set up
                // (a reconfigure, a restart) matches them.
                let old = self.env(|r| r.working_copy.clone(), &running, &heads);
                let again = match self.run("hook", hook, &cwd, &old).await? {
                    Ok(()) => "the hook ran again on the old revisions".to_owned(),
                    Err(e) => format!("running it again on the old revisions failed too: {e}"),
                };
                let reason = format!("{reason}; rolled back, and {again}");
                state.rejected = Some(RejectedHeads {
                    heads: heads.clone(),
                    reason: reason.clone(),
                    at_ms: now,
                });
                return Ok(UpdateOutcome::RolledBack { reason });
            }
        }
        state.running = heads.clone();
        state.out_of_sync_since_ms = None;
        state.last_error = None;
        state.last_applied_ms = Some(now);
        if let Some(flag) = &self.ready_flag {
            let _ = std::fs::remove_file(flag);
        }
        Ok(UpdateOutcome::Applied { running: heads })
    }
}
