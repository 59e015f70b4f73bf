//! Whether an untrusted author's pull request may be built: a trusted reviewer's approval
//! of its head, read when a round considers it and read again each time one of its jobs is
//! handed out, so that an approval dismissed while the job waited in the queue stops it.

use super::pulls::{PullRequest, Review};
use super::view::RepoView;
use super::{GithubPrSource, GithubRepo};
use hgauto_core::error::Result;
use hgauto_core::job::Job;

/// The job attribute that says why a job may be built.
pub(super) const TRUSTED_BY: &str = "trusted_by";

/// Why a pull request's jobs may be built.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum TrustedBy {
    /// Its author is trusted: nothing to check again.
    Author,
    /// A trusted reviewer approved its head: checked again at each hand-out.
    Review,
}

impl TrustedBy {
    /// `Author` when `pr`'s author is trusted, else `Review`.
    pub(super) fn of(rules: &super::TrustRules, pr: &PullRequest) -> Self {
        if rules.trusts_author(pr) {
            TrustedBy::Author
        } else {
            TrustedBy::Review
        }
    }

    /// The attribute's value.
    pub(super) fn as_str(self) -> &'static str {
        match self {
            TrustedBy::Author => "author",
            TrustedBy::Review => "review",
        }
    }
}

impl GithubPrSource {
    /// Whether a trusted reviewer approved the current head; read again only when the pull
    /// request changed (a review moves its `updated_at`).
    pub(super) async fn approved(
        &self,
        repo: &GithubRepo,
        pr: &PullRequest,
        view: &mut RepoView,
    ) -> Result<bool> {
        if let Some((sha, updated, ok)) = view.approvals.get(&pr.number) {
            if *sha == pr.head.sha && *updated == pr.updated_at {
                return Ok(*ok);
            }
        }
        let ok = self
            .read_approval(&repo.full_name(), pr.number, &pr.head.sha)
            .await?;
        view.approvals
            .insert(pr.number, (pr.head.sha.clone(), pr.updated_at.clone(), ok));
        Ok(ok)
    }

    /// Whether `job` may still be handed out. A job of a trusted author always may; any
    /// other (including one queued before jobs said why they were trusted) needs the
    /// approval of its head to stand now. The reviews are read conditionally, so an
    /// unchanged list costs one request answered 304.
    pub(super) async fn approval_stands(&self, job: &Job) -> Result<bool> {
        if job.attributes.get(TRUSTED_BY).map(String::as_str) == Some(TrustedBy::Author.as_str()) {
            return Ok(true);
        }
        let (Some(full), Some(number), Some(head)) = (
            job.attributes.get("repository"),
            job.attributes
                .get("number")
                .and_then(|n| n.parse::<u64>().ok()),
            job.revision.as_ref(),
        ) else {
            return Ok(false);
        };
        let ok = self.read_approval(full, number, head).await?;
        if !ok {
            // The next round decides about this pull request again, whatever its listing
            // says, and asks for an approval.
            if let Some(view) = Self::lock(&self.views).get_mut(full.as_str()) {
                view.approvals.remove(&number);
                view.complete = false;
            }
        }
        Ok(ok)
    }

    async fn read_approval(&self, full: &str, number: u64, head: &str) -> Result<bool> {
        let path = format!("repos/{full}/pulls/{number}/reviews?per_page=100");
        let listing = self.client.get_list(&path).await?;
        let reviews: Vec<Review> = listing
            .items
            .iter()
            .filter_map(|v| serde_json::from_value(v.clone()).ok())
            .collect();
        Ok(self.trust.approves(head, &reviews))
    }
}
