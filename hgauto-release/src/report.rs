//! What a release did: one status per (artifact, destination), serialisable as JSON.

use serde::{Deserialize, Serialize};

use hgauto_core::artifact::Artifact;

/// The version of the JSON report's shape.
pub const REPORT_VERSION: u32 = 1;

/// What happened to one artifact at one destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Uploaded by this run.
    Published,
    /// Already there with the same content.
    AlreadyPresent,
    /// The destination's filter does not take this file.
    SkippedByFilter,
    /// The destination was switched off for this run.
    Skipped,
    /// It did not get there; `error` says why.
    Failed,
}

impl Status {
    /// Its name, as in JSON (`published`).
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Published => "published",
            Status::AlreadyPresent => "already_present",
            Status::SkippedByFilter => "skipped_by_filter",
            Status::Skipped => "skipped",
            Status::Failed => "failed",
        }
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One (artifact, destination) pair.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// The artifact's name.
    pub artifact: String,
    /// The destination's name (as given to [`Release::publish_to`](super::Release::publish_to)).
    pub destination: String,
    /// What happened.
    pub status: Status,
    /// Why it failed, for [`Status::Failed`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// One destination as the report shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DestinationInfo {
    /// Its name in this release.
    pub name: String,
    /// The publisher's description of where it publishes (credentials removed).
    pub location: String,
}

/// What a [`Release::run`](super::Release::run) did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReleaseReport {
    /// [`REPORT_VERSION`].
    pub version: u32,
    /// Every file the release covers: the expected artifacts, then the generated
    /// `SHA256SUMS` and signatures.
    pub artifacts: Vec<Artifact>,
    /// Files in the directory that no expectation matched, left alone.
    pub ignored: Vec<String>,
    /// The destinations, in the order they were given.
    pub destinations: Vec<DestinationInfo>,
    /// One entry per (artifact, destination), artifacts in order within each destination.
    pub entries: Vec<Entry>,
}

impl ReleaseReport {
    /// True when nothing failed.
    pub fn ok(&self) -> bool {
        self.entries.iter().all(|e| e.status != Status::Failed)
    }

    /// The entries that failed.
    pub fn failures(&self) -> impl Iterator<Item = &Entry> {
        self.entries.iter().filter(|e| e.status == Status::Failed)
    }

    /// The entries with `status`.
    pub fn with_status(&self, status: Status) -> impl Iterator<Item = &Entry> {
        self.entries.iter().filter(move |e| e.status == status)
    }

    /// The status of `artifact` at `destination`.
    pub fn status(&self, artifact: &str, destination: &str) -> Option<Status> {
        self.entries
            .iter()
            .find(|e| e.artifact == artifact && e.destination == destination)
            .map(|e| e.status)
    }

    /// The report as pretty-printed JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self)
            .unwrap_or_else(|e| format!("{{\"error\": {:?}}}", e.to_string()))
    }
}

#[cfg(test)]
mod name_tests {
    use super::*;

    #[test]
    fn as_str_is_the_json_name() {
        for v in [
            Status::Published,
            Status::AlreadyPresent,
            Status::SkippedByFilter,
            Status::Skipped,
            Status::Failed,
        ] {
            assert_eq!(serde_json::to_value(v).unwrap(), v.as_str(), "{v:?}");
            assert_eq!(v.to_string(), v.as_str());
        }
    }
}
