//! GithubPrSource against a fake GitHub on loopback (wiremock): the job source suite, and
//! what GitHub sees: conditional requests, pagination, rate limits waited out, trust rules,
//! status writes (and the ones skipped), quarantine of malformed payloads, the token.

use hgauto_testkit::support;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use hgauto_agent::github::{GithubPrSource, GithubRepo};
use hgauto_core::clock::ManualClock;
use hgauto_core::{Error, Job, JobFilter, JobSource};
use hgauto_testkit::job_source::{run_all, Capabilities, Harness};
use support::fake_github::{rfc3339, sha_of, FakeGithub, NewPull, Refusal};

mod common;
use common::*;

struct GithubHarness {
    fake: FakeGithub,
    clock: ManualClock,
    dir: tempfile::TempDir,
    consumers: Mutex<Vec<Arc<GithubPrSource>>>,
    repos: Mutex<Vec<GithubRepo>>,
}

#[async_trait]
impl Harness for GithubHarness {
    /// Each consumer is its own source over the same state directory, as another agent
    /// process on the host is.
    fn consumer(&self) -> Arc<dyn JobSource> {
        let mut b = builder(&self.fake, self.dir.path()).clock(Arc::new(self.clock.clone()));
        for p in 1..=10 {
            b = b.priority_label(format!("priority-{p}"), p);
        }
        for r in self.repos.lock().unwrap().iter() {
            b = b.repository(r.clone());
        }
        let s = Arc::new(b.build().unwrap());
        self.consumers.lock().unwrap().push(s.clone());
        s
    }

    /// Opens a pull request in a repository named after the job's check.
    async fn enqueue(&self, job: Job) {
        let repo =
            GithubRepo::new(&format!("hgauto-test/{}", job.check), [job.check.clone()]).unwrap();
        let known = self.repos.lock().unwrap().contains(&repo);
        if !known {
            self.repos.lock().unwrap().push(repo.clone());
            for c in self.consumers.lock().unwrap().iter() {
                c.watch(repo.clone());
            }
        }
        let head = sha_of(job.revision.as_deref().unwrap_or(&job.id));
        let mut pr = NewPull::new(&repo.full_name(), &head);
        if job.priority > 0 {
            pr.labels.push(format!("priority-{}", job.priority));
        }
        if job.created_ms > 0 {
            pr.created_at = rfc3339(job.created_ms);
        }
        self.fake.open(pr);
    }

    fn advance(&self, by: Duration) {
        self.clock.advance(by);
    }

    fn lease_ttl(&self) -> Duration {
        TTL
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn github_source_passes_the_suite() {
    let h = GithubHarness {
        fake: FakeGithub::start().await,
        clock: ManualClock::default(),
        dir: tempfile::tempdir().unwrap(),
        consumers: Mutex::default(),
        repos: Mutex::default(),
    };
    // History is GitHub's statuses: a tested head is re-built only by re-checks, which
    // `a_recheck_comes_after_untested_heads_and_keeps_red_red` covers.
    let caps = Capabilities {
        ordering: true,
        history: false,
    };
    run_all(&h, caps).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unchanged_round_is_one_conditional_request_and_writes_nothing() {
    let fake = FakeGithub::start().await;
    let dir = tempfile::tempdir().unwrap();
    for i in 0..5 {
        fake.open(NewPull::new("acme/widget", &sha_of(&format!("h{i}"))));
    }
    let s = one_repo(&fake, dir.path(), &["build/linux", "build/windows"]).await;
    let done = build_all(&s, &ok()).await;
    assert_eq!(done.len(), 10);
    // Each head: pending once, then success, per check.
    let trail = fake.statuses("acme/widget", &sha_of("h0"));
    assert_eq!(trail.len(), 4, "{trail:?}");
    assert!(trail
        .iter()
        .any(|(c, st, d)| c == "build/linux" && st == "pending" && d == "build started"));
    assert!(trail
        .iter()
        .any(|(c, st, _)| c == "build/linux" && st == "success"));
    let bodies: Vec<serde_json::Value> = fake
        .requests()
        .await
        .iter()
        .filter(|r| r.method.as_str() == "POST")
        .map(|r| serde_json::from_slice(&r.body).unwrap())
        .collect();
    let success = bodies
        .iter()
        .find(|b| b["state"] == "success" && b["context"] == "build/windows")
        .expect("a success status");
    assert_eq!(success["description"], "all tests passed");
    assert!(
        success["target_url"]
            .as_str()
            .unwrap()
            .starts_with("https://ci.example.org/acme/widget/"),
        "{success}"
    );

    fake.reset_requests().await;
    let before = s.stats();
    assert_eq!(s.poll().await.unwrap(), 0);
    assert!(s.next(&JobFilter::any()).await.unwrap().is_none());
    let reqs = fake.requests().await;
    assert_eq!(
        reqs.len(),
        2,
        "two rounds (poll and next), one request each"
    );
    for r in &reqs {
        assert_eq!(r.method.as_str(), "GET");
        assert!(r.url.path().ends_with("/pulls"), "{}", r.url);
        assert!(
            r.headers.get("if-none-match").is_some(),
            "not conditional: {}",
            r.url
        );
    }
    let after = s.stats();
    assert_eq!(after.requests - before.requests, 2);
    assert_eq!(after.not_modified - before.not_modified, 2);
    assert_eq!(after.status_writes, before.status_writes);

    // A restarted agent reads through its saved cache, and its queue knows every head:
    // one request, a 304.
    let again = one_repo(&fake, dir.path(), &["build/linux", "build/windows"]).await;
    fake.reset_requests().await;
    assert_eq!(again.poll().await.unwrap(), 0);
    let st = again.stats();
    assert_eq!((st.requests, st.not_modified), (1, 1), "{st:?}");
    assert_eq!(st.status_writes, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_are_followed_and_each_is_conditional() {
    let fake = FakeGithub::start().await;
    fake.cap_pages(2);
    let dir = tempfile::tempdir().unwrap();
    for i in 0..5 {
        fake.open(NewPull::new("acme/widget", &sha_of(&format!("p{i}"))));
    }
    let s = one_repo(&fake, dir.path(), &["build"]).await;
    assert_eq!(s.poll().await.unwrap(), 5);
    let pages = |reqs: &[wiremock::Request]| {
        reqs.iter()
            .filter(|r| r.url.path().ends_with("/pulls"))
            .map(|r| {
                (
                    r.url
                        .query_pairs()
                        .find(|(k, _)| k == "page")
                        .map(|(_, v)| v.into_owned()),
                    r.headers.get("if-none-match").is_some(),
                )
            })
            .collect::<Vec<_>>()
    };
    let first = pages(&fake.requests().await);
    assert_eq!(
        first,
        [
            (None, false),
            (Some("2".into()), false),
            (Some("3".into()), false)
        ]
    );
    fake.reset_requests().await;
    assert_eq!(s.poll().await.unwrap(), 0);
    let second = pages(&fake.requests().await);
    assert_eq!(
        second,
        [
            (None, true),
            (Some("2".into()), true),
            (Some("3".into()), true)
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limits_are_waited_out_not_spun_on() {
    let fake = FakeGithub::start().await;
    let dir = tempfile::tempdir().unwrap();
    fake.open(NewPull::new("acme/widget", &sha_of("r")));
    let s = one_repo(&fake, dir.path(), &["build"]).await;

    // Secondary limit: 403 with retry-after: 1, then one more request.
    fake.refuse_next(Refusal::Secondary { retry_after: 1 });
    let t = Instant::now();
    assert_eq!(s.poll().await.unwrap(), 1);
    assert!(
        t.elapsed() >= Duration::from_secs(1),
        "did not wait: {:?}",
        t.elapsed()
    );
    let lists = fake
        .requests()
        .await
        .iter()
        .filter(|r| r.url.path().ends_with("/pulls"))
        .count();
    assert_eq!(lists, 2, "one refused request and one retry");
    assert_eq!(s.stats().rate_limit_waits, 1);

    // Primary limit spent: nothing is sent before the reset.
    fake.reset_requests().await;
    fake.refuse_next(Refusal::Primary { reset_in: 1 });
    let t = Instant::now();
    s.poll().await.unwrap();
    assert!(t.elapsed() >= Duration::from_secs(1));
    assert_eq!(fake.requests().await.len(), 2);

    // A reset further away than the source waits is an error, and `next` meanwhile hands
    // out queued jobs without sending anything.
    // A source that waits out rate limits of at most 5 s.
    let impatient_source = |name: &str| {
        GithubPrSource::builder(dir.path().join(name))
            .api_url(fake.url())
            .poll_interval(Duration::ZERO)
            .max_rate_limit_wait(Duration::from_secs(5))
            .repository(GithubRepo::new("acme/widget", ["build"]).unwrap())
            .build()
            .unwrap()
    };
    let impatient = impatient_source("impatient");
    fake.refuse_next(Refusal::Primary { reset_in: 3600 });
    let t = Instant::now();
    let e = impatient.poll().await.unwrap_err();
    assert!(t.elapsed() < Duration::from_secs(5));
    assert_eq!(
        e.api_class(),
        Some(hgauto_core::ApiErrorClass::Throttled),
        "{e}"
    );
    fake.reset_requests().await;
    assert!(impatient.next(&JobFilter::any()).await.unwrap().is_none());
    assert!(
        fake.requests().await.is_empty(),
        "polled while rate limited"
    );

    // An absurd retry-after (past what SystemTime can hold) is a wait too long, not a panic.
    let absurd = impatient_source("absurd");
    fake.refuse_next(Refusal::Secondary {
        retry_after: 9_999_999_999_999_999_999,
    });
    let e = absurd.poll().await.unwrap_err();
    assert_eq!(
        e.api_class(),
        Some(hgauto_core::ApiErrorClass::Throttled),
        "{e}"
    );
}

/// A round that fails halfway (here a status read) is done again by the next round,
/// even though the listing has not changed since.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_round_that_failed_halfway_is_done_again() {
    let fake = FakeGithub::start().await;
    let dir = tempfile::tempdir().unwrap();
    fake.open(NewPull::new("acme/widget", &sha_of("one")));
    fake.open(NewPull::new("acme/widget", &sha_of("two")));
    let s = one_repo(&fake, dir.path(), &["build"]).await;
    // The listing and the first head's status pass; the second head's status is a 404.
    fake.refuse_next(Refusal::Pass);
    fake.refuse_next(Refusal::Pass);
    fake.refuse_next(Refusal::Status(404));
    let e = s.poll().await.unwrap_err();
    assert!(e.is_not_found(), "{e}");
    assert_eq!(
        s.poll().await.unwrap(),
        1,
        "the second head, on a 304 listing"
    );
    let mut heads = Vec::new();
    while let Some(j) = s.next(&JobFilter::any()).await.unwrap() {
        heads.push(j.revision.clone().unwrap());
        s.report(&j, &ok()).await.unwrap();
    }
    heads.sort();
    let mut want = vec![sha_of("one"), sha_of("two")];
    want.sort();
    assert_eq!(heads, want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_token_is_sent_and_never_shown() {
    use std::os::unix::fs::PermissionsExt;
    let fake = FakeGithub::start().await;
    let token = "ghp_hgautoTestToken0123456789abcdefABCD";
    fake.require_token(token);
    fake.open(NewPull::new("acme/widget", &sha_of("t")));
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("token");
    std::fs::write(&file, format!("{token}\n")).unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let repo = || GithubRepo::new("acme/widget", ["build"]).unwrap();
    let e = builder(&fake, &dir.path().join("s"))
        .token_file(&file)
        .build()
        .unwrap_err();
    assert!(e.to_string().contains("chmod 600"), "{e}");
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let s = builder(&fake, &dir.path().join("s"))
        .token_file(&file)
        .repository(repo())
        .build()
        .unwrap();
    let j = s.next(&JobFilter::any()).await.unwrap().expect("a job");
    s.report(&j, &ok()).await.unwrap();
    assert!(!format!("{s:?}").contains(token));

    let wrong = builder(&fake, &dir.path().join("w"))
        .token(hgauto_core::redact::SecretString::new(
            "ghp_wrong_token_value",
        ))
        .repository(repo())
        .build()
        .unwrap();
    let e = wrong.poll().await.unwrap_err();
    assert_eq!(
        e.api_class(),
        Some(hgauto_core::ApiErrorClass::Denied),
        "{e}"
    );
    assert!(!e.to_string().contains("ghp_wrong_token_value"));
    assert!(!format!("{e:?}").contains("ghp_wrong_token_value"));

    let e = builder(&fake, &dir.path().join("e"))
        .token_from_env("HGAUTO_TEST_UNSET_GITHUB_TOKEN")
        .build()
        .unwrap_err();
    assert!(
        e.to_string().contains("HGAUTO_TEST_UNSET_GITHUB_TOKEN"),
        "{e}"
    );
    let e = GithubPrSource::builder(dir.path().join("h"))
        .api_url("http://github.example.com/api")
        .build()
        .unwrap_err();
    assert!(matches!(e, Error::InvalidInput { .. }), "{e}");
    // A token with a control character is an error that does not show it, not a silent
    // fall-back to unauthenticated requests.
    let e = GithubPrSource::builder(dir.path().join("h"))
        .token(hgauto_core::redact::SecretString::new("ghp_abc\ndef"))
        .repository(GithubRepo::new("acme/widget", ["build"]).unwrap())
        .build()
        .unwrap_err();
    assert!(
        matches!(e, Error::InvalidInput { .. })
            && e.to_string().contains("token")
            && !e.to_string().contains("ghp_abc"),
        "{e}"
    );
    assert!(GithubRepo::new("acme/../x", ["b"]).is_err());
    assert!(GithubRepo::new("acme", ["b"]).is_err());
}
