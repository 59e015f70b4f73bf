//! The [`JobSource`] trait: where work comes from.

use async_trait::async_trait;

use crate::error::Result;
use crate::job::{Job, JobOutcome};

/// A queue of work shared by builder agents: pull requests, branch heads, queue messages.
///
/// # Contract
/// - `next` hands out a job that this agent should do now, or `None` when there is nothing.
///   A job handed out stays *in flight* until it is reported.
/// - `heartbeat` tells the source that work on an in-flight job goes on (sources with
///   leases, such as SQS or Step Functions, extend them); it fails for a job not in flight.
/// - `report` ends a job with its outcome. Reporting the same outcome twice is harmless.
#[async_trait]
pub trait JobSource: Send + Sync {
    /// The next job to work on, if any.
    async fn next(&self) -> Result<Option<Job>>;

    /// Records how `job` ended.
    async fn report(&self, job: &Job, outcome: &JobOutcome) -> Result<()>;

    /// Keeps the claim on an in-flight job alive.
    async fn heartbeat(&self, job: &Job) -> Result<()>;
}
