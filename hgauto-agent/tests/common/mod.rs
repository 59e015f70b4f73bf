//! What the tests of this directory share.
#![allow(dead_code)]

use hgauto_testkit::support;

use std::time::Duration;

use hgauto_agent::github::{GithubPrSource, GithubPrSourceBuilder, GithubRepo};
use hgauto_core::{Job, JobFilter, JobOutcome, JobSource};
use support::fake_github::FakeGithub;

pub const TTL: Duration = Duration::from_secs(30);
pub fn builder(fake: &FakeGithub, dir: &std::path::Path) -> GithubPrSourceBuilder {
    GithubPrSource::builder(dir)
        .api_url(fake.url())
        .poll_interval(Duration::ZERO)
        .lease_ttl(TTL)
}
pub fn ok() -> JobOutcome {
    JobOutcome::Succeeded {
        summary: "all tests passed".into(),
    }
}
pub fn failed() -> JobOutcome {
    JobOutcome::Failed {
        summary: "3 tests failed".into(),
        retryable: true,
    }
}
pub async fn one_repo(fake: &FakeGithub, dir: &std::path::Path, checks: &[&str]) -> GithubPrSource {
    builder(fake, dir)
        .repository(GithubRepo::new("acme/widget", checks.iter().copied()).unwrap())
        .details_url("https://ci.example.org/{repository}/{number}/{check}/{sha}")
        .build()
        .unwrap()
}
/// Takes every job, marks it started and reports it with `outcome`.
pub async fn build_all(s: &GithubPrSource, outcome: &JobOutcome) -> Vec<Job> {
    let mut done = Vec::new();
    while let Some(j) = s.next(&JobFilter::any()).await.unwrap() {
        s.started(&j).await.unwrap();
        s.report(&j, outcome).await.unwrap();
        done.push(j);
    }
    done
}
