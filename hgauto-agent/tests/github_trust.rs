//! GithubPrSource's rules on a fake GitHub: untrusted authors and drafts wait, re-checks come
//! after untested heads, closed and superseded heads are not built, and a malformed payload is
//! quarantined.

use hgauto_testkit::support;

use std::sync::Arc;
use std::time::Duration;

use hgauto_agent::github::{GithubRepo, TrustRules};
use hgauto_core::clock::ManualClock;
use hgauto_core::{JobFilter, JobOutcome, JobSource};
use support::fake_github::{sha_of, FakeGithub, NewPull};

mod common;
use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn untrusted_authors_wait_for_an_approval_and_drafts_wait() {
    let fake = FakeGithub::start().await;
    let dir = tempfile::tempdir().unwrap();
    let head = sha_of("outsider");
    let n = fake.open(NewPull::by_outsider("acme/widget", &head));
    let mut draft = NewPull::new("acme/widget", &sha_of("draft"));
    draft.draft = true;
    fake.open(draft);
    let mut wip = NewPull::new("acme/widget", &sha_of("wip"));
    wip.title = "[WIP] half done".into();
    fake.open(wip);
    let mut friend = NewPull::new("acme/widget", &sha_of("friend"));
    friend.author = "friend".into();
    friend.association = "NONE".into();
    fake.open(friend);

    let mut trust = TrustRules::default();
    trust.users.insert("friend".into());
    let s = builder(&fake, dir.path())
        .repository(GithubRepo::new("acme/widget", ["build", "lint"]).unwrap())
        .trust(trust)
        .build()
        .unwrap();
    assert_eq!(
        s.poll().await.unwrap(),
        2,
        "only the trusted user's pull request"
    );
    let approval: Vec<_> = fake.statuses("acme/widget", &head);
    assert_eq!(approval.len(), 2, "{approval:?}");
    assert!(approval
        .iter()
        .all(|(_, st, d)| st == "pending" && d.starts_with("approval needed")));
    assert!(fake.statuses("acme/widget", &sha_of("draft")).is_empty());
    assert!(fake.statuses("acme/widget", &sha_of("wip")).is_empty());

    // Another change to the list: the outsider gets no second "approval needed".
    fake.open(NewPull::new("acme/widget", &sha_of("another")));
    s.poll().await.unwrap();
    assert_eq!(fake.statuses("acme/widget", &head).len(), 2);

    // An approval by someone untrusted changes nothing; a member's approval of the head
    // (which moves the pull request's updated_at) lets it build, and pending replaces the
    // approval request.
    fake.review("acme/widget", n, "stranger2", "NONE", "APPROVED", &head);
    fake.edit("acme/widget", n, |_| {});
    assert_eq!(s.poll().await.unwrap(), 0);
    fake.review("acme/widget", n, "maintainer", "MEMBER", "APPROVED", &head);
    fake.edit("acme/widget", n, |_| {});
    assert_eq!(s.poll().await.unwrap(), 2);
    let f = JobFilter::any();
    let mut built = Vec::new();
    while let Some(j) = s.next(&f).await.unwrap() {
        s.started(&j).await.unwrap();
        s.report(&j, &ok()).await.unwrap();
        built.push(j.attributes["author"].clone());
    }
    built.sort();
    built.dedup();
    assert_eq!(built, ["friend", "octocat", "stranger"]);
    let trail = fake.statuses("acme/widget", &head);
    assert_eq!(
        trail
            .iter()
            .filter(|(c, st, _)| c == "build" && st == "pending")
            .count(),
        2,
        "approval needed, then build started: {trail:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recheck_comes_after_untested_heads_and_keeps_red_red() {
    let fake = FakeGithub::start().await;
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(1_700_000_000_000);
    let (red, green) = (sha_of("red"), sha_of("green"));
    fake.open(NewPull::new("acme/widget", &red));
    fake.open(NewPull::new("acme/widget", &green));
    let s = builder(&fake, dir.path())
        .repository(GithubRepo::new("acme/widget", ["build"]).unwrap())
        .rechecks(Duration::from_secs(600))
        .clock(Arc::new(clock.clone()))
        .build()
        .unwrap();
    let f = JobFilter::any();
    // First builds: red fails, green passes. Re-checks are queued for this period at
    // once, after any untested head.
    while let Some(j) = s.next(&f).await.unwrap() {
        if j.id.contains("~recheck") {
            s.release(&j).await.unwrap();
            break;
        }
        s.started(&j).await.unwrap();
        let outcome = if j.revision.as_deref() == Some(red.as_str()) {
            failed()
        } else {
            ok()
        };
        s.report(&j, &outcome).await.unwrap();
    }
    clock.advance(Duration::from_secs(600));
    let fresh = sha_of("fresh");
    let mut urgent = NewPull::new("acme/widget", &fresh);
    urgent.created_at = "2026-06-01T00:00:00Z".into();
    fake.open(urgent);
    let writes_before = s.stats().status_writes;
    let mut order = Vec::new();
    while let Some(j) = s.next(&f).await.unwrap() {
        let rev = j.revision.clone().unwrap();
        let name = if rev == red {
            "red"
        } else if rev == green {
            "green"
        } else {
            "fresh"
        };
        if order.contains(&name) {
            // An earlier period's re-check, released above.
            s.report(
                &j,
                &JobOutcome::Skipped {
                    reason: "done".into(),
                },
            )
            .await
            .unwrap();
            continue;
        }
        order.push(name);
        if name == "red" {
            assert_eq!(
                j.previous,
                Some(failed()),
                "a re-check carries the last outcome"
            );
        }
        s.started(&j).await.unwrap();
        let outcome = if name == "red" { failed() } else { ok() };
        s.report(&j, &outcome).await.unwrap();
    }
    assert_eq!(
        order,
        ["fresh", "red", "green"],
        "untested, then failed, then passed"
    );
    // fresh: pending + success. red: no pending over red, same failure again: skipped.
    // green: a green re-check is not re-reported.
    assert_eq!(s.stats().status_writes - writes_before, 2);
    let red_trail = fake.statuses("acme/widget", &red);
    assert_eq!(
        red_trail
            .iter()
            .filter(|(_, st, _)| st == "pending")
            .count(),
        1,
        "{red_trail:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closed_and_superseded_heads_are_not_built() {
    let fake = FakeGithub::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (old, new) = (sha_of("old"), sha_of("new"));
    let moving = fake.open(NewPull::new("acme/widget", &old));
    let closing = fake.open(NewPull::new("acme/widget", &sha_of("closing")));
    let s = one_repo(&fake, dir.path(), &["build"]).await;
    assert_eq!(s.poll().await.unwrap(), 2);
    fake.edit("acme/widget", moving, |pr| {
        pr["head"]["sha"] = new.clone().into()
    });
    fake.close("acme/widget", closing);
    let mut heads = Vec::new();
    while let Some(j) = s.next(&JobFilter::any()).await.unwrap() {
        heads.push(j.revision.clone().unwrap());
        s.report(&j, &ok()).await.unwrap();
    }
    assert_eq!(heads, [new]);
    let skipped: Vec<_> = s
        .queue()
        .outcomes()
        .unwrap()
        .into_values()
        .filter(|o| matches!(o, JobOutcome::Skipped { .. }))
        .collect();
    assert_eq!(skipped.len(), 2, "{skipped:?}");
    assert!(
        fake.statuses("acme/widget", &old).is_empty(),
        "nothing written for a dropped head"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_payload_missing_fields_is_quarantined_and_the_round_goes_on() {
    let fake = FakeGithub::start().await;
    let dir = tempfile::tempdir().unwrap();
    fake.push_raw(
        "acme/widget",
        serde_json::json!({"number": 99, "title": "broken", "user": {"login": "x"},
                           "author_association": "MEMBER", "head": {"ref": "topic"},
                           "base": {"ref": "main"}, "created_at": "2026-01-01T00:00:00Z",
                           "updated_at": "2026-01-01T00:00:00Z", "html_url": "https://github.com/acme/widget/pull/99"}),
    );
    fake.open(NewPull::new("acme/widget", &sha_of("good")));
    let s = one_repo(&fake, dir.path(), &["build"]).await;
    assert_eq!(s.poll().await.unwrap(), 1);
    let failed_dir = dir.path().join("failed");
    let names: Vec<String> = std::fs::read_dir(&failed_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    let reason = names
        .iter()
        .find(|n| n.ends_with(".reason"))
        .expect("a reason file");
    let text = std::fs::read_to_string(failed_dir.join(reason)).unwrap();
    assert!(text.contains("sha"), "{text}");
    let payload = names
        .iter()
        .find(|n| n.ends_with(".json"))
        .expect("the payload");
    let kept: serde_json::Value =
        serde_json::from_slice(&std::fs::read(failed_dir.join(payload)).unwrap()).unwrap();
    assert_eq!(kept["number"], 99);
    // Not quarantined twice.
    fake.open(NewPull::new("acme/widget", &sha_of("good2")));
    assert_eq!(s.poll().await.unwrap(), 1);
    assert_eq!(std::fs::read_dir(&failed_dir).unwrap().count(), 2);
}
