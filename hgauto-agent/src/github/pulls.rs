//! Pull requests as GitHub lists them: the fields a job needs, read strictly (a payload
//! missing one is an error for that pull request alone), and the rules that decide
//! whether one is built: drafts and `[WIP]` titles are not, untrusted authors wait for an
//! approving review.

use std::collections::{BTreeMap, BTreeSet};

use serde::Deserialize;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// A user as GitHub shows one.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct User {
    pub login: String,
}

/// A commit a pull request points at.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct Commit {
    pub sha: String,
    #[serde(rename = "ref")]
    pub branch: String,
}

/// A label.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct Label {
    pub name: String,
}

/// The fields of `GET /repos/{owner}/{repo}/pulls` items that jobs use.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct PullRequest {
    pub number: u64,
    pub title: String,
    #[serde(default)]
    pub draft: bool,
    pub user: User,
    pub author_association: String,
    pub head: Commit,
    pub base: Commit,
    #[serde(default)]
    pub labels: Vec<Label>,
    pub created_at: String,
    pub updated_at: String,
    pub html_url: String,
}

/// A review, from `GET /repos/{owner}/{repo}/pulls/{number}/reviews`.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct Review {
    /// Absent for a reviewer whose account is gone.
    pub user: Option<User>,
    pub state: String,
    #[serde(default)]
    pub author_association: String,
    #[serde(default)]
    pub commit_id: Option<String>,
}

impl PullRequest {
    /// Reads one list item; the error names what is missing or wrong.
    pub(crate) fn parse(item: &serde_json::Value) -> Result<PullRequest, String> {
        let pr = PullRequest::deserialize(item).map_err(|e| e.to_string())?;
        let sha_ok = pr.head.sha.len() == 40 && pr.head.sha.bytes().all(|b| b.is_ascii_hexdigit());
        if !sha_ok {
            return Err(format!(
                "head.sha {:?} is not a 40-hex commit id",
                pr.head.sha
            ));
        }
        created_ms(&pr.created_at)?;
        Ok(pr)
    }

    /// When the pull request was opened, in ms since the epoch.
    pub(crate) fn created_ms(&self) -> u64 {
        created_ms(&self.created_at).unwrap_or(0)
    }

    /// Why it is not built at all, if it is not: a draft, or a `[WIP]` title.
    pub(crate) fn not_ready(&self) -> Option<&'static str> {
        if self.draft {
            Some("draft")
        } else if self.title.to_ascii_lowercase().contains("[wip]") {
            Some("work in progress")
        } else {
            None
        }
    }
}

fn created_ms(text: &str) -> Result<u64, String> {
    let t = OffsetDateTime::parse(text, &Rfc3339)
        .map_err(|e| format!("created_at {text:?} is not an RFC 3339 time: {e}"))?;
    Ok(u64::try_from(t.unix_timestamp_nanos() / 1_000_000).unwrap_or(0))
}

/// Who may have their pull requests built without a review.
#[derive(Debug, Clone)]
pub struct TrustRules {
    /// `author_association` values trusted as they are (default: OWNER, MEMBER,
    /// COLLABORATOR).
    pub associations: BTreeSet<String>,
    /// Logins trusted whatever their association.
    pub users: BTreeSet<String>,
}

impl Default for TrustRules {
    fn default() -> Self {
        TrustRules {
            associations: ["OWNER", "MEMBER", "COLLABORATOR"]
                .into_iter()
                .map(String::from)
                .collect(),
            users: BTreeSet::new(),
        }
    }
}

impl TrustRules {
    /// Whether `login` with `association` is trusted.
    pub fn trusts(&self, login: &str, association: &str) -> bool {
        self.users.contains(login) || self.associations.contains(association)
    }

    /// Whether `pr`'s author is trusted.
    pub(crate) fn trusts_author(&self, pr: &PullRequest) -> bool {
        self.trusts(&pr.user.login, &pr.author_association)
    }

    /// Whether a trusted reviewer's latest verdict on `head` is an approval. Reviews come
    /// oldest first: an approval that was later dismissed, or followed by a request for
    /// changes from the same reviewer, no longer counts, and an approval of an earlier head
    /// does not carry over to new commits.
    pub(crate) fn approves(&self, head: &str, reviews: &[Review]) -> bool {
        let mut latest: BTreeMap<&str, (&str, bool)> = BTreeMap::new();
        for r in reviews {
            let Some(u) = r.user.as_ref() else { continue };
            if !self.trusts(&u.login, &r.author_association) {
                continue;
            }
            let on_head = r.commit_id.as_deref().is_none_or(|c| c == head);
            match r.state.as_str() {
                "APPROVED" | "CHANGES_REQUESTED" | "DISMISSED" => {
                    latest.insert(&u.login, (r.state.as_str(), on_head));
                }
                _ => {} // a comment leaves the verdict as it was
            }
        }
        latest.values().any(|v| *v == ("APPROVED", true))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item() -> serde_json::Value {
        serde_json::json!({
            "number": 7, "title": "Fix it", "draft": false,
            "user": {"login": "alice"}, "author_association": "CONTRIBUTOR",
            "head": {"sha": "a".repeat(40), "ref": "fix"},
            "base": {"sha": "b".repeat(40), "ref": "main"},
            "labels": [{"name": "urgent"}],
            "created_at": "2026-01-02T03:04:05Z", "updated_at": "2026-01-02T03:04:05Z",
            "html_url": "https://github.com/o/r/pull/7"
        })
    }

    #[test]
    fn missing_and_malformed_fields_are_named() {
        let pr = PullRequest::parse(&item()).unwrap();
        assert_eq!(pr.created_ms(), 1_767_323_045_000);
        let mut v = item();
        v["head"].as_object_mut().unwrap().remove("sha");
        assert!(PullRequest::parse(&v).unwrap_err().contains("sha"));
        let mut v = item();
        v["head"]["sha"] = "main".into();
        assert!(PullRequest::parse(&v).unwrap_err().contains("head.sha"));
        let mut v = item();
        v["created_at"] = "yesterday".into();
        assert!(PullRequest::parse(&v).unwrap_err().contains("created_at"));
    }

    #[test]
    fn drafts_and_wip_titles_wait() {
        let mut v = item();
        v["title"] = "[WiP] Fix it".into();
        assert!(PullRequest::parse(&v).unwrap().not_ready().is_some());
        let mut v = item();
        v["draft"] = true.into();
        assert_eq!(PullRequest::parse(&v).unwrap().not_ready(), Some("draft"));
        assert_eq!(PullRequest::parse(&item()).unwrap().not_ready(), None);
    }

    #[test]
    fn approvals_count_from_trusted_reviewers_of_the_current_head() {
        let rules = TrustRules::default();
        let pr = PullRequest::parse(&item()).unwrap();
        assert!(!rules.trusts_author(&pr));
        let review = |login: &str, assoc: &str, state: &str, commit: &str| Review {
            user: Some(User {
                login: login.into(),
            }),
            state: state.into(),
            author_association: assoc.into(),
            commit_id: Some(commit.into()),
        };
        let head = "a".repeat(40);
        let old = "b".repeat(40);
        let approves = |reviews: &[Review]| rules.approves(&pr.head.sha, reviews);
        assert_eq!(pr.head.sha, head);
        assert!(approves(&[review("bob", "MEMBER", "APPROVED", &head)]));
        assert!(!approves(&[review("eve", "NONE", "APPROVED", &head)]));
        assert!(!approves(&[review("bob", "MEMBER", "COMMENTED", &head)]));
        assert!(!approves(&[review("bob", "MEMBER", "APPROVED", &old)]));
        // The latest verdict of each trusted reviewer counts; comments change nothing.
        let approved = review("bob", "MEMBER", "APPROVED", &head);
        let comment = review("bob", "MEMBER", "COMMENTED", &head);
        let dismissed = review("bob", "MEMBER", "DISMISSED", &head);
        let changes = review("bob", "MEMBER", "CHANGES_REQUESTED", &head);
        assert!(approves(&[approved.clone(), comment.clone()]));
        assert!(!approves(&[approved.clone(), dismissed.clone()]));
        assert!(!approves(&[approved.clone(), changes.clone()]));
        assert!(approves(&[changes, approved.clone()]));
        let carol = review("carol", "OWNER", "APPROVED", &head);
        assert!(approves(&[approved, dismissed, carol]));
    }
}
