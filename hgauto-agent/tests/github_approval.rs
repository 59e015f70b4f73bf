//! An untrusted author's pull request is built only while a trusted reviewer's approval of
//! its head stands: the approval is read again when each job is handed out (against the
//! fake GitHub on loopback).

use hgauto_testkit::support;

use std::time::Duration;

use hgauto_agent::github::{GithubPrSource, GithubRepo};
use hgauto_core::{JobFilter, JobOutcome, JobSource};
use support::fake_github::{sha_of, FakeGithub, NewPull};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dismissed_approval_stops_the_queued_jobs_and_a_new_one_queues_them_again() {
    let fake = FakeGithub::start().await;
    let dir = tempfile::tempdir().unwrap();
    let head = sha_of("outsider");
    let n = fake.open(NewPull::by_outsider("acme/widget", &head));
    fake.review("acme/widget", n, "maintainer", "MEMBER", "APPROVED", &head);
    // Rounds run only when asked for, so the queue is what the last round left.
    let s = GithubPrSource::builder(dir.path())
        .api_url(fake.url())
        .poll_interval(Duration::from_secs(3600))
        .lease_ttl(Duration::from_secs(30))
        .repository(GithubRepo::new("acme/widget", ["build", "lint"]).unwrap())
        .build()
        .unwrap();
    assert_eq!(s.poll().await.unwrap(), 2, "approved: both checks queued");

    // The approval is dismissed while the jobs wait: neither is handed out, and nothing
    // was reported for them (no status, no outcome).
    fake.dismiss("acme/widget", n, "maintainer");
    let any = JobFilter::any();
    assert!(
        s.next(&any).await.unwrap().is_none(),
        "a dismissed approval"
    );
    assert!(s.queue().outcomes().unwrap().is_empty());
    assert!(fake
        .statuses("acme/widget", &head)
        .iter()
        .all(|(_, st, d)| st == "pending" && d.starts_with("approval needed")));

    // The next round asks for an approval again; a new approval queues both jobs again,
    // and they are built. While the approval stands, each hand-out reads the reviews again.
    s.poll().await.unwrap();
    assert!(s.next(&any).await.unwrap().is_none());
    fake.review("acme/widget", n, "maintainer", "MEMBER", "APPROVED", &head);
    fake.edit("acme/widget", n, |_| {});
    assert_eq!(s.poll().await.unwrap(), 2, "approved again");
    fake.reset_requests().await;
    let mut built = Vec::new();
    while let Some(j) = s.next(&any).await.unwrap() {
        s.started(&j).await.unwrap();
        s.report(
            &j,
            &JobOutcome::Succeeded {
                summary: "ok".into(),
            },
        )
        .await
        .unwrap();
        built.push(j.check.clone());
    }
    built.sort();
    assert_eq!(built, ["build", "lint"]);
    let reads = fake.requests().await;
    let reads: Vec<_> = reads
        .iter()
        .filter(|r| r.url.path().ends_with(&format!("/pulls/{n}/reviews")))
        .collect();
    assert_eq!(reads.len(), 2, "one conditional read per hand-out");
    assert!(reads
        .iter()
        .all(|r| r.headers.contains_key("if-none-match")));
}
