//! The agent over GitHub pull requests (the fake GitHub of the source's tests): a failed
//! head is re-checked without a second "pending", a green re-check writes nothing, and an
//! untrusted pull request gets one "approval needed" however many rounds run.

use hgauto_testkit::support;

use std::sync::Arc;
use std::time::Duration;

use hgauto_agent::github::{GithubPrSource, GithubRepo};
use hgauto_agent::{Agent, AgentContext, Iteration};
use hgauto_core::clock::ManualClock;
use hgauto_core::{Job, JobOutcome};
use support::fake_github::{sha_of, FakeGithub, NewPull};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_rechecks_red_without_pending_and_green_without_writes() {
    let fake = FakeGithub::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (red, green, outsider) = (sha_of("red"), sha_of("green"), sha_of("outsider"));
    fake.open(NewPull::new("acme/widget", &red));
    fake.open(NewPull::new("acme/widget", &green));
    let mut stranger = NewPull::new("acme/widget", &outsider);
    stranger.author = "stranger".into();
    stranger.association = "NONE".into();
    fake.open(stranger);
    let clock = ManualClock::new(1_700_000_000_000);
    let source = GithubPrSource::builder(dir.path().join("source"))
        .api_url(fake.url())
        .poll_interval(Duration::ZERO)
        .rechecks(Duration::from_secs(600))
        .clock(Arc::new(clock.clone()))
        .repository(GithubRepo::new("acme/widget", ["build"]).unwrap())
        .build()
        .unwrap();
    let red2 = red.clone();
    let agent = Agent::builder(Arc::new(source), dir.path().join("agent/state"))
        .clock(Arc::new(clock.clone()))
        .build(move |job: Job, _ctx: AgentContext| {
            let failing = job.revision.as_deref() == Some(red2.as_str());
            async move {
                Ok(if failing {
                    JobOutcome::Failed {
                        summary: "2 tests failed".into(),
                        retryable: true,
                    }
                } else {
                    JobOutcome::Succeeded {
                        summary: "all passed".into(),
                    }
                })
            }
        })
        .build_agent()
        .unwrap();
    // Several periods of rounds: first builds, then a re-check of each head per period.
    let mut built = Vec::new();
    for _ in 0..3 {
        while let Iteration::Built { job, reported, .. } = agent.run_once().await.unwrap() {
            assert!(reported);
            built.push(job);
        }
        clock.advance(Duration::from_secs(600));
    }
    let rechecks = built.iter().filter(|j| j.contains("~recheck")).count();
    assert!(
        rechecks >= 4,
        "each head re-checked in later periods: {built:?}"
    );
    let trail = |sha: &str| fake.statuses("acme/widget", sha);
    let red_trail = trail(&red);
    assert_eq!(
        red_trail
            .iter()
            .map(|(_, st, _)| st.as_str())
            .collect::<Vec<_>>(),
        ["pending", "failure"],
        "a red re-check keeps red, no second pending, same failure not re-written"
    );
    let green_trail = trail(&green);
    assert_eq!(
        green_trail
            .iter()
            .map(|(_, st, _)| st.as_str())
            .collect::<Vec<_>>(),
        ["pending", "success"],
        "green re-checks write nothing"
    );
    let outsider_trail = trail(&outsider);
    assert_eq!(outsider_trail.len(), 1, "{outsider_trail:?}");
    assert!(outsider_trail[0].2.starts_with("approval needed"));
}

/// "Done" is the source's word: a closed pull request is no longer re-checked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_pull_request_is_not_rechecked() {
    let fake = FakeGithub::start().await;
    let dir = tempfile::tempdir().unwrap();
    let n = fake.open(NewPull::new("acme/widget", &sha_of("short-lived")));
    let source = GithubPrSource::builder(dir.path().join("source"))
        .api_url(fake.url())
        .poll_interval(Duration::ZERO)
        .repository(GithubRepo::new("acme/widget", ["build"]).unwrap())
        .build()
        .unwrap();
    let agent = Agent::builder(Arc::new(source), dir.path().join("agent/state"))
        .rechecks(1)
        .build(|_job: Job, _ctx: AgentContext| async move {
            Ok(JobOutcome::Failed {
                summary: "red".into(),
                retryable: true,
            })
        })
        .build_agent()
        .unwrap();
    let first = agent.run_once().await.unwrap();
    assert!(
        matches!(&first, Iteration::Built { job, .. } if !job.contains("~recheck")),
        "{first:?}"
    );
    let again = agent.run_once().await.unwrap();
    assert!(
        matches!(&again, Iteration::Built { job, .. } if job.contains("~recheck")),
        "{again:?}"
    );
    fake.close("acme/widget", n);
    assert_eq!(agent.run_once().await.unwrap(), Iteration::Idle);
    assert_eq!(agent.run_once().await.unwrap(), Iteration::Idle);
}
