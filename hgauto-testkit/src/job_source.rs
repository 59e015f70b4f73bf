//! The behaviour every [`JobSource`] must show, grouped by capability. Time is injected
//! through the harness, so lease expiry is tested without sleeping.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;

use hgauto_core::error::Error;
use hgauto_core::job::{Job, JobFilter, JobOutcome};
use hgauto_core::job_source::JobSource;

/// What a suite needs from a source under test: a way to add jobs, to open more consumers
/// of the same queue, and to move the source's clock.
#[async_trait]
pub trait Harness: Send + Sync {
    /// A consumer of the queue (a new one per call where the source allows it: another
    /// process's view, another connection).
    fn consumer(&self) -> Arc<dyn JobSource>;

    /// Adds `job` (id, check, revision, priority and creation time set by the suite).
    async fn enqueue(&self, job: Job);

    /// Moves the source's clock forward.
    fn advance(&self, by: Duration);

    /// The lease length the source was made with.
    fn lease_ttl(&self) -> Duration;
}

/// Which groups of checks a source supports.
#[derive(Debug, Clone, Copy)]
pub struct Capabilities {
    /// Jobs come out by priority, then age.
    pub ordering: bool,
    /// `previous` carries the last outcome of the same (check, revision).
    pub history: bool,
}

impl Default for Capabilities {
    fn default() -> Self {
        Capabilities {
            ordering: true,
            history: true,
        }
    }
}

impl Capabilities {
    /// Leases, filters and reports only: for sources that keep no order and no history
    /// (a queue service, branch heads).
    pub fn leases_only() -> Self {
        Capabilities {
            ordering: false,
            history: false,
        }
    }
}

/// Runs every check the capabilities allow.
pub async fn run_all(h: &dyn Harness, caps: Capabilities) {
    leases_hold_then_run_out(h).await;
    heartbeat_extends_the_lease(h).await;
    release_makes_the_job_available_at_once(h).await;
    report_is_final_and_idempotent(h).await;
    filters_leave_other_jobs_alone(h).await;
    concurrent_consumers_never_share_a_job(h).await;
    depth_counts_waiting_and_leased_jobs(h).await;
    if caps.ordering {
        priority_then_age(h).await;
    }
    if caps.history {
        previous_outcome_follows_the_build(h).await;
    }
}

fn tag(prefix: &str) -> String {
    format!("{prefix}-{:08x}", rand::random::<u32>())
}

fn ok() -> JobOutcome {
    JobOutcome::Succeeded {
        summary: "ok".into(),
    }
}

/// Takes jobs until the queue has none for this check, reporting each: a clean slate.
async fn drain(s: &dyn JobSource, check: &str) {
    let f = JobFilter {
        checks: vec![check.to_owned()],
        shard: None,
    };
    while let Some(j) = s.next(&f).await.expect("next") {
        s.report(&j, &ok()).await.expect("report");
    }
}

fn only(check: &str) -> JobFilter {
    JobFilter {
        checks: vec![check.to_owned()],
        shard: None,
    }
}

/// `depth` (where the source counts): exact counts follow every hand-out, report and lease
/// expiry, for the filter's jobs only; an estimate sees at least the jobs that wait.
pub async fn depth_counts_waiting_and_leased_jobs(h: &dyn Harness) {
    let s = h.consumer();
    let check = tag("depth");
    let Some(empty) = s.depth(&only(&check)).await.expect("depth") else {
        return; // the source does not count
    };
    for n in 0..3 {
        h.enqueue(Job::new(tag("job"), &check).with_revision(format!("r{n}")))
            .await;
    }
    h.enqueue(Job::new(tag("job"), tag("other")).with_revision("r"))
        .await;
    let name = s.name().to_owned();
    let depth = || async {
        s.depth(&only(&check))
            .await
            .expect("depth")
            .expect("counts")
    };
    let waiting = depth().await;
    if !waiting.exact {
        assert!(
            waiting.pending >= 3,
            "[{name}] estimate {waiting:?} misses waiting jobs"
        );
        drain(s.as_ref(), &check).await;
        return;
    }
    assert_eq!(
        empty.total(),
        0,
        "[{name}] a check nobody queued: {empty:?}"
    );
    assert_eq!(
        (waiting.pending, waiting.leased),
        (3, 0),
        "[{name}] queued: {waiting:?}"
    );
    let first = s.next(&only(&check)).await.expect("next").expect("a job");
    let second = s.next(&only(&check)).await.expect("next").expect("a job");
    let d = depth().await;
    assert_eq!((d.pending, d.leased), (1, 2), "[{name}] two leased: {d:?}");
    s.report(&first, &ok()).await.expect("report");
    let d = depth().await;
    assert_eq!(
        (d.pending, d.leased),
        (1, 1),
        "[{name}] one reported: {d:?}"
    );
    h.advance(h.lease_ttl() + Duration::from_secs(1));
    let d = depth().await;
    assert_eq!(
        (d.pending, d.leased),
        (2, 0),
        "[{name}] a lease ran out: {d:?}"
    );
    drop(second);
    drain(s.as_ref(), &check).await;
    assert_eq!(depth().await.total(), 0, "[{name}] drained");
}

/// A leased job goes to nobody else until its lease runs out; then it comes back with a
/// higher attempt, and the old holder's heartbeat fails with `LeaseLost`.
pub async fn leases_hold_then_run_out(h: &dyn Harness) {
    let check = tag("lease");
    h.enqueue(Job::new(tag("job"), &check).with_revision("r1"))
        .await;
    let (a, b) = (h.consumer(), h.consumer());
    let first = a.next(&only(&check)).await.unwrap().expect("a job");
    assert!(first.lease.is_some(), "[{}] no lease", a.name());
    assert_eq!(first.attempt, 1);
    assert!(
        b.next(&only(&check)).await.unwrap().is_none(),
        "[{}] leased job handed out twice",
        a.name()
    );
    h.advance(h.lease_ttl() + Duration::from_secs(1));
    let second = b
        .next(&only(&check))
        .await
        .unwrap()
        .expect("the job after expiry");
    assert_eq!(second.id, first.id);
    assert_eq!(second.attempt, 2, "[{}]", a.name());
    assert_ne!(second.lease, first.lease);
    let lost = a.heartbeat(&first).await;
    assert!(
        matches!(lost, Err(Error::LeaseLost { .. })),
        "[{}] {lost:?}",
        a.name()
    );
    assert!(
        a.report(&first, &ok()).await.is_err(),
        "[{}] a lost lease reported",
        a.name()
    );
    b.report(&second, &ok()).await.unwrap();
}

/// Heartbeats keep a lease alive past its first deadline.
pub async fn heartbeat_extends_the_lease(h: &dyn Harness) {
    let check = tag("heartbeat");
    h.enqueue(Job::new(tag("job"), &check)).await;
    let (a, b) = (h.consumer(), h.consumer());
    let job = a.next(&only(&check)).await.unwrap().expect("a job");
    for _ in 0..3 {
        h.advance(h.lease_ttl() / 2);
        let lease = a.heartbeat(&job).await.expect("heartbeat");
        assert!(lease.deadline_ms > job.lease.as_ref().unwrap().deadline_ms);
        assert!(
            b.next(&only(&check)).await.unwrap().is_none(),
            "[{}] a renewed job was handed out",
            a.name()
        );
    }
    a.report(&job, &ok()).await.unwrap();
}

/// A released job is handed out again at once, and the releaser's lease is gone.
pub async fn release_makes_the_job_available_at_once(h: &dyn Harness) {
    let check = tag("release");
    h.enqueue(Job::new(tag("job"), &check)).await;
    let (a, b) = (h.consumer(), h.consumer());
    let job = a.next(&only(&check)).await.unwrap().expect("a job");
    a.release(&job).await.expect("release");
    let again = b.next(&only(&check)).await.unwrap().expect("released job");
    assert_eq!(again.id, job.id);
    assert!(
        a.heartbeat(&job).await.is_err(),
        "[{}] released lease still alive",
        a.name()
    );
    b.report(&again, &ok()).await.unwrap();
}

/// A reported job is never handed out again, even after any lease would have run out;
/// reporting it again is harmless.
pub async fn report_is_final_and_idempotent(h: &dyn Harness) {
    let check = tag("report");
    h.enqueue(Job::new(tag("job"), &check)).await;
    let s = h.consumer();
    let job = s.next(&only(&check)).await.unwrap().expect("a job");
    s.started(&job).await.expect("started");
    s.report(&job, &ok()).await.expect("report");
    s.report(&job, &ok()).await.expect("report again");
    h.advance(h.lease_ttl() * 3);
    assert!(
        s.next(&only(&check)).await.unwrap().is_none(),
        "[{}] reported job came back",
        s.name()
    );
}

/// Jobs outside the filter are not handed out or leased: another consumer gets them.
pub async fn filters_leave_other_jobs_alone(h: &dyn Harness) {
    let (mine, theirs) = (tag("filter-mine"), tag("filter-theirs"));
    h.enqueue(Job::new(tag("job"), &theirs)).await;
    h.enqueue(Job::new(tag("job"), &mine)).await;
    let (a, b) = (h.consumer(), h.consumer());
    let got = a.next(&only(&mine)).await.unwrap().expect("my job");
    assert_eq!(got.check, mine);
    assert!(a.next(&only(&mine)).await.unwrap().is_none());
    let other = b
        .next(&only(&theirs))
        .await
        .unwrap()
        .expect("their job, not leased");
    assert_eq!(other.check, theirs);
    a.report(&got, &ok()).await.unwrap();
    b.report(&other, &ok()).await.unwrap();
    // Shards split one check's jobs between agents, each job to exactly one.
    let check = tag("shard");
    for i in 0..12 {
        h.enqueue(Job::new(tag("job"), &check).with_revision(format!("rev{i}")))
            .await;
    }
    let mut seen = HashSet::new();
    for index in 0..3 {
        let f = JobFilter {
            checks: vec![check.clone()],
            ..JobFilter::shard(index, 3)
        };
        while let Some(j) = a.next(&f).await.unwrap() {
            assert!(f.matches(&j));
            assert!(seen.insert(j.id.clone()), "[{}] {} twice", a.name(), j.id);
            a.report(&j, &ok()).await.unwrap();
        }
    }
    assert_eq!(seen.len(), 12, "[{}] shards missed jobs", a.name());
}

/// Eight tasks on separate consumers take 40 jobs at once: each job is handed out and
/// reported exactly once.
pub async fn concurrent_consumers_never_share_a_job(h: &dyn Harness) {
    let check = tag("concurrent");
    for _ in 0..40 {
        h.enqueue(Job::new(tag("job"), &check)).await;
    }
    let seen = Arc::new(Mutex::new(Vec::new()));
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let (s, seen, check) = (h.consumer(), seen.clone(), check.clone());
            tokio::spawn(async move {
                while let Some(j) = s.next(&only(&check)).await.expect("next") {
                    seen.lock().unwrap().push(j.id.clone());
                    s.report(&j, &ok()).await.expect("report");
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("consumer task");
    }
    let seen = seen.lock().unwrap().clone();
    let unique: HashSet<_> = seen.iter().collect();
    assert_eq!(seen.len(), 40, "jobs handed out: {}", seen.len());
    assert_eq!(unique.len(), 40, "a job went to two consumers");
    drain(h.consumer().as_ref(), &check).await;
}

/// Higher priority first, then older first. Jobs are told apart by what they carry
/// (priority, creation time a whole number of seconds apart), not by id, since a source
/// may name its jobs itself.
pub async fn priority_then_age(h: &dyn Harness) {
    let check = tag("order");
    let base = 1_600_000_000_000;
    for (created, priority) in [(3, 0), (1, 0), (2, 0), (4, 5)] {
        h.enqueue(
            Job::new(format!("{check}-{created}"), &check)
                .with_created_ms(base + created * 1000)
                .with_priority(priority),
        )
        .await;
    }
    let s = h.consumer();
    let mut order = Vec::new();
    while let Some(j) = s.next(&only(&check)).await.unwrap() {
        order.push((j.priority, j.created_ms.saturating_sub(base) / 1000));
        s.report(&j, &ok()).await.unwrap();
    }
    assert_eq!(order, [(5, 4), (0, 1), (0, 2), (0, 3)], "[{}]", s.name());
}

/// A later job for the same (check, revision) carries the last outcome.
pub async fn previous_outcome_follows_the_build(h: &dyn Harness) {
    let check = tag("history");
    h.enqueue(Job::new(tag("job"), &check).with_revision("abc"))
        .await;
    let s = h.consumer();
    let first = s.next(&only(&check)).await.unwrap().expect("a job");
    assert_eq!(first.previous, None);
    let failed = JobOutcome::Failed {
        summary: "tests failed".into(),
        retryable: false,
    };
    s.report(&first, &failed).await.unwrap();
    h.enqueue(Job::new(tag("recheck"), &check).with_revision("abc"))
        .await;
    let recheck = s.next(&only(&check)).await.unwrap().expect("the re-check");
    assert_eq!(recheck.previous, Some(failed), "[{}]", s.name());
    s.report(&recheck, &ok()).await.unwrap();
}
