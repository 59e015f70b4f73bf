//! Commit statuses: what a head's combined status says per check, what a job's outcome
//! writes, and whether a write would change anything (if not, it is skipped: GitHub's
//! quota is spent on news only).

use std::collections::HashMap;

use serde::Deserialize;

use hgauto_core::job::JobOutcome;

/// The description of the status an untrusted pull request gets, once per check.
pub(crate) const APPROVAL_NEEDED: &str = "approval needed: a trusted reviewer must approve";
/// The description of the pending status a first build writes.
pub(crate) const STARTED: &str = "build started";
/// GitHub refuses longer descriptions.
const MAX_DESCRIPTION: usize = 140;

/// One context's latest status on a commit.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub(crate) struct Status {
    pub context: String,
    pub state: String,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub target_url: Option<String>,
}

#[derive(Deserialize)]
struct Combined {
    #[serde(default)]
    statuses: Vec<Status>,
}

/// The latest status of each context, from a combined-status payload.
pub(crate) fn parse_combined(v: &serde_json::Value) -> Result<HashMap<String, Status>, String> {
    let c = Combined::deserialize(v).map_err(|e| e.to_string())?;
    Ok(c.statuses
        .into_iter()
        .map(|s| (s.context.clone(), s))
        .collect())
}

/// A status to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Wanted {
    pub state: &'static str,
    pub description: String,
    pub target_url: Option<String>,
}

impl Wanted {
    pub(super) fn new(
        state: &'static str,
        description: &str,
        target_url: Option<String>,
    ) -> Wanted {
        // A build's last stderr line may hold a credential: the description is public.
        let first = description.lines().next().unwrap_or("").trim();
        let mut d = hgauto_core::redact::redact_text(first);
        if d.chars().count() > MAX_DESCRIPTION {
            d = d.chars().take(MAX_DESCRIPTION - 1).collect();
            d.push('…');
        }
        Wanted {
            state,
            description: d,
            target_url,
        }
    }

    /// The status for a job's outcome; a skipped job writes none.
    pub(super) fn for_outcome(outcome: &JobOutcome, target_url: Option<String>) -> Option<Wanted> {
        match outcome {
            JobOutcome::Succeeded { summary } => Some(Wanted::new("success", summary, target_url)),
            JobOutcome::Failed { summary, .. } => Some(Wanted::new("failure", summary, target_url)),
            JobOutcome::Skipped { .. } => None,
        }
    }

    /// The request body for `context`.
    pub(super) fn body(&self, context: &str) -> serde_json::Value {
        let mut b = serde_json::json!({
            "state": self.state,
            "description": self.description,
            "context": context,
        });
        if let Some(u) = &self.target_url {
            b["target_url"] = u.clone().into();
        }
        b
    }

    /// Whether writing this over `current` would change what GitHub shows. A green
    /// re-check over green changes nothing worth a write, whatever its wording.
    pub(super) fn would_change(&self, current: Option<&Status>) -> bool {
        let Some(c) = current else { return true };
        if c.state != self.state {
            return true;
        }
        if self.state == "success" {
            return false;
        }
        c.description.as_deref().unwrap_or("") != self.description
            || c.target_url != self.target_url
    }
}

/// Whether a status ends a build (a head with one for a check has been tested).
pub(crate) fn is_final(s: &Status) -> bool {
    matches!(s.state.as_str(), "success" | "failure" | "error")
}

/// Whether a first build may mark `current` pending: nothing there yet, or only the
/// approval request. A re-check of a red head keeps it red until it has a result.
pub(crate) fn may_mark_started(current: Option<&Status>) -> bool {
    current
        .is_none_or(|c| c.state == "pending" && c.description.as_deref() == Some(APPROVAL_NEEDED))
}

/// The outcome a final status records, as a job's `previous`.
pub(crate) fn previous_outcome(s: &Status) -> Option<JobOutcome> {
    let summary = s.description.clone().unwrap_or_default();
    match s.state.as_str() {
        "success" => Some(JobOutcome::Succeeded { summary }),
        "failure" | "error" => Some(JobOutcome::Failed {
            summary,
            retryable: true,
        }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(state: &str, description: &str) -> Status {
        Status {
            context: "build".into(),
            state: state.into(),
            description: Some(description.into()),
            target_url: None,
        }
    }

    #[test]
    fn writes_that_change_nothing_are_recognised() {
        let green = Wanted::new("success", "all good", None);
        assert!(green.would_change(None));
        assert!(!green.would_change(Some(&status("success", "other words"))));
        assert!(green.would_change(Some(&status("failure", "all good"))));
        let red = Wanted::new("failure", "3 tests failed", None);
        assert!(!red.would_change(Some(&status("failure", "3 tests failed"))));
        assert!(red.would_change(Some(&status("failure", "2 tests failed"))));
    }

    #[test]
    fn pending_is_written_on_a_first_build_only() {
        assert!(may_mark_started(None));
        assert!(may_mark_started(Some(&status("pending", APPROVAL_NEEDED))));
        assert!(!may_mark_started(Some(&status("failure", "red"))));
        assert!(!may_mark_started(Some(&status("pending", STARTED))));
    }

    #[test]
    fn descriptions_fit_githubs_limit() {
        let w = Wanted::new("failure", &"é".repeat(500), None);
        assert_eq!(w.description.chars().count(), MAX_DESCRIPTION);
        let w = Wanted::new(
            "failure",
            "fetch of https://ci:hunter2secret@example.org/r failed, token=abc123",
            None,
        );
        assert!(
            !w.description.contains("hunter2secret") && !w.description.contains("abc123"),
            "{}",
            w.description
        );
        let w = Wanted::new("failure", "first line\nsecond", None);
        assert_eq!(w.description, "first line");
    }
}
