//! The result tree of a run: per step and cell, what happened, plus the failure summary.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use hgauto_core::error::{Error, Result};

use super::cell::Cell;
use super::step::Outputs;

/// The `schema` field of every result tree this version writes.
pub const RESULT_SCHEMA: &str = "hgauto.pipeline.result/1";

/// How a run treats bodies and machines.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Real bodies on provisioned workers, skipping what `should_run` says is done.
    #[default]
    Normal,
    /// A dummy body (`true`) on real workers, and no `should_run` skips: everything but
    /// the work itself, end to end.
    Fake,
    /// No provisioning: every worker is a machine of the embedded local provider.
    Local,
}

impl std::str::FromStr for Mode {
    type Err = hgauto_core::Error;

    /// `normal`, `fake` or `local`.
    fn from_str(s: &str) -> hgauto_core::Result<Self> {
        let choices = [
            ("normal", Mode::Normal),
            ("fake", Mode::Fake),
            ("local", Mode::Local),
        ];
        hgauto_core::suggest::one_of("mode", s, &choices)
    }
}

/// How a task ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum TaskState {
    /// Its body succeeded.
    Succeeded,
    /// Its body failed on its last attempt, or no worker could be started for it.
    Failed,
    /// It did not run: already done, or a step it needs failed.
    Skipped,
}

impl TaskState {
    /// Its name, as in JSON (`succeeded`).
    pub fn as_str(self) -> &'static str {
        match self {
            TaskState::Succeeded => "succeeded",
            TaskState::Failed => "failed",
            TaskState::Skipped => "skipped",
        }
    }
}

impl std::fmt::Display for TaskState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One task's result: one step in one matrix cell.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct TaskResult {
    /// The task's name (`build-3.1-debian`), which also marks its part of the worker log.
    pub task: String,
    /// The matrix cell.
    pub cell: Cell,
    /// How it ended.
    pub state: TaskState,
    /// Why it was skipped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The machine of its last attempt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub machine: Option<String>,
    /// Wall time of all its attempts, in milliseconds.
    pub elapsed_ms: u64,
    /// Attempts made (0 when skipped).
    pub attempts: u32,
    /// The last attempt's error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The log holding its output (its worker's log).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log: Option<PathBuf>,
    /// What it handed to its dependants.
    #[serde(default, skip_serializing_if = "Outputs::is_empty")]
    pub outputs: Outputs,
    /// Files it collected.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub artifacts: Vec<PathBuf>,
}

/// All cells of one step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct StepResults {
    /// The step's name.
    pub step: String,
    /// Its retry kind (`cheap`, `heavy`, `custom`).
    pub kind: String,
    /// Its worker kind (none for function steps).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worker: Option<String>,
    /// One result per selected cell.
    pub cells: Vec<TaskResult>,
}

/// One worker the run started.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct WorkerRecord {
    /// Its machine id.
    pub machine: String,
    /// Its worker kind.
    pub kind: String,
    /// Tasks it received.
    pub tasks: u32,
    /// Its last label (`ww-2-build-3.1-debian`).
    pub label: String,
    /// Why it stopped: `idle`, `failed`, `lost`, `finished`.
    pub ended: String,
    /// Its log.
    pub log: PathBuf,
    /// Started by the health check rather than on demand.
    pub from_health_check: bool,
}

/// One failed task, as the failure summary lists it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Failure {
    /// The step.
    pub step: String,
    /// The task.
    pub task: String,
    /// Its cell.
    pub cell: Cell,
    /// The machine of its last attempt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub machine: Option<String>,
    /// Attempts made.
    pub attempts: u32,
    /// The error.
    pub error: String,
}

/// The whole run: HHVM's NormalizeResults output, versioned.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct RunResult {
    /// [`RESULT_SCHEMA`].
    pub schema: String,
    /// The pipeline's name.
    pub pipeline: String,
    /// The run's mode.
    pub mode: Mode,
    /// True when no task failed.
    pub ok: bool,
    /// When the run started, in seconds since the Unix epoch.
    pub started_at: u64,
    /// Wall time, in milliseconds.
    pub elapsed_ms: u64,
    /// Per step (definition order), per selected cell.
    pub steps: Vec<StepResults>,
    /// Every worker started.
    pub workers: Vec<WorkerRecord>,
    /// Health checks run, and workers they started.
    pub health_checks: HealthChecks,
    /// Every failed task (HHVM's CheckForFailures).
    pub failures: Vec<Failure>,
}

/// What the health check did.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
pub struct HealthChecks {
    /// Checks run.
    pub runs: u64,
    /// Workers they started for waiting tasks that had none.
    pub workers_started: u64,
}

impl RunResult {
    /// The task called `task`.
    pub fn task(&self, task: &str) -> Option<&TaskResult> {
        self.steps
            .iter()
            .flat_map(|s| &s.cells)
            .find(|c| c.task == task)
    }

    /// Every task result, step by step.
    pub fn tasks(&self) -> impl Iterator<Item = &TaskResult> {
        self.steps.iter().flat_map(|s| &s.cells)
    }

    /// How many tasks ended in `state`.
    pub fn count(&self, state: TaskState) -> usize {
        self.tasks().filter(|t| t.state == state).count()
    }

    /// One line per failed task, after a headline; empty when nothing failed.
    pub fn failure_summary(&self) -> String {
        if self.failures.is_empty() {
            return String::new();
        }
        let total = self.tasks().count();
        let mut out = format!(
            "pipeline {:?}: {} of {} tasks failed:",
            self.pipeline,
            self.failures.len(),
            total
        );
        for f in &self.failures {
            let cell = if f.cell.pairs().is_empty() {
                String::new()
            } else {
                format!(" ({})", f.cell)
            };
            let machine = f
                .machine
                .as_deref()
                .map(|m| format!(" on {m}"))
                .unwrap_or_default();
            let tries = if f.attempts == 1 {
                "attempt"
            } else {
                "attempts"
            };
            out.push_str(&format!(
                "\n- {}{cell}{machine} after {} {tries}: {}",
                f.task, f.attempts, f.error
            ));
        }
        out
    }

    /// `Ok(self)` when nothing failed, else [`Error::StepsFailed`] with the summary.
    pub fn into_result(self) -> Result<RunResult> {
        if self.failures.is_empty() {
            Ok(self)
        } else {
            Err(Error::StepsFailed {
                pipeline: self.pipeline.clone(),
                failed: self.failures.len(),
                summary: self.failure_summary(),
            })
        }
    }

    /// Writes the tree as pretty JSON to `path`, by atomic rename.
    pub fn write(&self, path: &Path) -> Result<()> {
        let json = serde_json::to_vec_pretty(self)
            .map_err(|e| Error::invalid("result tree", e.to_string()))?;
        hgauto_core::backend::fs::write_atomic(path, &json)
    }

    /// Reads a tree written by [`write`](Self::write), refusing other schema versions.
    pub fn read(path: &Path) -> Result<RunResult> {
        let what = format!("result tree {}", path.display());
        let bytes = std::fs::read(path).map_err(|e| Error::invalid(&what, e.to_string()))?;
        let tree: RunResult =
            serde_json::from_slice(&bytes).map_err(|e| Error::invalid(&what, e.to_string()))?;
        if tree.schema != RESULT_SCHEMA {
            return Err(Error::invalid(
                &what,
                format!("has schema {:?}, not {RESULT_SCHEMA:?}", tree.schema),
            ));
        }
        Ok(tree)
    }

    /// The JSON schema of result trees.
    pub fn json_schema() -> serde_json::Value {
        serde_json::to_value(schemars::schema_for!(RunResult)).unwrap_or_default()
    }
}

#[cfg(test)]
mod name_tests {
    use super::*;

    #[test]
    fn as_str_is_the_json_name() {
        for v in [TaskState::Succeeded, TaskState::Failed, TaskState::Skipped] {
            assert_eq!(serde_json::to_value(v).unwrap(), v.as_str(), "{v:?}");
            assert_eq!(v.to_string(), v.as_str());
        }
    }
}
