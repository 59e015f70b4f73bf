//! Units of work from a [`JobSource`](crate::JobSource): [`Job`], its [`Lease`], how it
//! ended ([`JobOutcome`]), and which jobs an agent wants ([`JobFilter`]).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// One unit of work: a pull request head to test, a branch head to build, a queue message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Job {
    /// Unique within its source (e.g. `pr-123/<sha>/build-linux`, a message id).
    pub id: String,
    /// The name of the source it came from.
    #[serde(default)]
    pub source: String,
    /// The kind of build (e.g. `build/linux-x86_64`).
    pub check: String,
    /// The revision to build, when the job is about one.
    #[serde(default)]
    pub revision: Option<String>,
    /// When the job was created, in milliseconds since the Unix epoch.
    #[serde(default)]
    pub created_ms: u64,
    /// Higher goes first (e.g. from a priority label); 0 by default.
    #[serde(default)]
    pub priority: i32,
    /// How the last job of the same (check, revision) ended, if one did.
    #[serde(default)]
    pub previous: Option<JobOutcome>,
    /// The lease this agent holds on the job, as handed out by `next`.
    #[serde(default)]
    pub lease: Option<Lease>,
    /// How many times the job has been handed out, this time included.
    #[serde(default)]
    pub attempt: u32,
    /// Source-specific details (repository, branch, PR number, labels...).
    #[serde(default)]
    pub attributes: BTreeMap<String, String>,
    /// The raw payload, for queue messages.
    #[serde(default)]
    pub payload: Option<serde_json::Value>,
}

/// A time-limited claim on a job. Until `deadline_ms` no other agent gets the job;
/// [`JobSource::heartbeat`](crate::JobSource::heartbeat) moves the deadline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    /// Identifies this hand-out: a later hand-out of the same job has another token.
    pub token: String,
    /// When the lease ends, in milliseconds since the Unix epoch.
    pub deadline_ms: u64,
}

impl Job {
    /// A job for `check`, with nothing else set.
    pub fn new(id: impl Into<String>, check: impl Into<String>) -> Self {
        Job {
            id: id.into(),
            source: String::new(),
            check: check.into(),
            revision: None,
            created_ms: 0,
            priority: 0,
            previous: None,
            lease: None,
            attempt: 0,
            attributes: BTreeMap::new(),
            payload: None,
        }
    }

    /// Sets the revision.
    pub fn with_revision(mut self, revision: impl Into<String>) -> Self {
        self.revision = Some(revision.into());
        self
    }

    /// Sets the priority (higher goes first).
    pub fn with_priority(mut self, priority: i32) -> Self {
        self.priority = priority;
        self
    }

    /// Sets the creation time.
    pub fn with_created_ms(mut self, created_ms: u64) -> Self {
        self.created_ms = created_ms;
        self
    }

    /// Adds an attribute.
    pub fn with_attribute(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.attributes.insert(key.into(), value.into());
        self
    }

    /// Sets the payload.
    pub fn with_payload(mut self, payload: serde_json::Value) -> Self {
        self.payload = Some(payload);
        self
    }

    /// The `n`-th re-check of this job: the same work under id `<id>~recheck-<n>` (the
    /// id without any earlier re-check suffix), with no lease, history or attempts yet.
    pub fn recheck(&self, n: u32) -> Job {
        let base = self.id.split("~recheck-").next().unwrap_or(&self.id);
        Job {
            id: format!("{base}~recheck-{n}"),
            source: String::new(),
            lease: None,
            previous: None,
            attempt: 0,
            ..self.clone()
        }
    }

    /// The key of what this job builds, shared by re-checks: check and revision.
    pub fn build_key(&self) -> String {
        format!("{}@{}", self.check, self.revision.as_deref().unwrap_or(""))
    }

    /// Sorts jobs in the order they are handed out: higher priority first, then older
    /// first, then by id.
    pub fn order(a: &Job, b: &Job) -> std::cmp::Ordering {
        b.priority
            .cmp(&a.priority)
            .then(a.created_ms.cmp(&b.created_ms))
            .then_with(|| a.id.cmp(&b.id))
    }
}

/// How a job ended, as reported back to its source.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "lowercase")]
pub enum JobOutcome {
    /// The work succeeded.
    Succeeded {
        /// A one-line summary.
        summary: String,
    },
    /// The work failed.
    Failed {
        /// What went wrong, for the person reading the report.
        summary: String,
        /// Whether the source may hand the job out again.
        retryable: bool,
    },
    /// The work was not done (nothing to do, not trusted, superseded).
    Skipped {
        /// Why.
        reason: String,
    },
}

impl JobOutcome {
    /// An outcome from its [`status`](Self::status) name and a summary (the reason, for a
    /// skip); `retryable` applies to a failure only.
    pub fn from_status(status: &str, summary: String, retryable: bool) -> crate::Result<Self> {
        match status {
            "succeeded" => Ok(JobOutcome::Succeeded { summary }),
            "failed" => Ok(JobOutcome::Failed { summary, retryable }),
            "skipped" => Ok(JobOutcome::Skipped { reason: summary }),
            other => Err(crate::Error::invalid(
                format!("job status {other:?}"),
                format!(
                    "must be succeeded, failed or skipped{}",
                    crate::suggest::closest(other, ["succeeded", "failed", "skipped"].into_iter())
                ),
            )),
        }
    }

    /// `succeeded`, `failed` or `skipped`.
    pub fn status(&self) -> &'static str {
        match self {
            JobOutcome::Succeeded { .. } => "succeeded",
            JobOutcome::Failed { .. } => "failed",
            JobOutcome::Skipped { .. } => "skipped",
        }
    }
}

/// One agent's share of a pool: jobs whose `sha256(check + revision) mod count == index`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shard {
    /// This agent's index, below `count`.
    pub index: u32,
    /// How many agents share the work.
    pub count: u32,
}

impl Shard {
    /// Whether `job` belongs to this shard.
    pub fn owns(&self, job: &Job) -> bool {
        if self.count <= 1 {
            return true;
        }
        let digest = Sha256::new()
            .chain_update(job.check.as_bytes())
            .chain_update(job.revision.as_deref().unwrap_or("").as_bytes())
            .finalize();
        let mut first = [0u8; 8];
        first.copy_from_slice(&digest[..8]);
        u64::from_be_bytes(first) % u64::from(self.count) == u64::from(self.index)
    }
}

/// Which jobs `next` may hand out. Jobs that do not match stay available to others.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobFilter {
    /// Only these checks (empty: any).
    #[serde(default)]
    pub checks: Vec<String>,
    /// Only this shard of the pool.
    #[serde(default)]
    pub shard: Option<Shard>,
}

impl JobFilter {
    /// Every job.
    pub fn any() -> Self {
        JobFilter::default()
    }

    /// Only jobs of `shard`.
    pub fn shard(index: u32, count: u32) -> Self {
        JobFilter {
            checks: Vec::new(),
            shard: Some(Shard { index, count }),
        }
    }

    /// Whether `job` passes.
    pub fn matches(&self, job: &Job) -> bool {
        (self.checks.is_empty() || self.checks.contains(&job.check))
            && self.shard.is_none_or(|s| s.owns(job))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_split_the_work_and_cover_it() {
        let jobs: Vec<Job> = (0..300)
            .map(|i| Job::new(format!("j{i}"), "build").with_revision(format!("{i:040x}")))
            .collect();
        let mut owners = vec![0u32; jobs.len()];
        for index in 0..3 {
            let f = JobFilter::shard(index, 3);
            for (j, o) in jobs.iter().zip(owners.iter_mut()) {
                if f.matches(j) {
                    *o += 1;
                }
            }
            let mine = jobs.iter().filter(|j| f.matches(j)).count();
            assert!((70..130).contains(&mine), "shard {index}: {mine}");
        }
        assert!(owners.iter().all(|o| *o == 1));
    }

    #[test]
    fn order_is_priority_then_age() {
        let mut jobs = [
            Job::new("old", "c").with_created_ms(1),
            Job::new("new", "c").with_created_ms(5),
            Job::new("urgent", "c").with_created_ms(9).with_priority(10),
        ];
        jobs.sort_by(Job::order);
        let ids: Vec<&str> = jobs.iter().map(|j| j.id.as_str()).collect();
        assert_eq!(ids, ["urgent", "old", "new"]);
    }
}
