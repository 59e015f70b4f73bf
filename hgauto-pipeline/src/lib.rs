//! # hgauto-pipeline
//!
//! Pipelines: named steps over a matrix (e.g. version x distro), each with a retry kind, a
//! `should_run` check and the worker kind it needs, run embedded in one process
//! ([`Runner`]) or exported to AWS Step Functions ([`asl`]). Seed 003 (HHVM's packaging
//! state machine) is the model.
//!
//! - Define one with [`Pipeline::builder`] and [`Step`], or read TOML/JSON with
//!   [`PipelineFile`].
//! - [`Runner`] provisions workers per kind on demand (only as many as there are ready
//!   tasks, up to the kind's maximum), never gives a worker another task after a failure,
//!   shuts idle workers down, runs a health check, and writes one [`RunResult`] tree
//!   (`result.json`), a self-contained `report.html` and one log per worker.
//! - Failures are caught into the results: one failing cell never stops the others, and
//!   the tasks that need it are skipped with the reason. [`RunResult::failure_summary`]
//!   lists every failure; [`RunResult::into_result`] turns them into one error.

#![warn(missing_docs)]
#![warn(unreachable_pub)]

pub mod asl;
mod cell;
mod checks;
mod config;
pub mod control;
mod definition;
mod engine;
mod file;
mod plan;
mod prepare;
mod report;
mod results;
mod scheduler;
mod shared;
mod step;
mod worker;

pub use cell::Cell;
pub use config::{LineHook, TaskHook};
pub use control::{Control, WorkerBoot};
pub use definition::{Pipeline, PipelineBuilder, WorkerKind};
pub use engine::Runner;
pub use file::{Dimensions, KindFile, PipelineFile, PublishedFile, StepFile, SyncFile, WorkerFile};
pub use plan::Selection;
pub use prepare::OUTPUT_ENV;
pub use report::html as html_report;
pub use results::{
    Failure, HealthChecks, Mode, RunResult, StepResults, TaskResult, TaskState, WorkerRecord,
    RESULT_SCHEMA,
};
pub use step::{
    Body, BoxFuture, Outputs, ShouldRun, SkipFn, Step, StepCommand, StepContext, StepFailure,
    StepFn, StepKind, SyncDir,
};

/// `v` as pretty JSON with every object's keys sorted: the same text whether or not
/// serde_json keeps insertion order (its `preserve_order` feature, which another crate in
/// a build may turn on), for committed snapshots such as the schemas and ASL definitions.
pub fn canonical_json(v: &serde_json::Value) -> String {
    fn sorted(v: &serde_json::Value) -> serde_json::Value {
        match v {
            serde_json::Value::Object(m) => {
                let mut keys: Vec<&String> = m.keys().collect();
                keys.sort();
                let mut out = serde_json::Map::new();
                for k in keys {
                    out.insert(k.clone(), sorted(&m[k]));
                }
                serde_json::Value::Object(out)
            }
            serde_json::Value::Array(a) => serde_json::Value::Array(a.iter().map(sorted).collect()),
            other => other.clone(),
        }
    }
    serde_json::to_string_pretty(&sorted(v)).unwrap_or_default() + "\n"
}
