//! [`GithubPrSource`]: open pull requests of GitHub repositories as jobs, one per (head,
//! check), the way ALICE's pull-request builders take them.
//!
//! - **A round** lists each repository's open pull requests (all pages) with conditional
//!   requests through a persistent `ETag` cache: an unchanged round is one request per
//!   repository, answered 304, which GitHub does not count against the rate limit. Heads
//!   seen for the first time cost one more (conditional) read of their commit statuses.
//! - **What is built**: drafts and `[WIP]` titles are not. A pull request whose author is
//!   not trusted (by `author_association` or by login, see [`TrustRules`]) is built only
//!   once a trusted reviewer approved its current head; until then each check gets one
//!   "approval needed" status. The approval is read again whenever one of its jobs is
//!   handed out: a job whose approval was dismissed while it waited is withdrawn (and
//!   queued again if the head is approved again). A head whose check already has a final
//!   status is tested.
//! - **Order**: untested heads first, a priority label first among them, then the oldest
//!   pull request. Re-checks ([`GithubPrSourceBuilder::rechecks`]) come after every
//!   untested head: failed ones before passed ones.
//! - **Leases** are kept in a [`DirJobSource`] under the state directory: agents on one
//!   host (or a shared filesystem) share it; agents on separate hosts split the work with
//!   a [`Shard`](hgauto_core::job::Shard) filter, as ALICE's builders do. A job whose pull
//!   request closed or moved to a new head meanwhile is dropped, not handed out.
//! - **Statuses**: `started` writes "pending" on a head's first build only; `report`
//!   writes success or failure with a link. Each write is preceded by a conditional read
//!   and skipped when it would change nothing (a green re-check stays unwritten).
//! - **Rate limits** are waited out (see [`client`]); while one lasts, `next` hands out
//!   queued jobs without polling.
//! - The token comes from an argument, an environment variable or a 0600 file, and goes
//!   nowhere but the `Authorization` header.
//!
//! A list item missing a field the job needs is quarantined in the state directory's
//! `failed/` (the payload and the reason), and the round goes on with the others.

mod approval;
mod cache;
pub mod client;
mod poll;
mod pulls;
mod statuses;
mod urls;
mod view;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;

pub use client::GithubStats;
pub use pulls::TrustRules;

use client::Client;
use hgauto_core::clock::SharedClock;
use hgauto_core::error::{Error, IoContext, Result};
use hgauto_core::job::{Job, JobFilter, JobOutcome, Lease};
use hgauto_core::job_source::{Depth, JobSource};
use hgauto_core::local::DirJobSource;
use hgauto_core::redact::SecretString;
use view::RepoView;

/// GitHub's public API.
pub const DEFAULT_API_URL: &str = "https://api.github.com";

/// One watched repository and the checks each pull request head needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GithubRepo {
    /// The owner (user or organisation).
    pub owner: String,
    /// The repository's name.
    pub name: String,
    /// One job per head and check; the check is also the status context.
    pub checks: Vec<String>,
}

impl GithubRepo {
    /// `full_name` is `owner/name`.
    pub fn new(
        full_name: &str,
        checks: impl IntoIterator<Item = impl Into<String>>,
    ) -> Result<Self> {
        let what = || format!("GitHub repository {full_name:?}");
        let (owner, name) = full_name
            .split_once('/')
            .ok_or_else(|| Error::invalid(what(), "must be owner/name"))?;
        let valid = |s: &str| {
            !s.is_empty()
                && s != "."
                && s != ".."
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        };
        if !valid(owner) || !valid(name) {
            return Err(Error::invalid(
                what(),
                "owner and name may hold letters, digits, '-', '_' and '.' only",
            ));
        }
        let checks: Vec<String> = checks.into_iter().map(Into::into).collect();
        if checks.is_empty() || checks.iter().any(|c| c.trim().is_empty()) {
            return Err(Error::invalid(what(), "needs at least one non-empty check"));
        }
        Ok(GithubRepo {
            owner: owner.to_owned(),
            name: name.to_owned(),
            checks,
        })
    }

    /// `owner/name`.
    pub fn full_name(&self) -> String {
        format!("{}/{}", self.owner, self.name)
    }
}

/// Builds a [`GithubPrSource`].
#[derive(Debug)]
pub struct GithubPrSourceBuilder {
    state_dir: PathBuf,
    api_url: String,
    token: Option<SecretString>,
    token_error: Option<Error>,
    repos: Vec<GithubRepo>,
    trust: TrustRules,
    priority_labels: BTreeMap<String, i32>,
    details_url: Option<String>,
    recheck_after: Option<Duration>,
    poll_every: Duration,
    lease_ttl: Option<Duration>,
    clock: Option<SharedClock>,
    max_wait: Duration,
}

impl GithubPrSourceBuilder {
    /// The API base (default [`DEFAULT_API_URL`]; GitHub Enterprise: `https://host/api/v3`).
    /// Plain http is accepted for loopback addresses only.
    pub fn api_url(mut self, url: impl Into<String>) -> Self {
        self.api_url = url.into();
        self
    }

    /// The token to authenticate with.
    pub fn token(mut self, token: SecretString) -> Self {
        self.token = Some(token);
        self
    }

    /// Reads the token from environment variable `var` (e.g. `GITHUB_TOKEN`); `build`
    /// fails when it is unset or empty.
    pub fn token_from_env(mut self, var: &str) -> Self {
        match std::env::var(var) {
            Ok(v) if !v.trim().is_empty() => self.token = Some(SecretString::new(v.trim())),
            _ => {
                self.token_error = Some(Error::invalid(
                    format!("environment variable {var}"),
                    "is not set: it must hold a GitHub token",
                ))
            }
        }
        self
    }

    /// Reads the token from a file only its owner may read (mode 0600 or stricter).
    pub fn token_file(mut self, path: impl AsRef<Path>) -> Self {
        match read_token_file(path.as_ref()) {
            Ok(t) => self.token = Some(t),
            Err(e) => self.token_error = Some(e),
        }
        self
    }

    /// Watches a repository.
    pub fn repository(mut self, repo: GithubRepo) -> Self {
        self.repos.push(repo);
        self
    }

    /// Who is trusted without a review (default: owners, members and collaborators).
    pub fn trust(mut self, rules: TrustRules) -> Self {
        self.trust = rules;
        self
    }

    /// Pull requests labelled `label` get `priority` (the highest of their labels wins).
    pub fn priority_label(mut self, label: impl Into<String>, priority: i32) -> Self {
        self.priority_labels.insert(label.into(), priority);
        self
    }

    /// The link statuses carry: `{repository}`, `{number}`, `{sha}` and `{check}` are
    /// replaced (e.g. `https://ci.example.org/{repository}/{number}/{check}`).
    pub fn details_url(mut self, template: impl Into<String>) -> Self {
        self.details_url = Some(template.into());
        self
    }

    /// Tests heads again, at most once per head and check in each period of `every`,
    /// after all untested heads (failed ones first), until their pull request closes.
    pub fn rechecks(mut self, every: Duration) -> Self {
        self.recheck_after = Some(every.max(Duration::from_secs(1)));
        self
    }

    /// Polls GitHub at most once per `every` from `next` (default 60 s).
    pub fn poll_interval(mut self, every: Duration) -> Self {
        self.poll_every = every;
        self
    }

    /// Sets the lease length of its jobs.
    pub fn lease_ttl(mut self, ttl: Duration) -> Self {
        self.lease_ttl = Some(ttl);
        self
    }

    /// Uses `clock` for leases and re-check periods.
    pub fn clock(mut self, clock: SharedClock) -> Self {
        self.clock = Some(clock);
        self
    }

    /// The longest a call waits for a rate limit to reset before failing (default 1 h).
    pub fn max_rate_limit_wait(mut self, wait: Duration) -> Self {
        self.max_wait = wait;
        self
    }

    /// The source, its state directory created.
    pub fn build(self) -> Result<GithubPrSource> {
        if let Some(e) = self.token_error {
            return Err(e);
        }
        let api = urls::parse_api_url(&self.api_url)?;
        let mut queue = DirJobSource::new(&self.state_dir)?;
        if let Some(ttl) = self.lease_ttl {
            queue = queue.with_lease_ttl(ttl);
        }
        let clock = self.clock.unwrap_or_else(hgauto_core::clock::system);
        queue = queue.with_clock(clock.clone());
        let client = Client::new(
            api.clone(),
            self.token,
            &self.state_dir.join("github-cache.json"),
            self.max_wait,
        )?;
        Ok(GithubPrSource {
            name: format!("github:{}", api.host_str().unwrap_or("")),
            queue,
            client: Arc::new(client),
            repos: Mutex::new(self.repos),
            trust: self.trust,
            priority_labels: self.priority_labels,
            details_url: self.details_url,
            recheck_after: self.recheck_after,
            poll_every: self.poll_every,
            last_poll: Mutex::new(None),
            polling: tokio::sync::Mutex::new(()),
            views: Mutex::new(HashMap::new()),
            clock,
        })
    }
}

fn read_token_file(path: &Path) -> Result<SecretString> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(path).at("inspect", path, "localhost")?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(Error::invalid(
            format!("GitHub token file {}", path.display()),
            format!("has mode {mode:03o}: group or others may read it; `chmod 600` it first"),
        ));
    }
    let text = std::fs::read_to_string(path).at("read", path, "localhost")?;
    let token = text.trim();
    if token.is_empty() {
        return Err(Error::invalid(
            format!("GitHub token file {}", path.display()),
            "is empty",
        ));
    }
    Ok(SecretString::new(token))
}

/// Open pull requests as jobs (see the [module docs](self)).
#[derive(Debug)]
pub struct GithubPrSource {
    name: String,
    queue: DirJobSource,
    client: Arc<Client>,
    repos: Mutex<Vec<GithubRepo>>,
    trust: TrustRules,
    priority_labels: BTreeMap<String, i32>,
    details_url: Option<String>,
    recheck_after: Option<Duration>,
    poll_every: Duration,
    last_poll: Mutex<Option<Instant>>,
    polling: tokio::sync::Mutex<()>,
    views: Mutex<HashMap<String, RepoView>>,
    clock: SharedClock,
}

impl GithubPrSource {
    /// A builder keeping the source's queue, leases and cache under `state_dir`.
    pub fn builder(state_dir: impl Into<PathBuf>) -> GithubPrSourceBuilder {
        GithubPrSourceBuilder {
            state_dir: state_dir.into(),
            api_url: DEFAULT_API_URL.to_owned(),
            token: None,
            token_error: None,
            repos: Vec::new(),
            trust: TrustRules::default(),
            priority_labels: BTreeMap::new(),
            details_url: None,
            recheck_after: None,
            poll_every: Duration::from_secs(60),
            lease_ttl: None,
            clock: None,
            max_wait: Duration::from_secs(3600),
        }
    }

    /// Watches another repository from the next round on.
    pub fn watch(&self, repo: GithubRepo) {
        let mut repos = self.repos.lock().unwrap_or_else(|p| p.into_inner());
        if !repos.contains(&repo) {
            repos.push(repo);
        }
    }

    /// What the source's GitHub client has done so far.
    pub fn stats(&self) -> GithubStats {
        self.client.stats()
    }

    /// The queue under the state directory (e.g. to read outcomes).
    pub fn queue(&self) -> &DirJobSource {
        &self.queue
    }

    fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
        m.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn poll_due(&self) -> bool {
        Self::lock(&self.last_poll).is_none_or(|t| t.elapsed() >= self.poll_every)
    }

    /// A round when one is due and no rate limit is being waited out; a failure is logged
    /// (the jobs already queued are still handed out and counted).
    async fn poll_if_due(&self) {
        if self.poll_due() && self.client.paused_for().is_none() {
            if let Err(e) = self.poll().await {
                tracing::warn!(source = %self.name, error = %e, "polling GitHub failed");
            }
        }
    }
}

#[async_trait]
impl JobSource for GithubPrSource {
    fn name(&self) -> &str {
        &self.name
    }

    /// Runs a round first when one is due and no rate limit is being waited out; a failed
    /// round is logged and the jobs already queued are still handed out.
    async fn next(&self, filter: &JobFilter) -> Result<Option<Job>> {
        self.poll_if_due().await;
        loop {
            let Some(mut job) = self.queue.next(filter).await? else {
                return Ok(None);
            };
            if let Some(why) = self.gone(&job) {
                let skipped = JobOutcome::Skipped { reason: why.into() };
                self.queue.report(&job, &skipped).await?;
                continue;
            }
            match self.approval_stands(&job).await {
                Ok(true) => {}
                Ok(false) => {
                    // Withdrawn, not reported: a new approval of the head queues it again.
                    tracing::info!(job = %job.id, "the approval of its head no longer stands: withdrawn");
                    let queue = self.queue.clone();
                    hgauto_core::backend::task::blocking(move || queue.withdraw(&job)).await?;
                    continue;
                }
                Err(e) => {
                    // Unknown is not approved: the job waits in the queue for a later try.
                    let _ = self.queue.release(&job).await;
                    return Err(e);
                }
            }
            job.source = self.name.clone();
            if job.previous.is_none() {
                job.previous = self.known_previous(&job);
            }
            return Ok(Some(job));
        }
    }

    /// Writes "pending" when this is the head's first build for the check.
    /// A round first when one is due, then the queued jobs: the untested heads. A head whose
    /// pull request closed, or whose approval was dismissed, counts until a hand-out drops
    /// it, so the count is an upper bound (`exact` is false).
    async fn depth(&self, filter: &JobFilter) -> Result<Option<Depth>> {
        self.poll_if_due().await;
        let depth = self.queue.depth(filter).await?;
        Ok(depth.map(|d| Depth { exact: false, ..d }))
    }

    async fn started(&self, job: &Job) -> Result<()> {
        self.queue.started(job).await?;
        self.write_status(job, poll::StatusWrite::Started).await
    }

    async fn heartbeat(&self, job: &Job) -> Result<Lease> {
        self.queue.heartbeat(job).await
    }

    /// Ends the job, then writes its status unless that would change nothing. Reporting
    /// again retries a status write that failed.
    async fn report(&self, job: &Job, outcome: &JobOutcome) -> Result<()> {
        self.queue.report(job, outcome).await?;
        self.write_status(job, poll::StatusWrite::Outcome(outcome))
            .await
    }

    async fn release(&self, job: &Job) -> Result<()> {
        self.queue.release(job).await
    }

    /// A re-check while the pull request is open at this head; `None` once it closed or
    /// moved on (the work is done).
    async fn recheck(&self, job: &Job) -> Result<Option<Job>> {
        if self.gone(job).is_some() {
            return Ok(None);
        }
        let mut fresh = self.queue.recheck(job).await?;
        if let Some(j) = &mut fresh {
            j.source = self.name.clone();
            if j.previous.is_none() {
                j.previous = self.known_previous(j);
            }
        }
        Ok(fresh)
    }

    fn stats(&self) -> hgauto_core::job_source::SourceStats {
        let s = self.client.stats();
        hgauto_core::job_source::SourceStats {
            requests: s.requests,
            rate_limit_waits: s.rate_limit_waits,
        }
    }
}
