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

pub mod asl;
mod checks;
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

pub use control::{Control, WorkerBoot};
pub use definition::{Pipeline, PipelineBuilder, WorkerKind};
pub use engine::{LineHook, Runner, TaskHook};
pub use file::{Dimensions, KindFile, PipelineFile, PublishedFile, StepFile, SyncFile, WorkerFile};
pub use plan::{Cell, Selection};
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
