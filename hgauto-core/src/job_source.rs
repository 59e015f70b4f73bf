//! The [`JobSource`] trait: where work comes from.

use async_trait::async_trait;

use crate::error::Result;
use crate::job::{Job, JobFilter, JobOutcome, Lease};

/// What a source has asked of its service so far (an agent's metrics show it).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct SourceStats {
    /// Requests sent to the service (GitHub, SQS...); 0 for local sources.
    pub requests: u64,
    /// Rate limits waited out.
    pub rate_limit_waits: u64,
}

/// How much work a source holds: what a pool of agents sizes itself by.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Depth {
    /// Jobs waiting for an agent, including those whose lease ran out.
    pub pending: u64,
    /// Jobs handed out whose lease still runs.
    pub leased: u64,
    /// False when the counts are the service's estimate (SQS's approximate numbers), or
    /// when the source could not apply the filter and counted every job.
    pub exact: bool,
}

impl Depth {
    /// Exact counts.
    pub fn exact(pending: u64, leased: u64) -> Self {
        Depth {
            pending,
            leased,
            exact: true,
        }
    }

    /// Every job the source holds that is not reported yet.
    pub fn total(&self) -> u64 {
        self.pending + self.leased
    }
}

/// A queue of work shared by builder agents: pull requests, branch heads, queue messages.
///
/// # Contract
/// - `next` hands out the job this agent should do now (higher priority first, then older
///   first), leased to it: until the lease's deadline no other caller gets that job. Jobs
///   that do not pass the filter are neither handed out nor leased. `None`: nothing to do.
/// - A lease that runs out makes the job available again, with `attempt` one higher.
/// - `heartbeat` extends the lease and returns it; it fails with
///   [`Error::LeaseLost`](crate::Error::LeaseLost) when the lease ran out or the job went to
///   another holder meanwhile.
/// - `started` marks that work on the job's (check, revision) began (e.g. a "pending"
///   status): the first time only, never again on a re-check.
/// - `report` ends the job with its outcome. Reporting again with the same lease is
///   harmless; a job reported is never handed out again. The outcome becomes the `previous`
///   of later jobs for the same (check, revision).
/// - `release` gives a job back untouched (e.g. on SIGTERM): it is available at once.
#[cfg_attr(feature = "mocks", mockall::automock)]
#[async_trait]
pub trait JobSource: Send + Sync {
    /// The source's name, as jobs carry it. Fixed when the source is made.
    fn name(&self) -> &str;

    /// The next job to work on that passes `filter`, leased to the caller.
    async fn next(&self, filter: &JobFilter) -> Result<Option<Job>>;

    /// Records that work on `job` began. The default does nothing.
    async fn started(&self, _job: &Job) -> Result<()> {
        Ok(())
    }

    /// Extends the lease on `job` and returns the new one.
    async fn heartbeat(&self, job: &Job) -> Result<Lease>;

    /// Records how `job` ended.
    async fn report(&self, job: &Job, outcome: &JobOutcome) -> Result<()>;

    /// Gives `job` back, untouched, for anyone to take now.
    async fn release(&self, job: &Job) -> Result<()>;

    /// A new job for `job`'s (check, revision), leased to the caller: a re-check of work
    /// already reported, for an agent with nothing untested to do. `None` when the source
    /// says the work is done (a merged or closed pull request, a head that moved on) or
    /// does not re-check (the default).
    async fn recheck(&self, _job: &Job) -> Result<Option<Job>> {
        Ok(None)
    }

    /// How many jobs that pass `filter` wait, and how many are leased: a pool sizes itself
    /// by it. `None`: the source cannot count (the default). A count is a snapshot: jobs
    /// may come and go as it is taken.
    async fn depth(&self, _filter: &JobFilter) -> Result<Option<Depth>> {
        Ok(None)
    }

    /// What the source has asked of its service so far. The default: nothing counted.
    fn stats(&self) -> SourceStats {
        SourceStats::default()
    }
}
