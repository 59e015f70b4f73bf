//! [`AgentBuilder`]: how an [`Agent`] is put together.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;

use super::{Agent, AgentConfig, AgentStatus, Build, Sharing};
use hgauto_core::clock::{self, SharedClock};
use hgauto_core::error::{Error, IoContext, Result};
use hgauto_core::job_source::JobSource;
use hgauto_core::provider::ResourceProvider;

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
    defaults: AgentConfig,
}

impl AgentBuilder {
    /// The longest one build may take when `config/timeout` does not say (default
    /// [`DEFAULT_BUILD_TIMEOUT`](super::DEFAULT_BUILD_TIMEOUT)); zero is refused by
    /// [`build_agent`](Self::build_agent).
    pub fn build_timeout(mut self, limit: Duration) -> Self {
        self.defaults.timeout = Some(limit);
        self
    }

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

    /// Machines for builds that need them (passed in [`AgentContext::provider`](super::AgentContext::provider)).
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
        if self.defaults.timeout == Some(Duration::ZERO) {
            return Err(Error::invalid("agent build timeout", "0 is not a timeout"));
        }
        let logs = self.state_dir.join("logs");
        std::fs::create_dir_all(&logs).at("create directory", &logs, "localhost")?;
        let config_dir = self.config_dir.unwrap_or_else(|| {
            self.state_dir
                .parent()
                .unwrap_or(Path::new("."))
                .join("config")
        });
        let config = self.defaults.clone();
        let status = AgentStatus::new(
            &self.name,
            self.source.name(),
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
            defaults: self.defaults,
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

impl Agent {
    /// A builder for an agent over `source`, keeping its state in `state_dir`.
    pub fn builder(source: Arc<dyn JobSource>, state_dir: impl Into<PathBuf>) -> AgentBuilder {
        let host = Some(hgauto_core::session::hostname())
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "agent".into());
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
            defaults: AgentConfig::default(),
        }
    }
}
