//! [`Agent`]: the builder loop of ALICE's pull-request builders (seed 001), over any
//! [`JobSource`], with no central scheduler.
//!
//! Each iteration re-reads `config/` ([`AgentConfig`]), takes a job leased to this agent,
//! marks it started, runs the build while renewing the lease, and reports the outcome.
//! Agents share a pool's work in one of two ways ([`Sharing`]):
//! - **shards**: the agent asks only for jobs with `sha256(check + revision) mod
//!   workers-pool-size == worker-index`, so no other agent's job is handed to it and lost;
//! - **claims**: any free job, the source's lease being the claim, renewed by heartbeats
//!   while the build runs; adding agents drains the queue faster.
//!
//! In silent mode the agent builds but tells the source nothing (no `started`, no
//! `report`): it gives the job back after the build, and keeps the outcome in its own
//! status. A build that outlives `config/timeout` fails; a lease lost while building
//! abandons the build (another agent has the job now) without a report.
//!
//! Stopping ([`StopHandle::stop`], or SIGTERM under [`Agent::run_until_signal`]) lets the
//! current build finish within `stop_bound`; past it, the job is given back. Machines held
//! through the library's guards are then terminated, through the core's cancellation hook
//! ([`crate::cleanup::interrupt`]) rather than a second signal handler.
//!
//! The agent shows its state in `STATE/status.json`, `STATE/metrics.prom` and
//! `STATE/ready` (see [`status`]), and writes one log file per job under `STATE/logs/`.

pub mod command;
pub mod config;
pub mod status;

use std::future::Future;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use sha2::{Digest, Sha256};
use tokio::sync::watch;

pub use command::CommandBuild;
pub use config::{AgentConfig, ConfigProblem};
pub use status::AgentStatus;

use crate::clock::{self, SharedClock};
use crate::error::{Error, IoContext, Result};
use crate::job::{Job, JobFilter, JobOutcome};
use crate::job_source::JobSource;
use crate::provider::ResourceProvider;

/// How agents share a pool's work (see the [module docs](self)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sharing {
    /// Each agent asks for its shard only: `workers-pool-size` and `worker-index`.
    Shards,
    /// Each agent takes any free job; the lease is the claim.
    Claims,
}

impl Sharing {
    fn name(self) -> &'static str {
        match self {
            Sharing::Shards => "shards",
            Sharing::Claims => "claims",
        }
    }
}

/// What a build gets besides its job.
#[derive(Clone)]
pub struct AgentContext {
    /// `config/debug` is set.
    pub debug: bool,
    /// The job's log file; the agent writes a header and the outcome, the build may append.
    pub log: PathBuf,
    /// Machines, for builds that need them.
    pub provider: Option<Arc<dyn ResourceProvider>>,
    cancel: watch::Receiver<bool>,
}

impl std::fmt::Debug for AgentContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentContext")
            .field("debug", &self.debug)
            .field("log", &self.log)
            .field("provider", &self.provider.as_ref().map(|p| p.name()))
            .field("cancelled", &self.is_cancelled())
            .finish()
    }
}

impl AgentContext {
    /// Whether the build should stop: the agent is stopping, or the lease was lost.
    pub fn is_cancelled(&self) -> bool {
        *self.cancel.borrow()
    }

    /// Resolves once the build should stop.
    pub async fn cancelled(&self) {
        until_set(&mut self.cancel.clone()).await;
    }

    /// Appends a line to the job's log.
    pub fn log_line(&self, line: &str) -> Result<()> {
        append(&self.log, line)
    }
}

fn append(path: &Path, line: &str) -> Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .at("open", path, "localhost")?;
    writeln!(f, "{line}").at("write", path, "localhost")
}

/// A build: the work an agent does for one job.
pub trait Build: Send + Sync {
    /// Builds `job`; an error is reported as a failure.
    fn build(&self, job: Job, ctx: AgentContext) -> BoxFuture<'static, Result<JobOutcome>>;
}

impl<F, Fut> Build for F
where
    F: Fn(Job, AgentContext) -> Fut + Send + Sync,
    Fut: Future<Output = Result<JobOutcome>> + Send + 'static,
{
    fn build(&self, job: Job, ctx: AgentContext) -> BoxFuture<'static, Result<JobOutcome>> {
        Box::pin(self(job, ctx))
    }
}

/// What one iteration did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Iteration {
    /// A job was built (or abandoned); `reported` says whether the source was told.
    Built {
        /// The job's id.
        job: String,
        /// How it ended.
        outcome: JobOutcome,
        /// Whether the outcome went to the source.
        reported: bool,
        /// Whether it was a re-check (nothing untested was left).
        recheck: bool,
    },
    /// There was nothing to do.
    Idle,
    /// The agent is stopping: nothing was taken.
    Stopped,
}

/// Asks an agent to stop (see [`Agent::stop_handle`]).
#[derive(Debug, Clone)]
pub struct StopHandle(Arc<watch::Sender<bool>>);

impl StopHandle {
    /// The current build may finish within the agent's stop bound; no new job is taken.
    pub fn stop(&self) {
        self.0.send_replace(true);
    }
}

/// Builds an [`Agent`].
pub struct AgentBuilder {
    name: String,
    source: Arc<dyn JobSource>,
    state_dir: PathBuf,
    config_dir: Option<PathBuf>,
    sharing: Sharing,
    build: Option<Arc<dyn Build>>,
    provider: Option<Arc<dyn ResourceProvider>>,
    clock: SharedClock,
    stop_bound: Duration,
    rechecks: Option<u64>,
}

impl AgentBuilder {
    /// Names the agent (default: the host name and process id).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Where `config/` is read from (default `STATE/../config`, beside the state).
    pub fn config_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.config_dir = Some(dir.into());
        self
    }

    /// How work is shared (default [`Sharing::Claims`]).
    pub fn sharing(mut self, sharing: Sharing) -> Self {
        self.sharing = sharing;
        self
    }

    /// The build to run for each job.
    pub fn build(mut self, build: impl Build + 'static) -> Self {
        self.build = Some(Arc::new(build));
        self
    }

    /// Machines for builds that need them (passed in [`AgentContext::provider`]).
    pub fn provider(mut self, provider: Arc<dyn ResourceProvider>) -> Self {
        self.provider = Some(provider);
        self
    }

    /// The clock leases are measured with (the source's).
    pub fn clock(mut self, clock: SharedClock) -> Self {
        self.clock = clock;
        self
    }

    /// How long a build may go on after a stop request before its job is given back
    /// (default 60 s).
    pub fn stop_bound(mut self, bound: Duration) -> Self {
        self.stop_bound = bound;
        self
    }

    /// When nothing is untested, re-check work already reported (seed 001): a failed job
    /// with probability 0.7, else a passed one, picked by a random generator seeded with
    /// `seed` (so a run can be replayed), through [`JobSource::recheck`]. A job the source
    /// calls done (a merged pull request) is dropped from the candidates.
    pub fn rechecks(mut self, seed: u64) -> Self {
        self.rechecks = Some(seed);
        self
    }

    /// The agent, its state and log directories created.
    pub fn build_agent(self) -> Result<Agent> {
        let build = self
            .build
            .ok_or_else(|| Error::invalid("agent", "needs a build"))?;
        let logs = self.state_dir.join("logs");
        std::fs::create_dir_all(&logs).at("create directory", &logs, "localhost")?;
        let config_dir = self.config_dir.unwrap_or_else(|| {
            self.state_dir
                .parent()
                .unwrap_or(Path::new("."))
                .join("config")
        });
        let config = AgentConfig::default();
        let status = AgentStatus::new(
            &self.name,
            &self.source.name(),
            self.sharing.name(),
            config.clone(),
        );
        let (stop, _) = watch::channel(false);
        Ok(Agent {
            name: self.name,
            source: self.source,
            state_dir: self.state_dir,
            config_dir,
            sharing: self.sharing,
            build,
            provider: self.provider,
            clock: self.clock,
            stop_bound: self.stop_bound,
            config: Mutex::new(config),
            status: Mutex::new(status),
            stop: Arc::new(stop),
            rechecks: self.rechecks.map(|seed| {
                Mutex::new(<rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(
                    seed,
                ))
            }),
            reported: Mutex::new(Vec::new()),
        })
    }
}

/// A builder agent (see the [module docs](self)).
pub struct Agent {
    name: String,
    source: Arc<dyn JobSource>,
    state_dir: PathBuf,
    config_dir: PathBuf,
    sharing: Sharing,
    build: Arc<dyn Build>,
    provider: Option<Arc<dyn ResourceProvider>>,
    clock: SharedClock,
    stop_bound: Duration,
    config: Mutex<AgentConfig>,
    status: Mutex<AgentStatus>,
    stop: Arc<watch::Sender<bool>>,
    /// The re-check picker, when re-checks are on.
    rechecks: Option<Mutex<rand::rngs::StdRng>>,
    /// The last reported outcome of each (check, revision), the re-check candidates.
    reported: Mutex<Vec<(Job, JobOutcome)>>,
}

/// How many reported builds are kept as re-check candidates.
const RECHECK_CANDIDATES: usize = 500;

impl std::fmt::Debug for Agent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Agent")
            .field("name", &self.name)
            .field("source", &self.source.name())
            .field("sharing", &self.sharing)
            .finish_non_exhaustive()
    }
}

/// How a build ended, before it is reported.
enum Ended {
    Done(Result<JobOutcome>),
    TimedOut(Duration),
    LeaseLost(Error),
    Abandoned,
}

/// A file name for a job's log: the id where it is plain, with a short hash against
/// collisions.
fn log_name(id: &str) -> String {
    let plain: String = id
        .chars()
        .take(80)
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    let hash = hex::encode(&Sha256::digest(id.as_bytes())[..4]);
    format!("{plain}-{hash}.log")
}

impl Agent {
    /// A builder for an agent over `source`, keeping its state in `state_dir`.
    pub fn builder(source: Arc<dyn JobSource>, state_dir: impl Into<PathBuf>) -> AgentBuilder {
        let host = std::fs::read_to_string("/etc/hostname")
            .map(|h| h.trim().to_owned())
            .unwrap_or_else(|_| "agent".into());
        AgentBuilder {
            name: format!("{host}-{}", std::process::id()),
            source,
            state_dir: state_dir.into(),
            config_dir: None,
            sharing: Sharing::Claims,
            build: None,
            provider: None,
            clock: clock::system(),
            stop_bound: Duration::from_secs(60),
            rechecks: None,
        }
    }

    /// A re-check for an agent with nothing untested: a failed build with probability 0.7,
    /// else a passed one, leased through the source. Candidates the source calls done go.
    async fn pick_recheck(&self) -> Result<Option<Job>> {
        let Some(rng) = &self.rechecks else {
            return Ok(None);
        };
        loop {
            let candidate = {
                use rand::Rng;
                let reported = self.reported.lock().unwrap_or_else(|p| p.into_inner());
                let of = |failed: bool| -> Vec<&Job> {
                    reported
                        .iter()
                        .filter(|(_, o)| match o {
                            JobOutcome::Failed { .. } => failed,
                            JobOutcome::Succeeded { .. } => !failed,
                            JobOutcome::Skipped { .. } => false,
                        })
                        .map(|(j, _)| j)
                        .collect()
                };
                let (failed, passed) = (of(true), of(false));
                let mut rng = rng.lock().unwrap_or_else(|p| p.into_inner());
                let want_failed = rng.gen_bool(0.7);
                let pool = match (want_failed, failed.is_empty(), passed.is_empty()) {
                    (_, true, true) => return Ok(None),
                    (true, false, _) | (false, false, true) => &failed,
                    _ => &passed,
                };
                pool[rng.gen_range(0..pool.len())].clone()
            };
            match self.source.recheck(&candidate).await? {
                Some(job) => return Ok(Some(job)),
                None => self
                    .reported
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .retain(|(j, _)| j.build_key() != candidate.build_key()),
            }
        }
    }

    /// Keeps `outcome` as the latest of `job`'s (check, revision), a re-check candidate.
    fn remember(&self, job: &Job, outcome: &JobOutcome) {
        if self.rechecks.is_none() {
            return;
        }
        let mut reported = self.reported.lock().unwrap_or_else(|p| p.into_inner());
        reported.retain(|(j, _)| j.build_key() != job.build_key());
        let mut kept = job.clone();
        kept.lease = None;
        reported.push((kept, outcome.clone()));
        if reported.len() > RECHECK_CANDIDATES {
            reported.remove(0);
        }
    }

    /// A handle that stops the agent.
    pub fn stop_handle(&self) -> StopHandle {
        StopHandle(self.stop.clone())
    }

    /// The agent's status as of now.
    pub fn status(&self) -> AgentStatus {
        self.status
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn stopping(&self) -> bool {
        *self.stop.borrow()
    }

    fn with_status<T>(&self, f: impl FnOnce(&mut AgentStatus) -> T) -> T {
        f(&mut self.status.lock().unwrap_or_else(|p| p.into_inner()))
    }

    fn write_status(&self) {
        let now = self.clock.now_ms();
        let counted = self.source.stats();
        let result = self.with_status(|s| {
            s.write(
                &self.state_dir,
                now,
                counted.requests,
                counted.rate_limit_waits,
            )
        });
        if let Err(e) = result {
            tracing::warn!(agent = %self.name, error = %e, "could not write the agent status");
        }
    }

    /// Re-reads `config/` over the config in force; problems are logged by file name.
    fn reread_config(&self) -> AgentConfig {
        let previous = self
            .config
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let (config, problems) = AgentConfig::read(&self.config_dir, &previous);
        for p in &problems {
            tracing::warn!(agent = %self.name, file = p.file, reason = %p.reason, "ignoring an invalid config file: {p}");
        }
        *self.config.lock().unwrap_or_else(|p| p.into_inner()) = config.clone();
        self.with_status(|s| {
            s.config = config.clone();
            s.config_problems = problems.iter().map(ToString::to_string).collect();
        });
        config
    }

    /// One iteration: config, a job, its build, its report (see the module docs).
    pub async fn run_once(&self) -> Result<Iteration> {
        if self.stopping() {
            return Ok(Iteration::Stopped);
        }
        let config = self.reread_config();
        self.with_status(|s| s.iterations += 1);
        let filter = match self.sharing {
            Sharing::Shards => JobFilter::shard(config.index, config.pool_size),
            Sharing::Claims => JobFilter::any(),
        };
        let mut next = self.source.next(&filter).await?;
        let recheck = next.is_none();
        if recheck {
            next = self.pick_recheck().await?;
        }
        let Some(job) = next else {
            self.with_status(|s| {
                s.state = "idle";
                s.ready = true;
            });
            self.write_status();
            return Ok(Iteration::Idle);
        };
        let log = self.state_dir.join("logs").join(log_name(&job.id));
        let started = Instant::now();
        self.with_status(|s| {
            s.state = "building";
            s.current = Some(status::CurrentJob {
                id: job.id.clone(),
                check: job.check.clone(),
                revision: job.revision.clone(),
                started_ms: self.clock.now_ms(),
                lease_deadline_ms: job.lease.as_ref().map(|l| l.deadline_ms),
                log: log.display().to_string(),
            });
        });
        self.write_status();
        let header = serde_json::to_string(&job).unwrap_or_default();
        if let Err(e) = append(&log, &format!("job {header}")) {
            tracing::warn!(agent = %self.name, error = %e, "could not write the job log");
        }
        if !config.silent {
            if let Err(e) = self.source.started(&job).await {
                tracing::warn!(agent = %self.name, job = %job.id, error = %e, "marking the job started failed");
            }
        }
        // `held` carries the lease as renewed, for the calls after the build.
        let mut held = job.clone();
        let ended = self.build_with_lease(&mut held, &config, &log).await;
        let (outcome, reported) = self.finish(&held, &config, ended).await;
        if reported {
            self.remember(&held, &outcome);
        }
        let seconds = started.elapsed().as_secs_f64();
        let _ = append(
            &log,
            &format!(
                "outcome {} {seconds:.3}s",
                serde_json::to_string(&outcome).unwrap_or_default()
            ),
        );
        let now = self.clock.now_ms();
        self.with_status(|s| {
            s.finish(&job, &outcome, reported, now, seconds);
            s.state = if self.stopping() { "stopping" } else { "idle" };
            s.ready = true;
        });
        self.write_status();
        Ok(Iteration::Built {
            recheck,
            job: job.id,
            outcome,
            reported,
        })
    }

    /// Runs the build, renewing the lease, until it ends, times out, loses its lease, or
    /// outlives a stop request by `stop_bound`.
    async fn build_with_lease(&self, job: &mut Job, config: &AgentConfig, log: &Path) -> Ended {
        let (cancel_tx, cancel_rx) = watch::channel(false);
        let ctx = AgentContext {
            debug: config.debug,
            log: log.to_owned(),
            provider: self.provider.clone(),
            cancel: cancel_rx,
        };
        let mut build = self.build.build(job.clone(), ctx);
        let timeout_at = config.timeout.map(|t| tokio::time::Instant::now() + t);
        let mut deadline_ms = job.lease.as_ref().map(|l| l.deadline_ms);
        let mut stop_rx = self.stop.subscribe();
        let mut abandon_at: Option<tokio::time::Instant> = None;
        if self.stopping() {
            cancel_tx.send_replace(true);
            abandon_at = Some(tokio::time::Instant::now() + self.stop_bound);
        }
        loop {
            // Renew when a third of the lease is left... of what remains: every third.
            let renew_in = deadline_ms.map(|d| {
                let left = d.saturating_sub(self.clock.now_ms());
                Duration::from_millis((left / 3).max(20))
            });
            tokio::select! {
                out = &mut build => return Ended::Done(out),
                _ = sleep_opt(renew_in) => {
                    match self.source.heartbeat(job).await {
                        Ok(lease) => {
                            deadline_ms = Some(lease.deadline_ms);
                            job.lease = Some(lease.clone());
                            self.with_status(|s| {
                                s.lease_renewals += 1;
                                if let Some(c) = &mut s.current {
                                    c.lease_deadline_ms = Some(lease.deadline_ms);
                                }
                            });
                        }
                        Err(e @ Error::LeaseLost { .. }) => {
                            cancel_tx.send_replace(true);
                            return Ended::LeaseLost(e);
                        }
                        Err(e) => {
                            tracing::warn!(agent = %self.name, job = %job.id, error = %e, "renewing the lease failed; trying again");
                        }
                    }
                }
                _ = sleep_until_opt(timeout_at) => {
                    cancel_tx.send_replace(true);
                    return Ended::TimedOut(config.timeout.unwrap_or_default());
                }
                _ = until_set(&mut stop_rx), if abandon_at.is_none() => {
                    cancel_tx.send_replace(true);
                    abandon_at = Some(tokio::time::Instant::now() + self.stop_bound);
                }
                _ = sleep_until_opt(abandon_at) => return Ended::Abandoned,
            }
        }
    }

    /// Turns how the build ended into an outcome, and tells the source unless silent.
    async fn finish(&self, job: &Job, config: &AgentConfig, ended: Ended) -> (JobOutcome, bool) {
        let outcome = match ended {
            Ended::Done(Ok(o)) => o,
            Ended::Done(Err(e)) => JobOutcome::Failed {
                summary: e.to_string(),
                retryable: e.is_retryable(),
            },
            Ended::TimedOut(t) => JobOutcome::Failed {
                summary: format!("timed out after {} s", t.as_secs_f64()),
                retryable: true,
            },
            Ended::LeaseLost(e) => {
                self.with_status(|s| s.leases_lost += 1);
                tracing::warn!(agent = %self.name, job = %job.id, error = %e, "lease lost: the build was abandoned");
                return (
                    JobOutcome::Skipped {
                        reason: "the lease was lost".into(),
                    },
                    false,
                );
            }
            Ended::Abandoned => {
                if let Err(e) = self.source.release(job).await {
                    tracing::warn!(agent = %self.name, job = %job.id, error = %e, "giving the job back failed");
                }
                return (
                    JobOutcome::Skipped {
                        reason: "given back: the agent stopped".into(),
                    },
                    false,
                );
            }
        };
        if config.silent {
            if let Err(e) = self.source.release(job).await {
                tracing::warn!(agent = %self.name, job = %job.id, error = %e, "giving the job back failed");
            }
            return (outcome, false);
        }
        match self.source.report(job, &outcome).await {
            Ok(()) => (outcome, true),
            Err(e) => {
                if matches!(e, Error::LeaseLost { .. }) {
                    self.with_status(|s| s.leases_lost += 1);
                }
                tracing::warn!(agent = %self.name, job = %job.id, error = %e, "reporting the outcome failed");
                (outcome, false)
            }
        }
    }

    /// Iterates until stopped. An iteration that found nothing untested to do (idle, or a
    /// re-check) lasts at least `config/min-loop-seconds`; a stop request cuts that wait short. An error from the
    /// source is logged and the loop goes on after the same wait.
    pub async fn run(&self) -> Result<()> {
        let mut stop_rx = self.stop.subscribe();
        loop {
            let began = Instant::now();
            let idle = match self.run_once().await {
                Ok(Iteration::Stopped) => break,
                Ok(Iteration::Idle) => true,
                // A re-check means nothing untested was left: the loop keeps its pace.
                Ok(Iteration::Built { recheck, .. }) => recheck,
                Err(e) => {
                    tracing::warn!(agent = %self.name, error = %e, "an iteration failed");
                    true
                }
            };
            if idle {
                let min_loop = self
                    .config
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .min_loop;
                let rest = min_loop.saturating_sub(began.elapsed());
                tokio::select! {
                    _ = tokio::time::sleep(rest) => {}
                    _ = until_set(&mut stop_rx) => {}
                }
            }
        }
        self.with_status(|s| s.state = "stopped");
        self.write_status();
        Ok(())
    }

    /// [`run`](Self::run), stopping on SIGTERM or SIGINT: the current build finishes or
    /// its job is given back, then every machine held through the library's guards is
    /// terminated. Takes the signals from the core ([`SignalHandling::Manual`]), so there
    /// is one handler. Returns `Ok` after a signal, so the process can exit 0.
    ///
    /// [`SignalHandling::Manual`]: crate::cleanup::SignalHandling::Manual
    pub async fn run_until_signal(&self) -> Result<()> {
        use tokio::signal::unix::{signal, SignalKind};
        crate::cleanup::set_signal_handling(crate::cleanup::SignalHandling::Manual)?;
        let mut term = signal(SignalKind::terminate()).map_err(|e| {
            Error::io(
                "install a handler for",
                Path::new("SIGTERM"),
                "localhost",
                e,
            )
        })?;
        let mut int = signal(SignalKind::interrupt())
            .map_err(|e| Error::io("install a handler for", Path::new("SIGINT"), "localhost", e))?;
        let stop = self.stop_handle();
        let got = Arc::new(Mutex::new(None));
        let got2 = got.clone();
        let watcher = tokio::spawn(async move {
            let sig = tokio::select! {
                _ = term.recv() => libc::SIGTERM,
                _ = int.recv() => libc::SIGINT,
            };
            *got2.lock().unwrap_or_else(|p| p.into_inner()) = Some(sig);
            stop.stop();
        });
        let result = self.run().await;
        watcher.abort();
        let signal = *got.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(sig) = signal {
            let n = crate::cleanup::interrupt(sig).await;
            tracing::info!(agent = %self.name, signal = sig, guards = n, "stopped on a signal");
        }
        result
    }
}

/// Resolves once the flag behind `rx` is set (or its sender is gone). The guard `wait_for`
/// returns is dropped here, so callers' futures stay `Send`.
async fn until_set(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|set| *set).await;
}

async fn sleep_opt(d: Option<Duration>) {
    match d {
        Some(d) => tokio::time::sleep(d).await,
        None => std::future::pending().await,
    }
}

async fn sleep_until_opt(t: Option<tokio::time::Instant>) {
    match t {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}
