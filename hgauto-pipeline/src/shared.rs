//! What the scheduler, its workers and its function tasks share: the plan, per-kind
//! queues of ready command tasks, finished tasks' outputs, and the event channel back to
//! the coordinator.

use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, Notify};

use hgauto_core::error::Result;
use hgauto_core::provider::ResourceProvider;
use hgauto_core::spec::MachineSpec;

use super::config::Config;
use super::definition::Pipeline;
use super::plan::Task;
use super::prepare::Prepared;
use super::results::{Mode, WorkerRecord};
use super::step::{Outputs, StepContext, StepFailure};

/// What workers, checks, timers and function bodies tell the coordinator.
pub(crate) enum Event {
    Checked {
        task: usize,
        result: Result<Option<String>>,
    },
    Attempt {
        task: usize,
        attempt: u32,
        machine: Option<String>,
        log: Option<PathBuf>,
        elapsed: Duration,
        outcome: std::result::Result<(Outputs, Vec<PathBuf>), StepFailure>,
    },
    RetryDue {
        task: usize,
        attempt: u32,
    },
    WorkerUp {
        kind: String,
    },
    WorkerGone {
        kind: String,
        record: Option<WorkerRecord>,
        provision_error: Option<String>,
    },
    StartWorkers {
        kind: String,
    },
}

/// What a finished task hands its dependants: outputs and collected files.
pub(crate) type Produced = (Outputs, Vec<PathBuf>);

/// Ready command tasks per worker kind, and how many workers of each kind wait for one.
#[derive(Default)]
pub(crate) struct Queues {
    pub ready: BTreeMap<String, VecDeque<(usize, u32)>>,
    pub idle: BTreeMap<String, usize>,
    pub done: bool,
}

/// What the coordinator and every worker share.
pub(crate) struct Shared {
    pub pipeline: Pipeline,
    pub tasks: Vec<Task>,
    pub prepared: Vec<Prepared>,
    pub cfg: Config,
    pub provider: Option<Arc<dyn ResourceProvider>>,
    pub queues: Mutex<Queues>,
    pub work: Notify,
    pub events: mpsc::UnboundedSender<Event>,
    /// Outputs and artifacts of finished tasks, for their dependants' contexts.
    pub finished: Mutex<Vec<Option<Produced>>>,
}

impl Shared {
    pub(super) fn send(&self, e: Event) {
        let _ = self.events.send(e);
    }

    /// The provider and machine spec for workers of `kind` (any Linux machine of the
    /// provider in `local` mode).
    pub(super) fn worker_spec(&self, kind: &str) -> (Arc<dyn ResourceProvider>, MachineSpec) {
        let provider = self.provider.clone().expect("checked before the run");
        let spec = self.pipeline.workers[kind].spec.clone();
        let spec = match self.cfg.mode {
            Mode::Local => MachineSpec::linux().with_lifetime(spec.lifetime),
            _ => spec,
        };
        (
            provider,
            spec.with_label("hgauto-pipeline", &self.pipeline.name),
        )
    }

    pub(super) fn queues(&self) -> std::sync::MutexGuard<'_, Queues> {
        self.queues.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(super) fn is_done(&self) -> bool {
        self.queues().done
    }

    /// The next task for a worker of `kind`, waiting up to the idle timeout for one.
    pub(super) async fn take(&self, kind: &str) -> Option<(usize, u32)> {
        loop {
            let notified = self.work.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let mut q = self.queues();
                if let Some(t) = q.ready.get_mut(kind).and_then(VecDeque::pop_front) {
                    return Some(t);
                }
                if q.done {
                    return None;
                }
                *q.idle.entry(kind.to_owned()).or_default() += 1;
            }
            let woke = tokio::time::timeout(self.cfg.idle_timeout, notified)
                .await
                .is_ok();
            let mut q = self.queues();
            if let Some(n) = q.idle.get_mut(kind) {
                *n = n.saturating_sub(1);
            }
            if !woke {
                return q.ready.get_mut(kind).and_then(VecDeque::pop_front);
            }
        }
    }

    /// Outputs of the tasks `task` needs, by their step's name.
    pub(super) fn dependency_outputs(&self, task: usize) -> Vec<(String, Outputs)> {
        let finished = self.finished.lock().unwrap_or_else(|p| p.into_inner());
        self.tasks[task]
            .deps
            .iter()
            .filter_map(|&d| {
                let (outs, _) = finished[d].as_ref()?;
                Some((
                    self.pipeline.steps[self.tasks[d].step].name.clone(),
                    outs.clone(),
                ))
            })
            .collect()
    }

    pub(super) fn context(&self, task: usize, attempt: u32) -> StepContext {
        let t = &self.tasks[task];
        let finished = self.finished.lock().unwrap_or_else(|p| p.into_inner());
        let mut dependencies = BTreeMap::new();
        let mut artifacts = BTreeMap::new();
        for &d in &t.deps {
            if let Some((outs, files)) = &finished[d] {
                dependencies.insert(self.tasks[d].name.clone(), outs.clone());
                artifacts.insert(self.tasks[d].name.clone(), files.clone());
            }
        }
        StepContext {
            step: self.pipeline.steps[t.step].name.clone(),
            task: t.name.clone(),
            cell: t.cell.clone(),
            inputs: self.cfg.inputs.clone(),
            dependencies,
            artifacts,
            attempt,
        }
    }
}
