//! The job source suite against ListJobSource and DirJobSource (time injected), and the
//! directory queue under real processes: four consumers drain 1,000 jobs, each reported
//! exactly once, and a job whose holder was SIGKILLed is redone by another after its lease.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use hgauto_core::clock::ManualClock;
use hgauto_core::{DirJobSource, Job, JobFilter, JobOutcome, JobSource, ListJobSource};
use hgauto_testkit::job_source::{run_all, Capabilities, Harness};

const TTL: Duration = Duration::from_secs(30);

struct ListHarness {
    clock: ManualClock,
    source: Arc<ListJobSource>,
}

#[async_trait]
impl Harness for ListHarness {
    fn consumer(&self) -> Arc<dyn JobSource> {
        self.source.clone()
    }
    async fn enqueue(&self, job: Job) {
        self.source.push(job);
    }
    fn advance(&self, by: Duration) {
        self.clock.advance(by);
    }
    fn lease_ttl(&self) -> Duration {
        TTL
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_source_passes_the_suite() {
    let clock = ManualClock::default();
    let source = Arc::new(
        ListJobSource::new([])
            .with_clock(Arc::new(clock.clone()))
            .with_lease_ttl(TTL),
    );
    run_all(&ListHarness { clock, source }, Capabilities::default()).await;
}

struct DirHarness {
    clock: ManualClock,
    root: PathBuf,
}

impl DirHarness {
    fn open(&self) -> DirJobSource {
        DirJobSource::new(&self.root)
            .unwrap()
            .with_clock(Arc::new(self.clock.clone()))
            .with_lease_ttl(TTL)
    }
}

#[async_trait]
impl Harness for DirHarness {
    /// Each consumer is its own `DirJobSource` on the directory, as another process is.
    fn consumer(&self) -> Arc<dyn JobSource> {
        Arc::new(self.open())
    }
    async fn enqueue(&self, job: Job) {
        assert!(self.open().enqueue(job).unwrap());
    }
    fn advance(&self, by: Duration) {
        self.clock.advance(by);
    }
    fn lease_ttl(&self) -> Duration {
        TTL
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dir_source_passes_the_suite() {
    let dir = tempfile::tempdir().unwrap();
    let h = DirHarness {
        clock: ManualClock::default(),
        root: dir.path().join("q"),
    };
    run_all(&h, Capabilities::default()).await;
}

/// A file dropped by hand is a job; a malformed one is quarantined with its reason once it
/// is old, and the queue goes on.
#[tokio::test]
async fn dropped_files_are_jobs_and_bad_ones_are_quarantined() {
    let dir = tempfile::tempdir().unwrap();
    let q = DirJobSource::new(dir.path()).unwrap();
    let drop_file = |name: &str, text: &str| {
        let tmp = dir.path().join(format!(".{name}"));
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, dir.path().join("queue").join(name)).unwrap();
    };
    drop_file(
        "by-hand.json",
        r#"{"id": "by-hand", "check": "build/linux", "revision": "abc"}"#,
    );
    drop_file("broken.json", "{ not json");
    drop_file("no-check.json", r#"{"id": "x"}"#);
    // Old enough to be quarantined rather than waited for.
    for name in ["broken.json", "no-check.json"] {
        let old = std::time::SystemTime::now() - Duration::from_secs(3600);
        let f = std::fs::File::options()
            .write(true)
            .open(dir.path().join("queue").join(name))
            .unwrap();
        f.set_modified(old).unwrap();
    }
    let job = q
        .next(&JobFilter::any())
        .await
        .unwrap()
        .expect("the dropped job");
    assert_eq!(job.id, "by-hand");
    assert_eq!(job.revision.as_deref(), Some("abc"));
    q.report(
        &job,
        &JobOutcome::Succeeded {
            summary: "ok".into(),
        },
    )
    .await
    .unwrap();
    assert!(q.next(&JobFilter::any()).await.unwrap().is_none());
    let failed = dir.path().join("failed");
    for name in ["broken.json", "no-check.json"] {
        assert!(failed.join(name).exists(), "{name} quarantined");
        let reason = std::fs::read_to_string(failed.join(format!("{name}.reason"))).unwrap();
        assert!(reason.contains("invalid"), "{reason}");
    }
    assert_eq!(q.outcomes().unwrap().len(), 1);
}

// --- Processes ------------------------------------------------------------------------

const ROOT: &str = "HGAUTO_TEST_QUEUE";
const LOG: &str = "HGAUTO_TEST_QUEUE_LOG";
const VICTIM: &str = "HGAUTO_TEST_QUEUE_VICTIM";

fn child(root: &Path, log: &Path, victim: bool) -> std::process::Child {
    let mut cmd = std::process::Command::new(std::env::current_exe().unwrap());
    cmd.args([
        "--ignored",
        "--exact",
        "queue_consumer_process",
        "--test-threads=1",
    ])
    .env(ROOT, root)
    .env(LOG, log)
    .stdout(std::process::Stdio::null());
    if victim {
        cmd.env(VICTIM, "1");
    }
    cmd.spawn().unwrap()
}

/// Run by the test below in child processes: takes jobs until the queue is empty (waiting
/// out leases held by others), reporting each, and logs the ids it reported. As the
/// victim, it takes one job, says which, and waits to be killed.
#[tokio::test]
#[ignore = "run by four_processes_drain_the_queue_and_redo_a_killed_holders_job"]
async fn queue_consumer_process() {
    let (Some(root), Some(log)) = (std::env::var_os(ROOT), std::env::var_os(LOG)) else {
        return;
    };
    let q = DirJobSource::new(&root)
        .unwrap()
        .with_lease_ttl(Duration::from_secs(2));
    let mut out = std::fs::File::create(&log).unwrap();
    if std::env::var_os(VICTIM).is_some() {
        let job = q.next(&JobFilter::any()).await.unwrap().unwrap();
        writeln!(out, "{}", job.id).unwrap();
        out.sync_all().unwrap();
        tokio::time::sleep(Duration::from_secs(600)).await;
        return;
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    let queue = Path::new(&root).join("queue");
    while Instant::now() < deadline {
        match q.next(&JobFilter::any()).await.unwrap() {
            Some(job) => {
                q.report(
                    &job,
                    &JobOutcome::Succeeded {
                        summary: format!("attempt {}", job.attempt),
                    },
                )
                .await
                .unwrap();
                writeln!(out, "{}", job.id).unwrap();
            }
            None if std::fs::read_dir(&queue).unwrap().next().is_none() => break,
            None => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_processes_drain_the_queue_and_redo_a_killed_holders_job() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("q");
    let q = DirJobSource::new(&root).unwrap();
    for i in 0..1000 {
        assert!(q
            .enqueue(Job::new(format!("job-{i:04}"), "build").with_revision(format!("r{i}")))
            .unwrap());
    }
    let victim_log = dir.path().join("victim.log");
    let mut victim = child(&root, &victim_log, true);
    let started = Instant::now();
    let taken = loop {
        let text = std::fs::read_to_string(&victim_log).unwrap_or_default();
        if let Some(id) = text.lines().next() {
            break id.to_owned();
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the victim took no job"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    victim.kill().unwrap();
    victim.wait().unwrap();

    let logs: Vec<PathBuf> = (0..4)
        .map(|i| dir.path().join(format!("c{i}.log")))
        .collect();
    let consumers: Vec<_> = logs.iter().map(|l| child(&root, l, false)).collect();
    for mut c in consumers {
        assert!(c.wait().unwrap().success(), "a consumer failed");
    }
    let mut reported: Vec<String> = logs
        .iter()
        .flat_map(|l| {
            std::fs::read_to_string(l)
                .unwrap()
                .lines()
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .collect();
    assert_eq!(reported.len(), 1000, "reports made");
    reported.sort();
    reported.dedup();
    assert_eq!(reported.len(), 1000, "a job was reported twice");
    let outcomes = q.outcomes().unwrap();
    assert_eq!(outcomes.len(), 1000);
    assert_eq!(
        outcomes[&taken],
        JobOutcome::Succeeded {
            summary: "attempt 2".into()
        },
        "the killed holder's job was redone after its lease"
    );
    let busy = logs
        .iter()
        .filter(|l| !std::fs::read_to_string(l).unwrap().is_empty())
        .count();
    assert!(busy >= 2, "only {busy} consumer(s) did any work");
}
