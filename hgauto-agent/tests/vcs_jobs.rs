//! VcsBranchSource against real git and Mercurial repositories: new heads become one job
//! per check, once; `checkout::resolve_heads` reads heads without a working copy; and the
//! job source suite, where enqueueing a job is committing to a branch.

use hgauto_testkit::support;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use hgauto_agent::vcs_jobs::Watch;
use hgauto_agent::VcsBranchSource;
use hgauto_ci::checkout::{resolve_heads, CheckoutOptions, Vcs};
use hgauto_core::clock::ManualClock;
use hgauto_core::{Job, JobFilter, JobOutcome, JobSource};
use hgauto_testkit::job_source::{run_all, Capabilities, Harness};
use support::sh;

const TTL: Duration = Duration::from_secs(30);

fn init(vcs: Vcs, dir: &Path) -> PathBuf {
    let repo = dir.join(format!("upstream-{}", vcs.name()));
    std::fs::create_dir_all(&repo).unwrap();
    match vcs {
        Vcs::Git => sh(
            &repo,
            "git init -q -b main && echo 0 > f && git add f && git commit -qm c0",
        ),
        Vcs::Hg => sh(
            &repo,
            "hg init && echo 0 > f && hg add -q f && hg commit -m c0",
        ),
    };
    repo
}

/// Commits `text` on `branch` (creating it from the first commit if needed); returns the
/// new head.
fn commit(vcs: Vcs, repo: &Path, branch: &str, text: &str) -> String {
    match vcs {
        Vcs::Git => sh(
            repo,
            &format!(
                "(git checkout -q {branch} 2>/dev/null || git checkout -q -b {branch} main) \
                 && echo '{text}' > f && git commit -qam '{text}' && git rev-parse HEAD"
            ),
        ),
        Vcs::Hg => sh(
            repo,
            &format!(
                "(hg update -q {branch} 2>/dev/null || (hg update -q 0 && hg branch -q {branch})) \
                 && echo '{text}' > f && hg commit -m '{text}' && hg log -r . -T '{{node}}'"
            ),
        ),
    }
}

fn options(dir: &Path) -> CheckoutOptions {
    CheckoutOptions::new(dir.join("shares"))
}

async fn new_heads_become_one_job_per_check(vcs: Vcs) {
    let dir = tempfile::tempdir().unwrap();
    let repo = init(vcs, dir.path());
    let head = commit(vcs, &repo, "stable", "one");
    let url = repo.display().to_string();
    let heads = resolve_heads(
        vcs,
        &url,
        &["stable".into(), "missing".into()],
        &options(dir.path()),
    )
    .await
    .unwrap();
    assert_eq!(heads.get("stable"), Some(&head));
    assert!(!heads.contains_key("missing"));

    let source = VcsBranchSource::new(dir.path().join("jobs"), options(dir.path()))
        .unwrap()
        .with_poll_interval(Duration::from_secs(3600));
    source
        .watch(Watch {
            vcs,
            url: url.clone(),
            branches: vec!["stable".into()],
            checks: vec!["build/linux".into(), "build/windows".into()],
            priority: 0,
        })
        .unwrap();
    assert_eq!(source.poll().await.unwrap(), 2);
    assert_eq!(
        source.poll().await.unwrap(),
        0,
        "an unchanged head makes no job"
    );
    let mut taken = Vec::new();
    while let Some(j) = source.next(&JobFilter::any()).await.unwrap() {
        assert_eq!(j.revision.as_deref(), Some(head.as_str()));
        assert_eq!(j.attributes["branch"], "stable");
        taken.push(j.check.clone());
        source
            .report(
                &j,
                &JobOutcome::Succeeded {
                    summary: "ok".into(),
                },
            )
            .await
            .unwrap();
    }
    taken.sort();
    assert_eq!(taken, ["build/linux", "build/windows"]);

    let next_head = commit(vcs, &repo, "stable", "two");
    assert_eq!(source.poll().await.unwrap(), 2);
    let j = source.next(&JobFilter::any()).await.unwrap().unwrap();
    assert_eq!(j.revision.as_deref(), Some(next_head.as_str()));
}

/// A repository that cannot be read (gone, or not yet made) is reported by name and does
/// not stop the poll of the others, and `next` does not poll again before one is due.
async fn one_failing_repository_does_not_stop_the_others(vcs: Vcs) {
    let dir = tempfile::tempdir().unwrap();
    let later = dir.path().join("not-yet-a-repository");
    let missing = later.join(format!("upstream-{}", vcs.name()));
    let good = init(vcs, dir.path());
    let head = commit(vcs, &good, "stable", "one");
    let source = VcsBranchSource::new(dir.path().join("jobs"), options(dir.path()))
        .unwrap()
        .with_poll_interval(Duration::from_secs(3600));
    for url in [&missing, &good] {
        source
            .watch(Watch {
                vcs,
                url: url.display().to_string(),
                branches: vec!["stable".into()],
                checks: vec!["build".into()],
                priority: 0,
            })
            .unwrap();
    }
    // Through `next`, as an agent polls: the good repository's job is there.
    let job = source.next(&JobFilter::any()).await.unwrap();
    assert_eq!(
        job.as_ref().and_then(|j| j.revision.as_deref()),
        Some(head.as_str()),
        "the readable repository was polled"
    );
    source.release(&job.unwrap()).await.unwrap();
    // Made readable now; `next` must not poll again before the interval is up.
    let other = init(vcs, &later);
    assert_eq!(other, missing);
    commit(vcs, &other, "stable", "two");
    let again = source.next(&JobFilter::any()).await.unwrap().unwrap();
    assert_eq!(
        again.revision.as_deref(),
        Some(head.as_str()),
        "no poll on every next"
    );
    source.release(&again).await.unwrap();

    std::fs::remove_dir_all(&missing).unwrap();
    let report = source.poll_report().await;
    assert_eq!((report.repositories, report.added), (2, 0));
    assert_eq!(report.failures.len(), 1, "{report:?}");
    assert!(report.failures[0]
        .repository
        .contains("not-yet-a-repository"));
    let e = source.poll().await.unwrap_err().to_string();
    assert!(
        e.contains("1 of 2 repositories") && e.contains("not-yet-a-repository"),
        "{e}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn git_one_failing_repository_does_not_stop_the_others() {
    one_failing_repository_does_not_stop_the_others(Vcs::Git).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hg_one_failing_repository_does_not_stop_the_others() {
    one_failing_repository_does_not_stop_the_others(Vcs::Hg).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn git_new_heads_become_one_job_per_check() {
    new_heads_become_one_job_per_check(Vcs::Git).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hg_new_heads_become_one_job_per_check() {
    new_heads_become_one_job_per_check(Vcs::Hg).await;
}

/// Enqueueing a job commits to a branch named after its check (watched from then on) and
/// polls, so every job of the suite is a real head of a real repository.
struct GitHarness {
    clock: ManualClock,
    repo: PathBuf,
    source: Arc<VcsBranchSource>,
    watched: Mutex<Vec<String>>,
}

#[async_trait]
impl Harness for GitHarness {
    fn consumer(&self) -> Arc<dyn JobSource> {
        self.source.clone()
    }
    async fn enqueue(&self, job: Job) {
        let branch = job.check.clone();
        let first = {
            let mut w = self.watched.lock().unwrap();
            let first = !w.contains(&branch);
            if first {
                w.push(branch.clone());
            }
            first
        };
        if first {
            self.source
                .watch(Watch {
                    vcs: Vcs::Git,
                    url: self.repo.display().to_string(),
                    branches: vec![branch.clone()],
                    checks: vec![job.check.clone()],
                    priority: 0,
                })
                .unwrap();
        }
        commit(Vcs::Git, &self.repo, &branch, &job.id);
        assert_eq!(
            self.source.poll().await.unwrap(),
            1,
            "one new head, one job"
        );
    }
    fn advance(&self, by: Duration) {
        self.clock.advance(by);
    }
    fn lease_ttl(&self) -> Duration {
        TTL
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vcs_source_passes_the_suite() {
    let dir = tempfile::tempdir().unwrap();
    let repo = init(Vcs::Git, dir.path());
    let clock = ManualClock::default();
    let source = VcsBranchSource::new(dir.path().join("jobs"), options(dir.path()))
        .unwrap()
        .with_clock(Arc::new(clock.clone()))
        .with_lease_ttl(TTL)
        .with_poll_interval(Duration::from_secs(3600));
    let h = GitHarness {
        clock,
        repo,
        source: Arc::new(source),
        watched: Mutex::new(Vec::new()),
    };
    // A branch's jobs are its heads, created in commit order, so priorities and re-queued
    // (check, revision) pairs do not apply.
    run_all(&h, Capabilities::leases_only()).await;
}
