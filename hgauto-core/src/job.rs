//! Units of work from a [`JobSource`](crate::JobSource): [`Job`] and [`JobOutcome`].

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// One unit of work: a pull request to test, a branch head to build, a queue message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Job {
    /// Unique within its source (e.g. `pr-123@<sha>`, a message id).
    pub id: String,
    /// What kind of work it is (e.g. "pull-request", "branch", "message").
    pub kind: String,
    /// The revision to build, when the job is about one.
    pub revision: Option<String>,
    /// Source-specific details (repository, branch, PR number, labels...).
    pub attributes: BTreeMap<String, String>,
    /// The raw payload, for queue messages.
    pub payload: Option<serde_json::Value>,
}

impl Job {
    /// A job with no revision, attributes or payload.
    pub fn new(id: impl Into<String>, kind: impl Into<String>) -> Self {
        Job {
            id: id.into(),
            kind: kind.into(),
            revision: None,
            attributes: BTreeMap::new(),
            payload: None,
        }
    }

    /// Sets the revision.
    pub fn with_revision(mut self, revision: impl Into<String>) -> Self {
        self.revision = Some(revision.into());
        self
    }

    /// Adds an attribute.
    pub fn with_attribute(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.attributes.insert(key.into(), value.into());
        self
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
