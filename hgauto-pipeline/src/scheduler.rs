//! The embedded engine's scheduler: one coordinator that owns every task's state, worker
//! tasks that take command tasks from per-kind queues, and function tasks run in place.
//! Everything reaches the coordinator as an [`Event`], so its state needs no lock.

use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, Notify, Semaphore};

use hgauto_core::error::{Error, Result};
use hgauto_core::provider::ResourceProvider;
use hgauto_core::retry::RetryPolicy;

use super::checks::run_check;
use super::config::Config;
use super::definition::Pipeline;
use super::plan::Task;
use super::prepare::{Prepared, PreparedCheck};
use super::results::{HealthChecks, Mode, TaskState, WorkerRecord};
use super::shared::{Event, Queues, Shared};
use super::step::{Body, Outputs, StepFailure};
use super::worker::run_worker;

/// One task's record, as the result tree will show it.
#[derive(Debug, Default, Clone)]
pub(crate) struct Record {
    pub state: Option<TaskState>,
    pub reason: Option<String>,
    pub machine: Option<String>,
    pub elapsed: Duration,
    pub attempts: u32,
    pub error: Option<String>,
    pub log: Option<PathBuf>,
    pub outputs: Outputs,
    pub artifacts: Vec<PathBuf>,
    deps_left: usize,
    /// Skipped because a task it needs failed (or was skipped for that reason).
    blocked: bool,
}

/// What a finished run hands back to the engine.
pub(crate) struct Finished {
    pub records: Vec<Record>,
    pub workers: Vec<WorkerRecord>,
    pub health: HealthChecks,
}

/// Provisioning failures in a row after which a kind's waiting tasks fail.
const PROVISION_TRIES: u32 = 3;

struct Coordinator {
    shared: Arc<Shared>,
    records: Vec<Record>,
    remaining: usize,
    live: BTreeMap<String, usize>,
    starting: BTreeMap<String, usize>,
    provision_failures: BTreeMap<String, (u32, String)>,
    workers: Vec<WorkerRecord>,
    health: HealthChecks,
    functions: Arc<Semaphore>,
}

/// Runs every task of `tasks` to an end.
pub(crate) async fn run(
    pipeline: Pipeline,
    tasks: Vec<Task>,
    prepared: Vec<Prepared>,
    cfg: Config,
    provider: Option<Arc<dyn ResourceProvider>>,
) -> Result<Finished> {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let n = tasks.len();
    let records = tasks
        .iter()
        .map(|t| Record {
            deps_left: t.deps.len(),
            ..Record::default()
        })
        .collect();
    let functions = Arc::new(Semaphore::new(cfg.function_limit.max(1)));
    let health_every = cfg.health_check;
    let shared = Arc::new(Shared {
        pipeline,
        tasks,
        prepared,
        cfg,
        provider,
        queues: Mutex::new(Queues::default()),
        work: Notify::new(),
        events: tx,
        finished: Mutex::new(vec![None; n]),
    });
    let mut c = Coordinator {
        shared: shared.clone(),
        records,
        remaining: n,
        live: BTreeMap::new(),
        starting: BTreeMap::new(),
        provision_failures: BTreeMap::new(),
        workers: Vec::new(),
        health: HealthChecks::default(),
        functions,
    };
    for t in 0..n {
        if shared.tasks[t].deps.is_empty() {
            c.ready(t);
        }
    }
    let mut tick =
        tokio::time::interval_at(tokio::time::Instant::now() + health_every, health_every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let interrupted = hgauto_core::cleanup::interrupted();
    tokio::pin!(interrupted);
    let mut outcome = Ok(());
    while c.remaining > 0 {
        tokio::select! {
            Some(ev) = rx.recv() => c.handle(ev),
            _ = tick.tick() => c.health_check(),
            _ = &mut interrupted => {
                outcome = Err(Error::Interrupted { signal: hgauto_core::cleanup::interrupt_signal() });
                break;
            }
        }
    }
    shared.queues().done = true;
    shared.work.notify_waiters();
    // Workers end their machines on the way out; wait for all of them.
    while c.live.values().sum::<usize>() > 0 {
        match rx.recv().await {
            Some(ev) => c.handle(ev),
            None => break,
        }
    }
    outcome?;
    Ok(Finished {
        records: c.records,
        workers: c.workers,
        health: c.health,
    })
}

impl Coordinator {
    fn handle(&mut self, ev: Event) {
        match ev {
            Event::Checked { task, result } => match result {
                Ok(Some(reason)) => self.finish(task, TaskState::Skipped, Some(reason)),
                Ok(None) => self.start(task, 1),
                Err(e) => {
                    self.records[task].error = Some(format!("should_run check failed: {e}"));
                    self.finish(task, TaskState::Failed, None);
                }
            },
            Event::Attempt {
                task,
                attempt,
                machine,
                log,
                elapsed,
                outcome,
            } => {
                let r = &mut self.records[task];
                r.attempts = attempt;
                r.elapsed += elapsed;
                if machine.is_some() {
                    r.machine = machine;
                    r.log = log;
                }
                match outcome {
                    Ok((outputs, artifacts)) => {
                        r.error = None;
                        r.outputs = outputs;
                        r.artifacts = artifacts;
                        self.finish(task, TaskState::Succeeded, None);
                    }
                    Err(f) => {
                        r.error = Some(f.message.clone());
                        let policy = self.policy(task);
                        if f.retry
                            && attempt <= policy.max_retries
                            && !hgauto_core::cleanup::is_interrupted()
                        {
                            let delay = policy
                                .delay(attempt - 1, rand::random::<f64>())
                                .mul_f64(self.shared.cfg.time_scale);
                            tracing::info!(task = %self.shared.tasks[task].name, attempt, ?delay, error = %f, "retrying");
                            let shared = self.shared.clone();
                            tokio::spawn(async move {
                                tokio::time::sleep(delay).await;
                                shared.send(Event::RetryDue {
                                    task,
                                    attempt: attempt + 1,
                                });
                            });
                        } else {
                            self.finish(task, TaskState::Failed, None);
                        }
                    }
                }
            }
            Event::RetryDue { task, attempt } => self.start(task, attempt),
            Event::WorkerUp { kind } => {
                dec(&mut self.starting, &kind);
                self.provision_failures.remove(&kind);
            }
            Event::WorkerGone {
                kind,
                record,
                provision_error,
            } => {
                dec(&mut self.live, &kind);
                self.workers.extend(record);
                if let Some(err) = provision_error {
                    dec(&mut self.starting, &kind);
                    self.provisioning_failed(&kind, err);
                }
            }
            Event::StartWorkers { kind } => {
                if self.live.get(&kind).copied().unwrap_or(0) == 0 && self.queued(&kind) > 0 {
                    self.spawn_worker(&kind, false);
                }
                self.ensure_workers(&kind);
            }
        }
    }

    fn policy(&self, task: usize) -> RetryPolicy {
        self.shared.pipeline.steps[self.shared.tasks[task].step]
            .kind
            .policy()
    }

    /// A task whose needs are met: check it, then start it.
    fn ready(&mut self, task: usize) {
        let shared = self.shared.clone();
        let check = shared.prepared[task].check.clone();
        if matches!(check, PreparedCheck::None) {
            return self.start(task, 1);
        }
        let ctx = shared.context(task, 0);
        tokio::spawn(async move {
            let step = &shared.pipeline.steps[shared.tasks[task].step];
            let result = run_check(&step.should_run, check, ctx, shared.cfg.check_timeout).await;
            shared.send(Event::Checked { task, result });
        });
    }

    /// Attempt `attempt` of `task`: in place for a function, on a worker for a command.
    fn start(&mut self, task: usize, attempt: u32) {
        let shared = self.shared.clone();
        let step = &shared.pipeline.steps[shared.tasks[task].step];
        match (&step.body, shared.cfg.mode) {
            (Body::Function(f), mode) => {
                let f = f.clone();
                let ctx = shared.context(task, attempt);
                let timeout = step.timeout;
                let permits = self.functions.clone();
                let shared = shared.clone();
                tokio::spawn(async move {
                    let _permit = permits.acquire_owned().await;
                    let started = Instant::now();
                    let outcome = if mode == Mode::Fake {
                        Ok((Outputs::new(), Vec::new()))
                    } else {
                        match tokio::time::timeout(timeout, f(ctx)).await {
                            Ok(r) => r.map(|o| (o, Vec::new())),
                            Err(_) => Err(StepFailure::retryable(format!(
                                "timed out after {timeout:?}"
                            ))),
                        }
                    };
                    shared.send(Event::Attempt {
                        task,
                        attempt,
                        machine: None,
                        log: None,
                        elapsed: started.elapsed(),
                        outcome,
                    });
                });
            }
            (Body::Command { .. }, _) => {
                let kind = step.worker.clone().expect("checked when built");
                shared
                    .queues()
                    .ready
                    .entry(kind.clone())
                    .or_default()
                    .push_back((task, attempt));
                shared.work.notify_waiters();
                // Workers start on demand before a task's first attempt, as HHVM's start
                // state did; a retry goes to a live worker or waits for the health check.
                if attempt == 1 {
                    self.ensure_workers(&kind);
                }
            }
        }
    }

    fn queued(&self, kind: &str) -> usize {
        self.shared
            .queues()
            .ready
            .get(kind)
            .map_or(0, VecDeque::len)
    }

    /// Starts as many workers of `kind` as waiting tasks lack, up to the kind's maximum.
    fn ensure_workers(&mut self, kind: &str) {
        let (queued, idle) = {
            let q = self.shared.queues();
            (
                q.ready.get(kind).map_or(0, VecDeque::len),
                q.idle.get(kind).copied().unwrap_or(0),
            )
        };
        let starting = self.starting.get(kind).copied().unwrap_or(0);
        let live = self.live.get(kind).copied().unwrap_or(0);
        let max = self.shared.pipeline.workers[kind].max_workers;
        let need = queued.saturating_sub(idle + starting);
        for _ in 0..need.min(max.saturating_sub(live)) {
            self.spawn_worker(kind, false);
        }
    }

    fn spawn_worker(&mut self, kind: &str, from_health_check: bool) {
        *self.live.entry(kind.to_owned()).or_default() += 1;
        *self.starting.entry(kind.to_owned()).or_default() += 1;
        tokio::spawn(run_worker(
            self.shared.clone(),
            kind.to_owned(),
            from_health_check,
        ));
    }

    /// Every kind with waiting tasks and no live worker gets one.
    fn health_check(&mut self) {
        self.health.runs += 1;
        let kinds: Vec<String> = self.shared.pipeline.workers.keys().cloned().collect();
        for kind in kinds {
            if self.queued(&kind) > 0 && self.live.get(&kind).copied().unwrap_or(0) == 0 {
                tracing::info!(kind = %kind, "health check: tasks wait with no worker; starting one");
                self.health.workers_started += 1;
                self.spawn_worker(&kind, true);
            }
        }
    }

    fn provisioning_failed(&mut self, kind: &str, err: String) {
        let entry = self
            .provision_failures
            .entry(kind.to_owned())
            .or_insert((0, String::new()));
        entry.0 += 1;
        entry.1 = err.clone();
        let tries = entry.0;
        tracing::warn!(kind, tries, error = %err, "cannot start a worker");
        if tries >= PROVISION_TRIES && self.live.get(kind).copied().unwrap_or(0) == 0 {
            let waiting: Vec<(usize, u32)> = self
                .shared
                .queues()
                .ready
                .remove(kind)
                .unwrap_or_default()
                .into();
            for (task, _) in waiting {
                self.records[task].error = Some(format!(
                    "no worker of kind {kind:?} could be started ({tries} tries): {err}"
                ));
                self.finish(task, TaskState::Failed, None);
            }
            self.provision_failures.remove(kind);
            return;
        }
        let delay = RetryPolicy::cheap()
            .delay(tries - 1, 0.0)
            .mul_f64(self.shared.cfg.time_scale);
        let shared = self.shared.clone();
        let kind = kind.to_owned();
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            shared.send(Event::StartWorkers { kind });
        });
    }

    /// Ends `task` and moves its dependants on: a failure (or a skip caused by one) skips
    /// them; success or "already done" counts towards their needs.
    fn finish(&mut self, task: usize, state: TaskState, reason: Option<String>) {
        if self.records[task].state.is_some() {
            return;
        }
        let blocked = state == TaskState::Failed
            || (state == TaskState::Skipped && self.records[task].blocked);
        {
            let r = &mut self.records[task];
            r.state = Some(state);
            r.reason = reason;
        }
        self.remaining -= 1;
        if !blocked {
            let r = &self.records[task];
            self.shared
                .finished
                .lock()
                .unwrap_or_else(|p| p.into_inner())[task] =
                Some((r.outputs.clone(), r.artifacts.clone()));
        }
        if let Some(hook) = &self.shared.cfg.on_task {
            hook(&self.shared.tasks[task].name, state, self.remaining);
        }
        // Dependants of a failure name the failed task itself, however far down they are.
        let why = match state {
            TaskState::Failed => format!("needs {}, which failed", self.shared.tasks[task].name),
            _ => self.records[task].reason.clone().unwrap_or_default(),
        };
        for d in self.shared.tasks[task].dependants.clone() {
            if self.records[d].state.is_some() {
                continue;
            }
            if blocked {
                self.records[d].blocked = true;
                self.finish(d, TaskState::Skipped, Some(why.clone()));
            } else {
                self.records[d].deps_left -= 1;
                if self.records[d].deps_left == 0 {
                    self.ready(d);
                }
            }
        }
    }
}

fn dec(map: &mut BTreeMap<String, usize>, kind: &str) {
    if let Some(n) = map.get_mut(kind) {
        *n = n.saturating_sub(1);
    }
}
