//! Running a pipeline in this process: [`Runner`].

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hgauto_core::command::Stream;
use hgauto_core::error::{Error, Result};
use hgauto_core::local::LocalProvider;
use hgauto_core::provider::ResourceProvider;

use super::config::Config;
use super::definition::Pipeline;
use super::plan::{expand, Selection};
use super::prepare::prepare;
use super::results::{Failure, Mode, RunResult, StepResults, TaskResult, TaskState, RESULT_SCHEMA};
use super::scheduler;
use super::step::Body;

/// Runs a [`Pipeline`] in this process: provisions workers per kind on demand, retries by
/// step kind, runs a health check, and writes `result.json`, `report.html` and one log per
/// worker under its output directory.
///
/// ```no_run
/// # async fn demo(p: hgauto_pipeline::Pipeline) -> hgauto_core::Result<()> {
/// use std::sync::Arc;
/// use hgauto_pipeline::{Runner, Selection};
/// let provider = Arc::new(hgauto_core::LocalProvider::from_env()?);
/// let result = Runner::new(p, "out")
///     .provider(provider)
///     .selection(Selection::all().only("version", ["3.1"]))
///     .run()
///     .await?;
/// println!("{}", result.failure_summary());
/// # Ok(()) }
/// ```
pub struct Runner {
    pipeline: Pipeline,
    provider: Option<Arc<dyn ResourceProvider>>,
    state_dir: Option<PathBuf>,
    selection: Selection,
    cfg: Config,
}

impl std::fmt::Debug for Runner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runner")
            .field("pipeline", &self.pipeline.name)
            .field(
                "provider",
                &self.provider.as_ref().map(|p| p.name().to_owned()),
            )
            .field("mode", &self.cfg.mode)
            .field("out_dir", &self.cfg.out_dir)
            .finish()
    }
}

impl Runner {
    /// A run of `pipeline` writing under `out_dir`.
    pub fn new(pipeline: Pipeline, out_dir: impl AsRef<Path>) -> Self {
        Runner {
            pipeline,
            provider: None,
            state_dir: None,
            selection: Selection::default(),
            cfg: Config {
                out_dir: out_dir.as_ref().to_owned(),
                mode: Mode::Normal,
                inputs: BTreeMap::new(),
                secrets: hgauto_core::redact::Secrets::default(),
                health_check: Duration::from_secs(300),
                idle_timeout: Duration::from_secs(600),
                ready_timeout: Duration::from_secs(600),
                check_timeout: super::checks::DEFAULT_CHECK_TIMEOUT,
                time_scale: 1.0,
                function_limit: 64,
                on_line: None,
                on_task: None,
            },
        }
    }

    /// Where workers come from (needed unless every selected step is a function, or the
    /// mode is `local`).
    pub fn provider(mut self, provider: Arc<dyn ResourceProvider>) -> Self {
        self.provider = Some(provider);
        self
    }

    /// The state directory of the local provider in `local` mode (default: hgauto's).
    pub fn state_dir(mut self, dir: impl AsRef<Path>) -> Self {
        self.state_dir = Some(dir.as_ref().to_owned());
        self
    }

    /// Which steps and values to run (default: all).
    pub fn selection(mut self, selection: Selection) -> Self {
        self.selection = selection;
        self
    }

    /// Normal, fake or local.
    pub fn mode(mut self, mode: Mode) -> Self {
        self.cfg.mode = mode;
        self
    }

    /// A value every task sees as `{name}` and `HGAUTO_INPUT_<NAME>`.
    pub fn input(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.cfg.inputs.insert(name.into(), value.into());
        self
    }

    /// Sets input `name` to a secret `value` (a token): used like any input, but scrubbed,
    /// with the redaction rules, from every error text that reaches `result.json`,
    /// `report.html` and the failure summary.
    pub fn secret_input(
        mut self,
        name: impl Into<String>,
        value: hgauto_core::redact::SecretString,
    ) -> Self {
        self.cfg.secrets.add_secret(&value);
        self.cfg
            .inputs
            .insert(name.into(), value.expose().to_owned());
        self
    }

    /// How often the health check runs (default 300 s).
    pub fn health_check(mut self, every: Duration) -> Self {
        self.cfg.health_check = every.max(Duration::from_millis(10));
        self
    }

    /// How long a worker waits for a task before it shuts down (default 10 minutes).
    pub fn idle_timeout(mut self, after: Duration) -> Self {
        self.cfg.idle_timeout = after;
        self
    }

    /// The longest a task's `should_run` check may take (default 10 minutes). A check
    /// command past it is killed with its whole process group, and the task fails.
    pub fn check_timeout(mut self, limit: Duration) -> Self {
        self.cfg.check_timeout = limit;
        self
    }

    /// How long a new worker may take to accept commands (default 10 minutes).
    pub fn ready_timeout(mut self, limit: Duration) -> Self {
        self.cfg.ready_timeout = limit;
        self
    }

    /// Multiplies every retry delay (default 1.0; tests use a small factor to see the
    /// policies' attempt counts without their minutes of waiting).
    pub fn retry_time_scale(mut self, factor: f64) -> Self {
        self.cfg.time_scale = factor.max(0.0);
        self
    }

    /// Function bodies running at once (default 64).
    pub fn function_limit(mut self, n: usize) -> Self {
        self.cfg.function_limit = n.max(1);
        self
    }

    /// Called for every output line of a command step.
    pub fn on_line(mut self, hook: impl Fn(&str, Stream, &str) + Send + Sync + 'static) -> Self {
        self.cfg.on_line = Some(Arc::new(hook));
        self
    }

    /// Called whenever a task ends.
    pub fn on_task(
        mut self,
        hook: impl Fn(&str, TaskState, usize) + Send + Sync + 'static,
    ) -> Self {
        self.cfg.on_task = Some(Arc::new(hook));
        self
    }

    /// The tasks this run would execute, by name, in dependency order. Checks the selection
    /// and every template as [`run`](Self::run) does, and starts nothing.
    pub fn plan(&self) -> Result<Vec<String>> {
        let tasks = expand(&self.pipeline, &self.selection)?;
        prepare(&self.pipeline, &tasks, &self.cfg.inputs, self.cfg.mode)?;
        Ok(tasks.into_iter().map(|t| t.name).collect())
    }

    /// Runs the selected tasks to an end and writes `result.json` and `report.html`.
    ///
    /// Returns the result tree even when tasks failed (see [`RunResult::into_result`]).
    /// Errors: bad input (the selection, a template, no provider), found before any machine
    /// is provisioned, or an interrupt (workers are terminated first).
    pub async fn run(self) -> Result<RunResult> {
        let started_at = hgauto_core::clock::unix_now();
        let started = Instant::now();
        let tasks = expand(&self.pipeline, &self.selection)?;
        let prepared = prepare(&self.pipeline, &tasks, &self.cfg.inputs, self.cfg.mode)?;
        let needs_workers = tasks
            .iter()
            .any(|t| matches!(self.pipeline.steps[t.step].body, Body::Command { .. }));
        let provider: Option<Arc<dyn ResourceProvider>> =
            match (self.cfg.mode, self.provider) {
                (Mode::Local, _) if needs_workers => Some(Arc::new(match &self.state_dir {
                    Some(dir) => LocalProvider::new(dir)?,
                    None => LocalProvider::from_env()?,
                })),
                (_, Some(p)) => Some(p),
                (_, None) if needs_workers => return Err(Error::invalid(
                    format!("pipeline {:?}", self.pipeline.name),
                    "has command steps but the run has no provider (set one, or use local mode)",
                )),
                (_, None) => None,
            };
        let out = &self.cfg.out_dir;
        let logs = out.join("logs");
        std::fs::create_dir_all(&logs).map_err(|e| {
            Error::invalid(
                format!("output directory {}", logs.display()),
                e.to_string(),
            )
        })?;
        let pipeline = self.pipeline.clone();
        let mode = self.cfg.mode;
        let finished = scheduler::run(
            self.pipeline,
            tasks.clone(),
            prepared,
            self.cfg.clone(),
            provider,
        )
        .await?;

        let secrets = self.cfg.secrets.clone();
        // Error texts can hold a filled-in command line (`--input token=...`): what is
        // written out is scrubbed of declared secrets and of anything credential-shaped.
        let clean = |e: &str| {
            secrets
                .scrub(&hgauto_core::redact::redact_text(e))
                .into_owned()
        };
        let mut steps: Vec<StepResults> = Vec::new();
        let mut failures = Vec::new();
        let mut by_step: Vec<Vec<usize>> = vec![Vec::new(); pipeline.steps.len()];
        for (ti, t) in tasks.iter().enumerate() {
            by_step[t.step].push(ti);
        }
        for (si, step) in pipeline.steps.iter().enumerate() {
            let mut cells = Vec::new();
            for &ti in &by_step[si] {
                let t = &tasks[ti];
                let r = &finished.records[ti];
                let state = r.state.unwrap_or(TaskState::Skipped);
                if state == TaskState::Failed {
                    failures.push(Failure {
                        step: step.name.clone(),
                        task: t.name.clone(),
                        cell: t.cell.clone(),
                        machine: r.machine.clone(),
                        attempts: r.attempts,
                        error: clean(r.error.as_deref().unwrap_or_default()),
                    });
                }
                cells.push(TaskResult {
                    task: t.name.clone(),
                    cell: t.cell.clone(),
                    state,
                    reason: r.reason.clone(),
                    machine: r.machine.clone(),
                    elapsed_ms: r.elapsed.as_millis() as u64,
                    attempts: r.attempts,
                    error: if state == TaskState::Succeeded {
                        None
                    } else {
                        r.error.as_deref().map(clean)
                    },
                    log: r.log.clone(),
                    outputs: r.outputs.clone(),
                    artifacts: r.artifacts.clone(),
                });
            }
            if !cells.is_empty() {
                steps.push(StepResults {
                    step: step.name.clone(),
                    kind: step.kind.name().into(),
                    worker: step.worker.clone(),
                    cells,
                });
            }
        }
        let result = RunResult {
            schema: RESULT_SCHEMA.into(),
            pipeline: pipeline.name.clone(),
            mode,
            ok: failures.is_empty(),
            started_at,
            elapsed_ms: started.elapsed().as_millis() as u64,
            steps,
            workers: finished.workers,
            health_checks: finished.health,
            failures,
        };
        result.write(&out.join("result.json"))?;
        hgauto_core::backend::fs::write_atomic(
            &out.join("report.html"),
            super::report::html(&pipeline, &result).as_bytes(),
        )?;
        Ok(result)
    }
}
