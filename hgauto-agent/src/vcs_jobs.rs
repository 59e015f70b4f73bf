//! [`VcsBranchSource`]: new heads of watched git or Mercurial branches become jobs.
//!
//! Heads are read through the checkout pooled store ([`resolve_heads`]), so a poll is one
//! pull per repository and no working copy. Each (head, check) becomes one job, once: the
//! jobs live in a [`DirJobSource`] under the source's state directory, which gives leases,
//! ordering, history and persistence across restarts. A branch that moves on gets a job for
//! its new head; the job of a head it left stays queued until someone takes it.

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use sha2::{Digest, Sha256};

use hgauto_ci::checkout::{resolve_heads, CheckoutOptions, Vcs};
use hgauto_core::clock::SharedClock;
use hgauto_core::error::{Error, Result};
use hgauto_core::job::{Job, JobFilter, JobOutcome, Lease};
use hgauto_core::job_source::{Depth, JobSource};
use hgauto_core::local::DirJobSource;
use hgauto_core::redact::redact_url;

/// One watched repository: its branches, and the checks each new head needs.
#[derive(Debug, Clone)]
pub struct Watch {
    /// git or Mercurial.
    pub vcs: Vcs,
    /// Where to pull from (credentials in it never reach a job, a log line or a file).
    pub url: String,
    /// The branches (git branches, Mercurial branch names) to watch.
    pub branches: Vec<String>,
    /// One job per new head and check (e.g. `build/linux`, `build/windows`).
    pub checks: Vec<String>,
    /// The priority of these jobs.
    pub priority: i32,
}

/// What one [`VcsBranchSource::poll_report`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PollReport {
    /// How many repositories were polled.
    pub repositories: usize,
    /// How many jobs were queued, from the repositories that answered.
    pub added: usize,
    /// The repositories that could not be polled.
    pub failures: Vec<PollFailure>,
}

/// A repository a poll could not read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PollFailure {
    /// Its URL, credentials masked.
    pub repository: String,
    /// Why.
    pub error: String,
}

/// Jobs from the heads of watched branches (see the [module docs](self)).
#[derive(Debug)]
pub struct VcsBranchSource {
    name: String,
    queue: DirJobSource,
    checkout: CheckoutOptions,
    watches: Mutex<Vec<Watch>>,
    poll_every: Duration,
    last_poll: Mutex<Option<Instant>>,
    polling: tokio::sync::Mutex<()>,
}

impl VcsBranchSource {
    /// A source keeping its jobs under `state_dir`, reading repositories through the pooled
    /// stores of `checkout`. It polls at most once a minute by default.
    pub fn new(state_dir: impl Into<PathBuf>, checkout: CheckoutOptions) -> Result<Self> {
        let dir = state_dir.into();
        Ok(VcsBranchSource {
            name: format!("vcs:{}", dir.display()),
            queue: DirJobSource::new(dir)?,
            checkout,
            watches: Mutex::new(Vec::new()),
            poll_every: Duration::from_secs(60),
            last_poll: Mutex::new(None),
            polling: tokio::sync::Mutex::new(()),
        })
    }

    /// Polls at most once per `every` from `next` (call [`poll`](Self::poll) to force one).
    pub fn with_poll_interval(mut self, every: Duration) -> Self {
        self.poll_every = every;
        self
    }

    /// Sets the lease length of its jobs.
    pub fn with_lease_ttl(mut self, ttl: Duration) -> Self {
        self.queue = self.queue.with_lease_ttl(ttl);
        self
    }

    /// Uses `clock` for leases.
    pub fn with_clock(mut self, clock: SharedClock) -> Self {
        self.queue = self.queue.with_clock(clock);
        self
    }

    /// Watches another repository.
    pub fn watch(&self, watch: Watch) -> Result<()> {
        if watch.checks.is_empty() || watch.branches.is_empty() {
            return Err(Error::invalid(
                format!("watch of {}", redact_url(&watch.url)),
                "needs at least one branch and one check",
            ));
        }
        self.watches
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(watch);
        Ok(())
    }

    /// Reads every watched branch's head now and queues a job for each new (head, check).
    /// Returns how many jobs were added. Each repository is polled on its own: one that
    /// cannot be read does not stop the others, and the error names it (see
    /// [`poll_report`](Self::poll_report) for the whole picture).
    pub async fn poll(&self) -> Result<usize> {
        let report = self.poll_report().await;
        match report.failures.as_slice() {
            [] => Ok(report.added),
            failures => Err(Error::Backend {
                backend: "vcs branch source".into(),
                message: format!(
                    "{} of {} repositories could not be polled ({} jobs were queued from the \
                     others): {}",
                    failures.len(),
                    report.repositories,
                    report.added,
                    failures
                        .iter()
                        .map(|f| format!("{}: {}", f.repository, f.error))
                        .collect::<Vec<_>>()
                        .join("; ")
                ),
                retryable: true,
                source: None,
            }),
        }
    }

    /// Polls every watched repository on its own and says how each went: the jobs added
    /// from those that answered, and the repositories that could not be read, with why.
    pub async fn poll_report(&self) -> PollReport {
        let _one_at_a_time = self.polling.lock().await;
        let watches = self
            .watches
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        // One pull per repository, however many watches name it.
        let mut repos: Vec<(Vcs, &str, Vec<String>)> = Vec::new();
        for w in &watches {
            match repos
                .iter_mut()
                .find(|(v, u, _)| *v == w.vcs && *u == w.url)
            {
                Some((_, _, branches)) => branches.extend(w.branches.iter().cloned()),
                None => repos.push((w.vcs, &w.url, w.branches.clone())),
            }
        }
        let mut report = PollReport {
            repositories: repos.len(),
            ..PollReport::default()
        };
        for (vcs, url, mut branches) in repos {
            branches.sort();
            branches.dedup();
            let polled = async {
                let heads = resolve_heads(vcs, url, &branches, &self.checkout).await?;
                let mut added = 0;
                for w in watches.iter().filter(|w| w.vcs == vcs && w.url == url) {
                    added += self.queue_heads(w, &heads).await?;
                }
                Ok::<_, Error>(added)
            };
            match polled.await {
                Ok(added) => report.added += added,
                Err(e) => {
                    let repository = redact_url(url);
                    tracing::warn!(source = %self.name, repository = %repository, error = %e, "polling a repository failed");
                    report.failures.push(PollFailure {
                        repository,
                        error: hgauto_core::redact::redact_text(&e.to_string()),
                    });
                }
            }
        }
        // Even after a failure: the next poll comes when it is due, not on every `next`.
        *self.last_poll.lock().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now());
        report
    }

    /// Queues a job per (head of one of `w`'s branches, check); returns how many were new.
    async fn queue_heads(
        &self,
        w: &Watch,
        heads: &std::collections::BTreeMap<String, String>,
    ) -> Result<usize> {
        let mut added = 0;
        let shown = redact_url(&w.url);
        let repo = hex::encode(&Sha256::digest(w.url.as_bytes())[..6]);
        for (branch, rev) in heads.iter().filter(|(b, _)| w.branches.contains(b)) {
            for check in &w.checks {
                let job = Job::new(format!("{repo}:{branch}:{rev}:{check}"), check.clone())
                    .with_revision(rev.clone())
                    .with_priority(w.priority)
                    .with_attribute("repository", shown.clone())
                    .with_attribute("branch", branch.clone())
                    .with_attribute("vcs", w.vcs.name());
                let queue = self.queue.clone();
                if hgauto_core::backend::task::blocking(move || queue.enqueue(job)).await? {
                    added += 1;
                }
            }
        }
        Ok(added)
    }

    fn poll_due(&self) -> bool {
        self.last_poll
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_none_or(|t| t.elapsed() >= self.poll_every)
    }

    /// A poll when one is due; a failure is logged (the jobs already queued still count).
    async fn poll_if_due(&self) {
        if self.poll_due() {
            if let Err(e) = self.poll().await {
                tracing::warn!(source = %self.name, error = %e, "polling branch heads failed");
            }
        }
    }
}

#[async_trait]
impl JobSource for VcsBranchSource {
    fn name(&self) -> &str {
        &self.name
    }

    /// Polls first when a poll is due; a failed poll is logged and the jobs already queued
    /// are still handed out.
    async fn next(&self, filter: &JobFilter) -> Result<Option<Job>> {
        self.poll_if_due().await;
        let mut job = self.queue.next(filter).await?;
        if let Some(j) = &mut job {
            j.source = self.name.clone();
        }
        Ok(job)
    }

    /// Polls first when a poll is due, then counts the queued jobs: the new heads are
    /// queued by the poll.
    async fn depth(&self, filter: &JobFilter) -> Result<Option<Depth>> {
        self.poll_if_due().await;
        self.queue.depth(filter).await
    }

    async fn started(&self, job: &Job) -> Result<()> {
        self.queue.started(job).await
    }

    async fn heartbeat(&self, job: &Job) -> Result<Lease> {
        self.queue.heartbeat(job).await
    }

    async fn report(&self, job: &Job, outcome: &JobOutcome) -> Result<()> {
        self.queue.report(job, outcome).await
    }

    async fn release(&self, job: &Job) -> Result<()> {
        self.queue.release(job).await
    }

    async fn recheck(&self, job: &Job) -> Result<Option<Job>> {
        let mut fresh = self.queue.recheck(job).await?;
        if let Some(j) = &mut fresh {
            j.source = self.name.clone();
        }
        Ok(fresh)
    }
}
