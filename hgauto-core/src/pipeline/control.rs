//! The control activity of a pipeline exported to Step Functions ([`super::asl`]): what
//! HHVM did in Lambda functions, answered by one process that knows the pipeline.
//!
//! Requests (the Task states' `Parameters`) and answers (their output):
//! - `should-run` `{task, mode}` → `{"run": bool, "reason": str}`: the task's `should_run`
//!   check (always "run" in `fake` mode).
//! - `start-worker` `{kind, activity}` → `{"machine": id}`: provisions a worker of that kind
//!   through the provider, labelled with the activity it serves (`hgauto-activity`), whose
//!   image starts the worker loop ([`super::asl::worker_user_data`]).
//! - `function` `{task, inputs, mode}` → `{"outputs": {...}}`: runs a function step.
//! - `work-done` `{execution}` → `{}`: every task of the execution has ended.
//! - `health-check` `{execution}` → `{"finished": bool, "started": [ids]}`: once the work is
//!   done, ends the health loop; before that, starts a worker for every kind this
//!   execution asked workers for that has none alive.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex};

use serde_json::{json, Value};

use crate::error::{Error, Result};
use crate::provider::ResourceProvider;

use super::checks::run_check;
use super::definition::Pipeline;
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
    /// Per kind, the workers started (machine id) and the activity they serve.
    workers: BTreeMap<String, (Vec<String>, String)>,
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
                let reason = run_check(&step.should_run, p.check.clone(), ctx).await?;
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
                let id = self.start(&kind, &activity).await?;
                Ok(json!({"machine": id}))
            }
            "work-done" => {
                self.state()
                    .finished
                    .insert(text(request, "execution")?.to_owned());
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
                    let (ids, activity) =
                        self.state().workers.get(&kind).cloned().unwrap_or_default();
                    if !self.any_alive(&ids).await? {
                        started.push(self.start(&kind, &activity).await?);
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
        let worker = self.pipeline.workers.get(kind).ok_or_else(|| {
            StepFailure::fatal(format!(
                "pipeline {:?} has no worker kind {kind:?}",
                self.pipeline.name
            ))
        })?;
        let mut spec = worker
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
        let mut state = self.state();
        let entry = state.workers.entry(kind.to_owned()).or_default();
        entry.0.push(id.clone());
        entry.1 = activity.to_owned();
        Ok(id)
    }

    async fn any_alive(&self, ids: &[String]) -> std::result::Result<bool, StepFailure> {
        let Some(provider) = &self.provider else {
            return Ok(false);
        };
        let managed = provider.list_managed().await.map_err(StepFailure::from)?;
        Ok(managed.iter().any(|r| r.exists && ids.contains(&r.id)))
    }
}

/// A request's JSON from a job a control activity handed out, or why it has none.
pub fn request_of(job: &crate::Job) -> Result<&Value> {
    job.payload
        .as_ref()
        .filter(|v| v.get("action").is_some())
        .ok_or_else(|| Error::invalid(format!("control task {}", job.id), "carries no action"))
}
