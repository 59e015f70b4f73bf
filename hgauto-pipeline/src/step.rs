//! One step of a pipeline: its body, its skip check, its retry kind and its worker.

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use hgauto_core::error::Error;
use hgauto_core::publisher::Publisher;
use hgauto_core::retry::RetryPolicy;

use super::cell::Cell;

/// Values a step hands to the steps that depend on it (`key = value`).
pub type Outputs = BTreeMap<String, String>;

/// A future a function body or check returns.
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// A step body written as a function: it gets the step's context and returns its outputs.
pub type StepFn = Arc<dyn Fn(StepContext) -> BoxFuture<Result<Outputs, StepFailure>> + Send + Sync>;

/// A `should_run` check written as a function: `Some(reason)` means "already done, skip".
pub type SkipFn =
    Arc<dyn Fn(StepContext) -> BoxFuture<hgauto_core::Result<Option<String>>> + Send + Sync>;

/// How a step's retries are decided: HHVM's two policies, or your own.
#[derive(Debug, Clone, PartialEq)]
pub enum StepKind {
    /// Quick steps that fail for random reasons (API calls): 5 retries after 5, 10, 20,
    /// 40 and 80 s.
    Cheap,
    /// Long steps that can fail for real reasons (builds): 2 retries, after 60 s then 300 s.
    Heavy,
    /// Any other policy.
    Custom(RetryPolicy),
}

impl StepKind {
    /// The retry policy of this kind.
    pub fn policy(&self) -> RetryPolicy {
        match self {
            StepKind::Cheap => RetryPolicy::cheap(),
            StepKind::Heavy => RetryPolicy::heavy(),
            StepKind::Custom(p) => p.clone(),
        }
    }

    /// `cheap`, `heavy` or `custom`.
    pub fn name(&self) -> &'static str {
        match self {
            StepKind::Cheap => "cheap",
            StepKind::Heavy => "heavy",
            StepKind::Custom(_) => "custom",
        }
    }
}

/// Why one attempt of a step failed, and whether another attempt may help. The body
/// decides: a failing test or a compile error is `retry: false` and is never retried.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepFailure {
    /// What went wrong.
    pub message: String,
    /// Whether the step's retry policy applies (infrastructure trouble) or not (a real
    /// failure of the work itself).
    pub retry: bool,
}

impl StepFailure {
    /// A failure of the work itself (a test, a compile error): never retried.
    pub fn fatal(message: impl Into<String>) -> Self {
        StepFailure {
            message: message.into(),
            retry: false,
        }
    }

    /// A failure another attempt may not have (a lost machine, a throttled API).
    pub fn retryable(message: impl Into<String>) -> Self {
        StepFailure {
            message: message.into(),
            retry: true,
        }
    }
}

impl fmt::Display for StepFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// hgauto errors from a body: bad input and failed commands are the work's own failures;
/// everything else (connections, timeouts, lost machines, throttling) may be retried.
impl From<Error> for StepFailure {
    fn from(e: Error) -> Self {
        let retry = !matches!(
            e,
            Error::InvalidInput { .. } | Error::CommandFailed { .. } | Error::Conflict { .. }
        );
        StepFailure {
            message: e.to_string(),
            retry,
        }
    }
}

/// A command a step runs on its worker. Workers are reused by later tasks of their kind, so
/// a task sees what earlier ones left in the worker's home: collect by exact (templated)
/// names, or clean the output directory first. Arguments, the working directory and environment
/// values may hold `{placeholders}` (a matrix dimension, an input, `{step}`, `{task}`),
/// which are filled in as data. A `script` is never templated: it reads the same values from
/// its environment (`HGAUTO_MATRIX_<DIM>`, `HGAUTO_INPUT_<NAME>`, `HGAUTO_TASK`...).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StepCommand {
    /// The program and its arguments (empty when `script` is set).
    pub argv: Vec<String>,
    /// A script in the worker's shell language, instead of `argv`.
    pub script: Option<String>,
    /// Extra environment.
    pub env: BTreeMap<String, String>,
    /// The working directory on the worker (relative to its home).
    pub cwd: Option<String>,
    /// Exit codes that mean "infrastructure trouble, try again" (default: 75, `EX_TEMPFAIL`).
    /// Any other non-zero exit is the work's own failure and is never retried.
    pub retry_exit_codes: Vec<i32>,
}

impl StepCommand {
    /// Runs `argv[0]` with the other arguments.
    pub fn argv<I, S>(argv: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        StepCommand {
            argv: argv.into_iter().map(Into::into).collect(),
            retry_exit_codes: vec![75],
            ..Default::default()
        }
    }

    /// Runs a script in the worker's shell.
    pub fn script(script: impl Into<String>) -> Self {
        StepCommand {
            script: Some(script.into()),
            retry_exit_codes: vec![75],
            ..Default::default()
        }
    }
}

/// A local directory copied to the worker before the command runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncDir {
    /// The directory on this host (templated).
    pub local: String,
    /// Where it goes on the worker (templated; relative to the worker's home).
    pub remote: String,
}

/// What a step does.
#[derive(Clone)]
pub enum Body {
    /// Run a command on a worker of the step's worker kind: sync directories there first,
    /// collect files afterwards.
    Command {
        /// The command.
        command: StepCommand,
        /// Directories to copy to the worker first.
        sync: Vec<SyncDir>,
        /// Files to bring back afterwards: paths or `*` patterns on the worker, relative to
        /// the command's directory (templated).
        collect: Vec<String>,
    },
    /// Run a function in this process, on no machine.
    Function(StepFn),
}

impl fmt::Debug for Body {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Body::Command {
                command,
                sync,
                collect,
            } => f
                .debug_struct("Command")
                .field("command", command)
                .field("sync", sync)
                .field("collect", collect)
                .finish(),
            Body::Function(_) => f.write_str("Function"),
        }
    }
}

/// Decides whether a step still has work to do, so a re-run skips what is done.
#[derive(Clone, Default)]
pub enum ShouldRun {
    /// Always run (the default).
    #[default]
    Always,
    /// Run a command on this host (templated `argv`): exit 0 means "run", exit 1 "done,
    /// skip" (its first output line is the reason); anything else is an error.
    Command(Vec<String>),
    /// Skip when every named artifact (templated names) is already at the publisher.
    Published {
        /// Where the artifacts go.
        publisher: Arc<dyn Publisher>,
        /// Their published names.
        artifacts: Vec<String>,
    },
    /// A function: `Some(reason)` skips.
    Function(SkipFn),
}

impl fmt::Debug for ShouldRun {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ShouldRun::Always => f.write_str("Always"),
            ShouldRun::Command(argv) => f.debug_tuple("Command").field(argv).finish(),
            ShouldRun::Published {
                publisher,
                artifacts,
            } => f
                .debug_struct("Published")
                .field("publisher", &publisher.name())
                .field("artifacts", artifacts)
                .finish(),
            ShouldRun::Function(_) => f.write_str("Function"),
        }
    }
}

/// What a body or check knows about the task it runs for.
#[derive(Debug, Clone)]
pub struct StepContext {
    /// The step's name.
    pub step: String,
    /// The task's name: the step and its cell's values (`build-3.1-debian`).
    pub task: String,
    /// The matrix cell.
    pub cell: Cell,
    /// The run's inputs.
    pub inputs: BTreeMap<String, String>,
    /// Outputs of the tasks this one depends on, by task name.
    pub dependencies: BTreeMap<String, Outputs>,
    /// Files collected by the tasks this one depends on, by task name.
    pub artifacts: BTreeMap<String, Vec<PathBuf>>,
    /// This attempt, from 1.
    pub attempt: u32,
}

impl StepContext {
    /// The value of a matrix dimension or, failing that, an input.
    pub fn value(&self, name: &str) -> Option<&str> {
        self.cell
            .get(name)
            .or_else(|| self.inputs.get(name).map(String::as_str))
    }

    /// Every file the dependencies collected, by task name.
    pub fn all_artifacts(&self) -> Vec<PathBuf> {
        self.artifacts.values().flatten().cloned().collect()
    }
}

/// One named step of a pipeline.
#[derive(Debug, Clone)]
pub struct Step {
    pub(crate) name: String,
    pub(crate) matrix: Vec<String>,
    pub(crate) needs: Vec<String>,
    pub(crate) body: Body,
    pub(crate) should_run: ShouldRun,
    pub(crate) kind: StepKind,
    pub(crate) timeout: Duration,
    pub(crate) worker: Option<String>,
}

impl Step {
    /// A step that runs `command` on a worker of kind `worker`.
    pub fn command(
        name: impl Into<String>,
        worker: impl Into<String>,
        command: StepCommand,
    ) -> Self {
        Self::new(
            name,
            Body::Command {
                command,
                sync: Vec::new(),
                collect: Vec::new(),
            },
            Some(worker.into()),
        )
    }

    /// A step that runs `f` in this process, on no machine.
    pub fn function<F, Fut>(name: impl Into<String>, f: F) -> Self
    where
        F: Fn(StepContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Outputs, StepFailure>> + Send + 'static,
    {
        let f: StepFn = Arc::new(move |ctx| Box::pin(f(ctx)));
        Self::new(name, Body::Function(f), None)
    }

    fn new(name: impl Into<String>, body: Body, worker: Option<String>) -> Self {
        Step {
            name: name.into(),
            matrix: Vec::new(),
            needs: Vec::new(),
            body,
            should_run: ShouldRun::Always,
            kind: StepKind::Cheap,
            timeout: Duration::from_secs(3600),
            worker,
        }
    }

    /// Runs the step once per combination of these dimensions' values.
    pub fn over<I, S>(mut self, dimensions: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.matrix = dimensions.into_iter().map(Into::into).collect();
        self
    }

    /// Steps that must succeed first. A cell waits for the cells of each named step that
    /// agree with it on their shared dimensions: one cell within the same matrix cell, or
    /// all of them when the step named has dimensions this one lacks (a fan-in).
    pub fn needs<I, S>(mut self, steps: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.needs = steps.into_iter().map(Into::into).collect();
        self
    }

    /// The retry kind (default: cheap).
    pub fn kind(mut self, kind: StepKind) -> Self {
        self.kind = kind;
        self
    }

    /// How long one attempt may take (default: one hour).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The check that lets a re-run skip what is done.
    pub fn should_run(mut self, check: ShouldRun) -> Self {
        self.should_run = check;
        self
    }

    /// Skips the step when `f` says why it is already done.
    pub fn skip_when<F, Fut>(self, f: F) -> Self
    where
        F: Fn(StepContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = hgauto_core::Result<Option<String>>> + Send + 'static,
    {
        let f: SkipFn = Arc::new(move |ctx| Box::pin(f(ctx)));
        self.should_run(ShouldRun::Function(f))
    }

    /// Copies a local directory to the worker before the command (command steps only).
    pub fn sync(mut self, local: impl Into<String>, remote: impl Into<String>) -> Self {
        if let Body::Command { sync, .. } = &mut self.body {
            sync.push(SyncDir {
                local: local.into(),
                remote: remote.into(),
            });
        }
        self
    }

    /// Brings files matching `pattern` back from the worker afterwards (command steps only).
    pub fn collect(mut self, pattern: impl Into<String>) -> Self {
        if let Body::Command { collect, .. } = &mut self.body {
            collect.push(pattern.into());
        }
        self
    }

    /// The step's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The worker kind it runs on (`None` for function steps).
    pub fn worker(&self) -> Option<&str> {
        self.worker.as_deref()
    }

    /// Its matrix dimensions.
    pub fn matrix(&self) -> &[String] {
        &self.matrix
    }

    /// The steps it needs.
    pub fn dependencies(&self) -> &[String] {
        &self.needs
    }

    /// Its retry kind.
    pub fn step_kind(&self) -> &StepKind {
        &self.kind
    }

    /// Its body.
    pub fn body(&self) -> &Body {
        &self.body
    }

    /// Its skip check.
    pub fn check(&self) -> &ShouldRun {
        &self.should_run
    }

    /// Its timeout.
    pub fn attempt_timeout(&self) -> Duration {
        self.timeout
    }
}
