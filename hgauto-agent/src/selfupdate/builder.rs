//! [`SelfUpdateBuilder`]: how a [`SelfUpdate`] is configured and checked.

use std::path::PathBuf;
use std::time::Duration;

use super::{SelfUpdate, UpdateRepo};
use hgauto_ci::checkout::CheckoutOptions;
use hgauto_core::clock::{self, SharedClock};
use hgauto_core::error::{Error, Result};

/// Builds a [`SelfUpdate`]: the updater itself, checked by [`build`](Self::build).
#[derive(Debug)]
pub struct SelfUpdateBuilder {
    inner: SelfUpdate,
}

impl SelfUpdateBuilder {
    /// Watches a repository; working copies are updated in the order given.
    pub fn repository(mut self, repo: UpdateRepo) -> Self {
        self.inner.repos.push(repo);
        self
    }

    /// No head may have moved for this long before an update (default 10 minutes).
    pub fn quiet_window(mut self, quiet: Duration) -> Self {
        self.inner.quiet = quiet;
        self
    }

    /// A file whose presence applies an update without waiting for the quiet window; it
    /// is removed once the update is applied.
    pub fn ready_flag(mut self, path: impl Into<PathBuf>) -> Self {
        self.inner.ready_flag = Some(path.into());
        self
    }

    /// The check run on the staged new revisions; non-zero blocks the update.
    pub fn check_command(mut self, argv: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.inner.check = Some(argv.into_iter().map(Into::into).collect());
        self
    }

    /// A CI gate (e.g. a script asking whether the revisions are green); non-zero blocks.
    pub fn ci_gate(mut self, argv: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.inner.gate = Some(argv.into_iter().map(Into::into).collect());
        self
    }

    /// Run after the working copies are updated; non-zero rolls them back.
    pub fn hook(mut self, argv: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.inner.hook = Some(argv.into_iter().map(Into::into).collect());
        self
    }

    /// A lock older than this is taken over (default 120 minutes, seed 004's number).
    pub fn stale_lock_after(mut self, age: Duration) -> Self {
        self.inner.stale_lock = age;
        self
    }

    /// The longest a check, gate or hook may run (default 1 hour).
    pub fn command_timeout(mut self, limit: Duration) -> Self {
        self.inner.command_timeout = limit;
        self
    }

    /// The clock quiet windows and "out of sync" are measured with.
    pub fn clock(mut self, clock: SharedClock) -> Self {
        self.inner.clock = clock;
        self
    }

    /// How repositories are read and checked out (default: pooled stores under
    /// `STATE/shares`).
    pub fn checkout_options(mut self, opts: CheckoutOptions) -> Self {
        self.inner.checkout = opts;
        self
    }

    /// The updater, its state directory created.
    pub fn build(self) -> Result<SelfUpdate> {
        let u = self.inner;
        if u.repos.is_empty() {
            return Err(Error::invalid("self-update", "watches no repository"));
        }
        for (i, r) in u.repos.iter().enumerate() {
            // The name is a directory under staging/: `.` and `..` would be the staging
            // area itself or its parent.
            let ok = !matches!(r.name.as_str(), "" | "." | "..")
                && r.name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
            if !ok {
                return Err(Error::invalid(
                    format!("repository name {:?}", r.name),
                    "may hold letters, digits, '-', '_' and '.' only, and is not '.' or '..'",
                ));
            }
            if u.repos[..i].iter().any(|o| o.name == r.name) {
                return Err(Error::invalid(
                    format!("repository name {:?}", r.name),
                    "is used twice",
                ));
            }
        }
        for argv in [&u.check, &u.gate, &u.hook].into_iter().flatten() {
            if argv.is_empty() || argv[0].is_empty() {
                return Err(Error::invalid("self-update command", "needs a program"));
            }
        }
        std::fs::create_dir_all(&u.state_dir)
            .map_err(|e| Error::io("create directory", &u.state_dir, "localhost", e))?;
        Ok(u)
    }
}

impl SelfUpdate {
    /// A builder keeping state in `state_dir`.
    pub fn builder(state_dir: impl Into<PathBuf>) -> SelfUpdateBuilder {
        let state_dir = state_dir.into();
        SelfUpdateBuilder {
            inner: SelfUpdate {
                checkout: CheckoutOptions::new(state_dir.join("shares")),
                state_dir,
                repos: Vec::new(),
                quiet: Duration::from_secs(600),
                ready_flag: None,
                check: None,
                gate: None,
                hook: None,
                stale_lock: Duration::from_secs(120 * 60),
                command_timeout: Duration::from_secs(3600),
                clock: clock::system(),
            },
        }
    }
}
