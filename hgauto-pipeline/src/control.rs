//! The control activity of a pipeline exported to Step Functions ([`super::asl`]): what
//! HHVM did in Lambda functions, answered by one process that knows the pipeline.
//!
//! Requests (the Task states' `Parameters`) and answers (their output):
//! - `should-run` `{task, mode}` → `{"run": bool, "reason": str}`: the task's `should_run`
//!   check (always "run" in `fake` mode).
//! - `acquire-worker` `{kind, activity, task, execution}` → `{"granted": bool, "machine":
//!   id or null}`: a worker slot for the task. At most the kind's `max_workers` tasks hold
//!   one at a time, as in the embedded engine; a task not granted one waits and asks again.
//!   A grant starts a worker when the kind has fewer live workers than granted slots: so
//!   a 200-cell step never has more than `max_workers` machines. Workers are provisioned
//!   through the provider, labelled with the activity they serve (`hgauto-activity`), and
//!   their image starts the worker loop ([`super::asl::worker_user_data`]).
//! - `release-worker` `{kind, task, execution}` → `{}`: the task ended; its slot is free.
//! - `start-worker` `{kind, activity}` → `{"machine": id or null}`: one more worker of the
//!   kind, unless it already has `max_workers` live ones.
//! - `function` `{task, inputs, mode}` → `{"outputs": {...}}`: runs a function step.
//! - `work-done` `{execution}` → `{}`: every task of the execution has ended (any slot it
//!   still held is freed).
//! - `health-check` `{execution}` → `{"finished": bool, "started": [ids]}`: once the work is
//!   done, ends the health loop; before that, starts a worker for every kind of which this
//!   execution holds slots and that has no live worker.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex};

use serde_json::{json, Value};

use hgauto_core::error::{Error, Result};
use hgauto_core::provider::ResourceProvider;

use super::checks::run_check;
use super::definition::{Pipeline, WorkerKind};
use super::plan::{expand, Selection, Task};
use super::prepare::{prepare, Prepared};
use super::results::Mode;
use super::step::{Body, StepContext, StepFailure};

/// The label a control worker gives the workers it starts: the activity they serve.
pub const ACTIVITY_LABEL: &str = "hgauto-activity";

#[derive(Default)]
struct State {
    finished: HashSet<String>,
    /// Per execution, the worker kinds it asked for.
    kinds: HashMap<String, BTreeSet<String>>,
    /// Per kind, the workers started and the activity they serve.
    workers: BTreeMap<String, KindWorkers>,
    /// Per kind, the (execution, task) pairs holding a worker slot.
    slots: BTreeMap<String, BTreeSet<(String, String)>>,
}

#[derive(Default, Clone)]
struct KindWorkers {
    /// Machine ids, as started (some may have powered off since).
    ids: Vec<String>,
    /// Starts under way.
    starting: usize,
    activity: String,
}

impl State {
    fn held(&self, kind: &str, exec: &str) -> usize {
        self.slots
            .get(kind)
            .map_or(0, |s| s.iter().filter(|(e, _)| e == exec).count())
    }
}

/// How workers started by the control worker boot: HHVM's `worker.sh` as user data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerBoot {
    /// The AWS region the worker's `aws` CLI talks to.
    pub region: String,
    /// What the worker runs per task (the task's input is in `HGAUTO_TASK_INPUT`).
    pub task_script: String,
    /// Run once first; may define `cleanup()`.
    pub init: Option<String>,
    /// Empty long polls in a row after which the worker powers off.
    pub idle_polls: u32,
}

/// Answers control requests for one pipeline (see the [module docs](self)).
pub struct Control {
    pipeline: Pipeline,
    tasks: HashMap<String, (Task, Prepared)>,
    inputs: BTreeMap<String, String>,
    provider: Option<Arc<dyn ResourceProvider>>,
    boot: Option<WorkerBoot>,
    state: Mutex<State>,
}

impl std::fmt::Debug for Control {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Control")
            .field("pipeline", &self.pipeline.name)
            .field("tasks", &self.tasks.len())
            .finish()
    }
}

fn text<'a>(request: &'a Value, key: &str) -> std::result::Result<&'a str, StepFailure> {
    request
        .get(key)
        .and_then(Value::as_str)
        .ok_or_else(|| StepFailure::fatal(format!("control request without {key:?}: {request}")))
}

/// The (execution, task) pair a worker-slot request is about.
fn slot_of(request: &Value) -> std::result::Result<(String, String), StepFailure> {
    Ok((
        text(request, "execution")?.to_owned(),
        text(request, "task")?.to_owned(),
    ))
}

impl Control {
    /// A control worker for `pipeline`, whose templates are filled with `inputs` (checked
    /// here: an unknown placeholder fails now, not mid-run).
    pub fn new(pipeline: Pipeline, inputs: BTreeMap<String, String>) -> Result<Self> {
        let tasks = expand(&pipeline, &Selection::all())?;
        let prepared = prepare(&pipeline, &tasks, &inputs, Mode::Normal)?;
        let tasks = tasks
            .into_iter()
            .zip(prepared)
            .map(|(t, p)| (t.name.clone(), (t, p)))
            .collect();
        Ok(Control {
            pipeline,
            tasks,
            inputs,
            provider: None,
            boot: None,
            state: Mutex::new(State::default()),
        })
    }

    /// Where `start-worker` and the health check provision workers.
    pub fn provider(mut self, provider: Arc<dyn ResourceProvider>) -> Self {
        self.provider = Some(provider);
        self
    }

    /// Boots the workers it starts with [`worker_user_data`](super::asl::worker_user_data)
    /// for their activity (unless the worker kind's spec has user data of its own).
    pub fn worker_boot(mut self, boot: WorkerBoot) -> Self {
        self.boot = Some(boot);
        self
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn task(&self, request: &Value) -> std::result::Result<&(Task, Prepared), StepFailure> {
        let name = text(request, "task")?;
        self.tasks.get(name).ok_or_else(|| {
            StepFailure::fatal(format!(
                "pipeline {:?} has no task {name:?}",
                self.pipeline.name
            ))
        })
    }

    fn context(&self, t: &Task, inputs: BTreeMap<String, String>, attempt: u32) -> StepContext {
        StepContext {
            step: self.pipeline.steps[t.step].name.clone(),
            task: t.name.clone(),
            cell: t.cell.clone(),
            inputs,
            dependencies: BTreeMap::new(),
            artifacts: BTreeMap::new(),
            attempt,
        }
    }

    /// Answers one request. A failure says whether the state machine's Retry applies.
    pub async fn handle(&self, request: &Value) -> std::result::Result<Value, StepFailure> {
        let fake = request.get("mode").and_then(Value::as_str) == Some("fake");
        match text(request, "action")? {
            "should-run" => {
                let (t, p) = self.task(request)?;
                if fake {
                    return Ok(json!({"run": true, "reason": ""}));
                }
                let step = &self.pipeline.steps[t.step];
                let ctx = self.context(t, self.inputs.clone(), 0);
                let reason = run_check(
                    &step.should_run,
                    p.check.clone(),
                    ctx,
                    super::checks::DEFAULT_CHECK_TIMEOUT,
                )
                .await?;
                Ok(json!({"run": reason.is_none(), "reason": reason.unwrap_or_default()}))
            }
            "function" => {
                let (t, _) = self.task(request)?;
                let Body::Function(f) = &self.pipeline.steps[t.step].body else {
                    return Err(StepFailure::fatal(format!(
                        "task {} is not a function step",
                        t.name
                    )));
                };
                if fake {
                    return Ok(json!({"outputs": {}}));
                }
                let mut inputs = self.inputs.clone();
                if let Some(given) = request.get("inputs").and_then(Value::as_object) {
                    for (k, v) in given {
                        inputs.insert(
                            k.clone(),
                            v.as_str().map_or_else(|| v.to_string(), str::to_owned),
                        );
                    }
                }
                let attempt = request.get("retry").and_then(Value::as_u64).unwrap_or(0) as u32 + 1;
                let outputs = f(self.context(t, inputs, attempt)).await?;
                Ok(json!({"outputs": outputs}))
            }
            "acquire-worker" => {
                let (kind, activity) = (text(request, "kind")?, text(request, "activity")?);
                let slot = slot_of(request)?;
                let max = self.max_workers(kind)?;
                let held = {
                    let mut st = self.state();
                    st.kinds
                        .entry(slot.0.clone())
                        .or_default()
                        .insert(kind.to_owned());
                    let slots = st.slots.entry(kind.to_owned()).or_default();
                    if !slots.contains(&slot) && slots.len() >= max {
                        return Ok(json!({"granted": false, "machine": null}));
                    }
                    slots.insert(slot);
                    slots.len()
                };
                let machine = self.ensure_workers(kind, activity, held).await?;
                Ok(json!({"granted": true, "machine": machine}))
            }
            "release-worker" => {
                let kind = text(request, "kind")?;
                let slot = slot_of(request)?;
                if let Some(slots) = self.state().slots.get_mut(kind) {
                    slots.remove(&slot);
                }
                Ok(json!({}))
            }
            "start-worker" => {
                let kind = text(request, "kind")?.to_owned();
                let activity = text(request, "activity")?.to_owned();
                if let Some(exec) = request.get("execution").and_then(Value::as_str) {
                    self.state()
                        .kinds
                        .entry(exec.to_owned())
                        .or_default()
                        .insert(kind.clone());
                }
                let known = self.state().workers.get(&kind).map_or(0, |w| w.ids.len());
                let machine = self.ensure_workers(&kind, &activity, known + 1).await?;
                Ok(json!({"machine": machine}))
            }
            "work-done" => {
                let exec = text(request, "execution")?.to_owned();
                let mut st = self.state();
                for slots in st.slots.values_mut() {
                    slots.retain(|(e, _)| *e != exec);
                }
                st.finished.insert(exec);
                Ok(json!({}))
            }
            "health-check" => {
                let exec = text(request, "execution")?.to_owned();
                if self.state().finished.contains(&exec) {
                    return Ok(json!({"finished": true, "started": []}));
                }
                let kinds = self.state().kinds.get(&exec).cloned().unwrap_or_default();
                let mut started = Vec::new();
                for kind in kinds {
                    let (activity, held) = {
                        let st = self.state();
                        let activity = st.workers.get(&kind).map(|w| w.activity.clone());
                        (activity.unwrap_or_default(), st.held(&kind, &exec))
                    };
                    // Forgets the workers that powered off, and starts one when none lives.
                    if held > 0 {
                        if let Some(id) = self.ensure_workers(&kind, &activity, 1).await? {
                            started.push(id);
                        }
                    }
                }
                Ok(json!({"finished": false, "started": started}))
            }
            other => Err(StepFailure::fatal(format!(
                "unknown control action {other:?}"
            ))),
        }
    }

    /// Provisions one worker of `kind` serving `activity`.
    async fn start(&self, kind: &str, activity: &str) -> std::result::Result<String, StepFailure> {
        let provider = self.provider.clone().ok_or_else(|| {
            StepFailure::fatal("the control worker has no provider to start workers with")
        })?;
        let mut spec = self
            .worker_kind(kind)?
            .spec
            .clone()
            .with_label(ACTIVITY_LABEL, activity)
            .with_label("hgauto-pipeline", &self.pipeline.name);
        if let (Some(b), None) = (&self.boot, &spec.user_data) {
            spec = spec.with_user_data(super::asl::worker_user_data(
                activity,
                &b.region,
                &b.task_script,
                b.init.as_deref(),
                b.idle_polls,
            ));
        }
        let machines = provider
            .provision(&spec, 1)
            .await
            .map_err(StepFailure::from)?;
        let id = machines
            .first()
            .map(|m| m.id().to_owned())
            .ok_or_else(|| StepFailure::retryable("the provider returned no machine"))?;
        Ok(id)
    }

    fn worker_kind(&self, kind: &str) -> std::result::Result<&WorkerKind, StepFailure> {
        self.pipeline.workers.get(kind).ok_or_else(|| {
            StepFailure::fatal(format!(
                "pipeline {:?} has no worker kind {kind:?}",
                self.pipeline.name
            ))
        })
    }

    fn max_workers(&self, kind: &str) -> std::result::Result<usize, StepFailure> {
        Ok(self.worker_kind(kind)?.max_workers.max(1))
    }

    /// Starts one worker of `kind` when it has fewer than `wanted` (at most `max_workers`)
    /// live or starting ones; returns the new machine's id. Workers that powered off are
    /// forgotten first, so a lost worker is replaced.
    async fn ensure_workers(
        &self,
        kind: &str,
        activity: &str,
        wanted: usize,
    ) -> std::result::Result<Option<String>, StepFailure> {
        let wanted = wanted.min(self.max_workers(kind)?);
        let known = |st: &State| st.workers.get(kind).map_or(0, |w| w.ids.len() + w.starting);
        if known(&self.state()) >= wanted {
            let ids = self
                .state()
                .workers
                .get(kind)
                .map(|w| w.ids.clone())
                .unwrap_or_default();
            let alive = self.alive(&ids).await?;
            if let Some(w) = self.state().workers.get_mut(kind) {
                w.ids.retain(|id| alive.contains(id));
            }
        }
        {
            let mut st = self.state();
            if known(&st) >= wanted {
                return Ok(None);
            }
            let w = st.workers.entry(kind.to_owned()).or_default();
            w.starting += 1;
            w.activity = activity.to_owned();
        }
        let started = self.start(kind, activity).await;
        let mut st = self.state();
        let w = st.workers.entry(kind.to_owned()).or_default();
        w.starting -= 1;
        let id = started?;
        w.ids.push(id.clone());
        Ok(Some(id))
    }

    /// Which of `ids` the provider still has.
    async fn alive(&self, ids: &[String]) -> std::result::Result<HashSet<String>, StepFailure> {
        let Some(provider) = self.provider.as_ref().filter(|_| !ids.is_empty()) else {
            return Ok(HashSet::new());
        };
        let managed = provider.list_managed().await.map_err(StepFailure::from)?;
        Ok(managed
            .into_iter()
            .filter(|r| r.exists && ids.contains(&r.id))
            .map(|r| r.id)
            .collect())
    }
}

/// A request's JSON from a job a control activity handed out, or why it has none.
pub fn request_of(job: &hgauto_core::Job) -> Result<&Value> {
    job.payload
        .as_ref()
        .filter(|v| v.get("action").is_some())
        .ok_or_else(|| Error::invalid(format!("control task {}", job.id), "carries no action"))
}
