//! # hgauto-agent
//!
//! Builder agents and what feeds and updates them: [`Agent`] (below), [`selfupdate`]
//! (workers that follow their production branches), [`vcs_jobs`] (new heads of branches as
//! jobs) and, with feature `github`, [`github`] (pull requests as jobs).
//!
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
//! ([`hgauto_core::cleanup::interrupt`]) rather than a second signal handler.
//!
//! The agent shows its state in `STATE/status.json`, `STATE/metrics.prom` and
//! `STATE/ready` (see [`status`]), and writes one log file per job under `STATE/logs/`.

#![warn(missing_docs)]
#![warn(unreachable_pub)]

mod builder;
pub mod command;
pub mod config;
#[cfg(feature = "github")]
pub mod github;
mod lease;
mod recheck;
pub mod selfupdate;
pub mod status;
pub mod vcs_jobs;

use std::future::Future;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use sha2::{Digest, Sha256};
use tokio::sync::watch;

pub use builder::AgentBuilder;
pub use command::CommandBuild;
pub use config::{AgentConfig, ConfigProblem, DEFAULT_BUILD_TIMEOUT};
use lease::until_set;
pub use status::AgentStatus;
pub use vcs_jobs::VcsBranchSource;

use hgauto_core::clock::SharedClock;
use hgauto_core::error::{Error, IoContext, Result};
use hgauto_core::job::{Job, JobFilter, JobOutcome};
use hgauto_core::job_source::JobSource;
use hgauto_core::provider::ResourceProvider;

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

impl std::str::FromStr for Sharing {
    type Err = Error;

    /// `shards` or `claims`.
    fn from_str(s: &str) -> Result<Self> {
        let choices = [("claims", Sharing::Claims), ("shards", Sharing::Shards)];
        hgauto_core::suggest::one_of("sharing", s, &choices)
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

/// Appends to a job log, created 0600: it holds the job's fields and the build's output.
fn append(path: &Path, line: &str) -> Result<()> {
    let mut f = open_job_log(path)?;
    writeln!(f, "{line}").at("write", path, "localhost")
}

/// Opens a job log for appending, creating it 0600 (whatever the umask).
pub(crate) fn open_job_log(path: &Path) -> Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
        .at("open", path, "localhost")
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
    /// What an absent config file means (the builder's build timeout).
    defaults: AgentConfig,
    status: Mutex<AgentStatus>,
    stop: Arc<watch::Sender<bool>>,
    /// The re-check picker, when re-checks are on.
    rechecks: Option<Mutex<rand::rngs::StdRng>>,
    /// The last reported outcome of each (check, revision), the re-check candidates.
    reported: Mutex<Vec<(Job, JobOutcome)>>,
}

impl std::fmt::Debug for Agent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Agent")
            .field("name", &self.name)
            .field("source", &self.source.name())
            .field("sharing", &self.sharing)
            .finish_non_exhaustive()
    }
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
        let (config, problems) =
            AgentConfig::read_over(&self.config_dir, &previous, &self.defaults);
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
        // The lease token (an SQS receipt handle) lets whoever holds it delete or hand back
        // the job: it stays out of the log.
        let mut shown = job.clone();
        if let Some(l) = shown.lease.as_mut() {
            l.token = "(hidden)".into();
        }
        let header = serde_json::to_string(&shown).unwrap_or_default();
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
    /// [`SignalHandling::Manual`]: hgauto_core::cleanup::SignalHandling::Manual
    pub async fn run_until_signal(&self) -> Result<()> {
        use tokio::signal::unix::{signal, SignalKind};
        hgauto_core::cleanup::set_signal_handling(hgauto_core::cleanup::SignalHandling::Manual)?;
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
            let n = hgauto_core::cleanup::interrupt(sig).await;
            tracing::info!(agent = %self.name, signal = sig, guards = n, "stopped on a signal");
        }
        result
    }
}
