//! A round: list each repository's open pull requests, decide what is built, queue the
//! new (head, check) jobs; and the status writes that follow a job.

use std::collections::HashMap;

use sha2::{Digest, Sha256};

use super::approval::{TrustedBy, TRUSTED_BY};
use super::pulls::PullRequest;
use super::statuses::{self, Status, Wanted, APPROVAL_NEEDED, STARTED};
use super::{GithubPrSource, GithubRepo};
use hgauto_core::error::{Error, Result};
use hgauto_core::job::{Job, JobOutcome};

use super::view::RepoView;

/// Re-checks come after every untested head: failed ones first, then passed ones.
const RECHECK_FAILED: i32 = -1_000_000;
const RECHECK_PASSED: i32 = -2_000_000;

/// What a status write is for.
pub(crate) enum StatusWrite<'a> {
    Started,
    Outcome(&'a JobOutcome),
}

impl GithubPrSource {
    /// Runs a round now: lists every watched repository and queues a job for each new
    /// (head, check) to build. Returns how many jobs were added. A repository that cannot
    /// be listed fails the round (the others are still done).
    pub async fn poll(&self) -> Result<usize> {
        let _one_at_a_time = self.polling.lock().await;
        let repos = Self::lock(&self.repos).clone();
        let (mut added, mut first_error) = (0, None);
        for repo in &repos {
            match self.poll_repo(repo).await {
                Ok(n) => added += n,
                Err(e) => {
                    tracing::warn!(repository = %repo.full_name(), error = %e, "listing pull requests failed");
                    first_error.get_or_insert(e);
                }
            }
        }
        self.client.save_cache();
        *Self::lock(&self.last_poll) = Some(std::time::Instant::now());
        match first_error {
            Some(e) => Err(e),
            None => Ok(added),
        }
    }

    async fn poll_repo(&self, repo: &GithubRepo) -> Result<usize> {
        let full = repo.full_name();
        let listing = self
            .client
            .get_list(&format!(
                "repos/{full}/pulls?state=open&per_page=100&sort=created&direction=asc"
            ))
            .await?;
        let known = Self::lock(&self.views)
            .get(&full)
            .is_some_and(|v| v.complete);
        if known && !listing.changed {
            return self.queue_rechecks(repo).await;
        }
        let mut view = Self::lock(&self.views).remove(&full).unwrap_or_default();
        let mut pulls = HashMap::new();
        for item in &listing.items {
            match PullRequest::parse(item) {
                Ok(pr) => {
                    pulls.insert(pr.number, pr);
                }
                Err(reason) => self.quarantine(repo, item, &reason),
            }
        }
        let mut added = 0;
        let result = async {
            let mut numbers: Vec<u64> = pulls.keys().copied().collect();
            numbers.sort_unstable();
            for n in numbers {
                added += self.consider(repo, &pulls[&n], &mut view).await?;
            }
            Ok::<(), Error>(())
        }
        .await;
        // Heads no longer open are forgotten; what was learnt is kept even after an error.
        let heads: std::collections::HashSet<&str> =
            pulls.values().map(|p| p.head.sha.as_str()).collect();
        view.statuses.retain(|sha, _| heads.contains(sha.as_str()));
        view.approvals.retain(|n, _| pulls.contains_key(n));
        view.pulls = pulls;
        view.complete = result.is_ok();
        Self::lock(&self.views).insert(full, view);
        result?;
        Ok(added + self.queue_rechecks(repo).await?)
    }

    /// Decides about one open pull request; queues its new jobs and returns how many.
    async fn consider(
        &self,
        repo: &GithubRepo,
        pr: &PullRequest,
        view: &mut RepoView,
    ) -> Result<usize> {
        if pr.not_ready().is_some() {
            return Ok(0);
        }
        let sha = pr.head.sha.clone();
        let trusted_by = TrustedBy::of(&self.trust, pr);
        let trusted = trusted_by == TrustedBy::Author || self.approved(repo, pr, view).await?;
        if !view.statuses.contains_key(&sha) {
            // A head whose jobs this queue already has (a restarted agent's) needs no read:
            // nothing is queued from its statuses unless re-checks are on.
            let queued_here = trusted
                && self.recheck_after.is_none()
                && repo
                    .checks
                    .iter()
                    .all(|c| self.queue.has_job(&job_id(repo, pr, c, "")));
            let current = if queued_here {
                HashMap::new()
            } else {
                self.read_statuses(repo, &sha).await?
            };
            view.statuses.insert(sha.clone(), current);
        }
        if !trusted {
            for check in &repo.checks {
                let wanted = Wanted::new("pending", APPROVAL_NEEDED, None);
                let current = view.statuses[&sha].get(check).cloned();
                if !current.as_ref().is_some_and(statuses::is_final) {
                    if let Some(written) = self
                        .write_if_changed(repo, &sha, check, &wanted, current.as_ref())
                        .await?
                    {
                        remember(view, &sha, written);
                    }
                }
            }
            return Ok(0);
        }
        let priority = self.priority_of(pr);
        let mut added = 0;
        for check in &repo.checks {
            if view.statuses[&sha]
                .get(check)
                .is_some_and(statuses::is_final)
            {
                continue;
            }
            let job = self.job_for(repo, pr, check, priority, trusted_by, String::new());
            let queue = self.queue.clone();
            if hgauto_core::backend::task::blocking(move || queue.enqueue(job)).await? {
                added += 1;
            }
        }
        Ok(added)
    }

    fn priority_of(&self, pr: &PullRequest) -> i32 {
        pr.labels
            .iter()
            .filter_map(|l| self.priority_labels.get(&l.name).copied())
            .max()
            .unwrap_or(0)
    }

    fn job_for(
        &self,
        repo: &GithubRepo,
        pr: &PullRequest,
        check: &str,
        priority: i32,
        trusted_by: TrustedBy,
        suffix: String,
    ) -> Job {
        let full = repo.full_name();
        Job::new(job_id(repo, pr, check, &suffix), check)
            .with_revision(pr.head.sha.clone())
            .with_priority(priority)
            .with_created_ms(pr.created_ms())
            .with_attribute("repository", full)
            .with_attribute("number", pr.number.to_string())
            .with_attribute("url", pr.html_url.clone())
            .with_attribute("author", pr.user.login.clone())
            .with_attribute("base", pr.base.branch.clone())
            .with_attribute("head_ref", pr.head.branch.clone())
            .with_attribute("title", pr.title.clone())
            .with_attribute(TRUSTED_BY, trusted_by.as_str())
    }

    /// The latest status per context of `sha`, read conditionally.
    async fn read_statuses(&self, repo: &GithubRepo, sha: &str) -> Result<HashMap<String, Status>> {
        let path = format!(
            "repos/{}/commits/{sha}/status?per_page=100",
            repo.full_name()
        );
        let v = self.client.get_object(&path).await?;
        statuses::parse_combined(&v).map_err(|reason| Error::Api {
            service: "github",
            action: "read",
            resource: path,
            class: hgauto_core::ApiErrorClass::Other,
            code: "payload".into(),
            message: reason.into_boxed_str(),
            source: None,
        })
    }

    /// Writes `wanted` for (`sha`, `check`) unless `current` already says the same;
    /// returns the status written, if one was.
    async fn write_if_changed(
        &self,
        repo: &GithubRepo,
        sha: &str,
        check: &str,
        wanted: &Wanted,
        current: Option<&Status>,
    ) -> Result<Option<Status>> {
        if !wanted.would_change(current) {
            self.client.skipped_write();
            return Ok(None);
        }
        let path = format!("repos/{}/statuses/{sha}", repo.full_name());
        self.client
            .post_json("write status", &path, &wanted.body(check))
            .await?;
        self.client.count_write();
        Ok(Some(Status {
            context: check.to_owned(),
            state: wanted.state.to_owned(),
            description: Some(wanted.description.clone()),
            target_url: wanted.target_url.clone(),
        }))
    }

    /// The status write that follows `started` or `report`, after a fresh read.
    pub(crate) async fn write_status(&self, job: &Job, what: StatusWrite<'_>) -> Result<()> {
        let Some((repo, sha)) = self.repo_of(job) else {
            return Ok(());
        };
        if matches!(what, StatusWrite::Outcome(JobOutcome::Skipped { .. })) {
            return Ok(());
        }
        let link = self.link(job, &repo, &sha);
        let fresh = self.read_statuses(&repo, &sha).await?;
        let current = fresh.get(&job.check);
        let wanted = match what {
            StatusWrite::Started if statuses::may_mark_started(current) => {
                Wanted::new("pending", STARTED, link)
            }
            StatusWrite::Started => return Ok(()),
            StatusWrite::Outcome(outcome) => match Wanted::for_outcome(outcome, link) {
                Some(w) => w,
                None => return Ok(()),
            },
        };
        let written = self
            .write_if_changed(&repo, &sha, &job.check, &wanted, current)
            .await?;
        if let Some(view) = Self::lock(&self.views).get_mut(&repo.full_name()) {
            match written {
                Some(w) => remember(view, &sha, w),
                None => {
                    if let Some(c) = current {
                        remember(view, &sha, c.clone());
                    }
                }
            }
        }
        Ok(())
    }

    /// The repository and head a job is about, from its attributes.
    fn repo_of(&self, job: &Job) -> Option<(GithubRepo, String)> {
        let full = job.attributes.get("repository")?;
        let sha = job.revision.clone()?;
        let repo = GithubRepo::new(full, [job.check.clone()]).ok()?;
        let hex = sha.len() == 40 && sha.bytes().all(|b| b.is_ascii_hexdigit());
        hex.then_some((repo, sha))
    }

    fn link(&self, job: &Job, repo: &GithubRepo, sha: &str) -> Option<String> {
        let t = self.details_url.as_ref()?;
        let number = job.attributes.get("number").map_or("", String::as_str);
        Some(
            t.replace("{repository}", &repo.full_name())
                .replace("{number}", number)
                .replace("{sha}", sha)
                .replace("{check}", &job.check),
        )
    }

    /// Why `job` is no longer worth doing: its pull request closed, or has a new head.
    pub(crate) fn gone(&self, job: &Job) -> Option<&'static str> {
        let full = job.attributes.get("repository")?;
        let number: u64 = job.attributes.get("number")?.parse().ok()?;
        let views = Self::lock(&self.views);
        let view = views.get(full)?;
        match view.pulls.get(&number) {
            None => Some("the pull request is closed"),
            Some(pr) if Some(&pr.head.sha) != job.revision.as_ref() => {
                Some("the pull request has a newer head")
            }
            Some(_) => None,
        }
    }

    /// The outcome GitHub shows for the job's head and check, when it is final.
    pub(crate) fn known_previous(&self, job: &Job) -> Option<JobOutcome> {
        let full = job.attributes.get("repository")?;
        let views = Self::lock(&self.views);
        let status = views
            .get(full)?
            .statuses
            .get(job.revision.as_ref()?)?
            .get(&job.check)?;
        statuses::previous_outcome(status)
    }

    /// Queues this period's re-check of every tested head, when re-checks are on.
    async fn queue_rechecks(&self, repo: &GithubRepo) -> Result<usize> {
        let Some(every) = self.recheck_after else {
            return Ok(0);
        };
        let period = self.clock.now_ms() / (every.as_millis() as u64).max(1);
        let mut jobs = Vec::new();
        {
            let views = Self::lock(&self.views);
            let Some(view) = views.get(&repo.full_name()) else {
                return Ok(0);
            };
            for pr in view.pulls.values().filter(|p| p.not_ready().is_none()) {
                let Some(current) = view.statuses.get(&pr.head.sha) else {
                    continue;
                };
                for check in &repo.checks {
                    let Some(s) = current.get(check).filter(|s| statuses::is_final(s)) else {
                        continue;
                    };
                    let base = if s.state == "success" {
                        RECHECK_PASSED
                    } else {
                        RECHECK_FAILED
                    };
                    let job = self.job_for(
                        repo,
                        pr,
                        check,
                        base + self.priority_of(pr),
                        TrustedBy::of(&self.trust, pr),
                        format!("~recheck-{period}"),
                    );
                    jobs.push(job);
                }
            }
        }
        let queue = self.queue.clone();
        hgauto_core::backend::task::blocking(move || {
            let mut added = 0;
            for j in jobs {
                added += usize::from(queue.enqueue(j)?);
            }
            Ok(added)
        })
        .await
    }

    /// Keeps a list item that could not be read in `failed/`, with the reason.
    fn quarantine(&self, repo: &GithubRepo, item: &serde_json::Value, reason: &str) {
        let data = serde_json::to_vec_pretty(item).unwrap_or_default();
        let digest = hex::encode(&Sha256::digest(&data)[..6]);
        let stem = format!("github-{}-{}-{digest}.json", repo.owner, repo.name);
        let path = self.queue.root().join("failed").join(&stem);
        if path.exists() {
            return;
        }
        tracing::warn!(repository = %repo.full_name(), %reason, file = %path.display(), "quarantined a pull request payload");
        let reason_path = path.with_file_name(format!("{stem}.reason"));
        let _ =
            hgauto_core::backend::fs::write_atomic(&reason_path, format!("{reason}\n").as_bytes());
        let _ = hgauto_core::backend::fs::write_atomic(&path, &data);
    }
}

/// Records `status` as the latest of its context on `sha`, when the view follows `sha`.
fn remember(view: &mut RepoView, sha: &str, status: Status) {
    if let Some(s) = view.statuses.get_mut(sha) {
        s.insert(status.context.clone(), status);
    }
}

/// The id of the job for `pr`'s head and `check` (`suffix` tells re-checks apart).
fn job_id(repo: &GithubRepo, pr: &PullRequest, check: &str, suffix: &str) -> String {
    format!(
        "{}#{}@{}:{check}{suffix}",
        repo.full_name(),
        pr.number,
        pr.head.sha
    )
}
