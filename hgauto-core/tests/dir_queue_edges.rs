//! The directory queue against hostile entries in a real directory (a FIFO, a 1 GB sparse
//! file, a symlink to /dev/zero) and against a crash between each pair of steps of
//! `enqueue` and `report`, reproduced by leaving the files as the crash would.

use std::path::Path;
use std::time::Duration;

use hgauto_core::{DirJobSource, Job, JobFilter, JobOutcome, JobSource};

fn ok() -> JobOutcome {
    JobOutcome::Succeeded {
        summary: "ok".into(),
    }
}

fn failed_reasons(root: &Path) -> Vec<String> {
    let mut out: Vec<String> = std::fs::read_dir(root.join("failed"))
        .unwrap()
        .filter_map(|e| {
            let p = e.unwrap().path();
            p.to_string_lossy()
                .ends_with(".reason")
                .then(|| std::fs::read_to_string(p).unwrap())
        })
        .collect();
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_entries_are_quarantined_at_once_and_never_wedge_a_consumer() {
    let dir = tempfile::tempdir().unwrap();
    let q = DirJobSource::new(dir.path()).unwrap();
    let queue = dir.path().join("queue");
    // Sorted first, so each is met before the real job.
    let fifo = queue.join("0~zz.json");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
    let sparse = std::fs::File::create(queue.join("1~big.json")).unwrap();
    sparse.set_len(1 << 30).unwrap();
    std::os::unix::fs::symlink("/dev/zero", queue.join("1~zero.json")).unwrap();
    q.enqueue(Job::new("real", "build")).unwrap();

    // The whole scan is bounded: a wedged read would hang here until the test's timeout.
    let job = tokio::time::timeout(Duration::from_secs(60), q.next(&JobFilter::default()))
        .await
        .expect("next() returned")
        .unwrap()
        .expect("the real job");
    assert_eq!(job.id, "real");
    for name in ["0~zz.json", "1~big.json", "1~zero.json"] {
        assert!(
            !queue.join(name).exists() && std::fs::symlink_metadata(queue.join(name)).is_err(),
            "{name} still queued"
        );
        assert!(
            std::fs::symlink_metadata(dir.path().join("failed").join(name)).is_ok(),
            "{name} not quarantined"
        );
    }
    let reasons = failed_reasons(dir.path()).join("\n");
    assert!(reasons.contains("not a regular file"), "{reasons}");
    assert!(reasons.contains("cap"), "{reasons}");
    assert!(reasons.contains("symbolic link"), "{reasons}");
}

/// `enqueue`: file, then id marker. A crash before the file lands loses nothing (the job
/// can be queued again); a crash after it, before the marker, leaves a job that runs once.
#[tokio::test]
async fn an_enqueue_cut_short_never_loses_the_job() {
    let dir = tempfile::tempdir().unwrap();
    let q = DirJobSource::new(dir.path()).unwrap();
    // Crash before anything: nothing is on disk, and enqueueing again works.
    assert!(q.enqueue(Job::new("a", "build")).unwrap());
    // Crash after the file, before the marker: remove the marker as the crash would have
    // left it.
    std::fs::remove_file(dir.path().join("ids/a")).unwrap();
    let job = q
        .next(&JobFilter::default())
        .await
        .unwrap()
        .expect("the job runs");
    assert_eq!(job.id, "a");
    // Its id is marked by the hand-out: it is not queued a second time.
    assert!(!q.enqueue(Job::new("a", "build")).unwrap());
    q.report(&job, &ok()).await.unwrap();
    assert!(q.next(&JobFilter::default()).await.unwrap().is_none());
    // A full disk when the file is written: the error says so and the id is not taken.
    let ro = DirJobSource::new(dir.path().join("ro")).unwrap();
    std::fs::remove_dir(dir.path().join("ro/queue")).unwrap();
    std::fs::write(dir.path().join("ro/queue"), "not a directory").unwrap();
    assert!(ro.enqueue(Job::new("b", "build")).is_err());
    assert!(!ro.has_job("b"));
}

/// `report`: done/, history/, then the queue file and the claim go. A report cut short
/// after done/ never hands the job out again, and re-reporting it is not a lost lease.
#[tokio::test]
async fn a_report_cut_short_never_runs_the_job_again() {
    for crash_after in ["done", "history", "queue file"] {
        let dir = tempfile::tempdir().unwrap();
        let q = DirJobSource::new(dir.path()).unwrap();
        q.enqueue(Job::new("a", "build")).unwrap();
        let queue_file = std::fs::read_dir(dir.path().join("queue"))
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .path();
        let saved = std::fs::read(&queue_file).unwrap();
        let job = q.next(&JobFilter::default()).await.unwrap().unwrap();
        let claim = dir.path().join("claims/a.json");
        let saved_claim = std::fs::read(&claim).unwrap();
        q.report(&job, &ok()).await.unwrap();
        // Put back what the crash would have left.
        match crash_after {
            "done" | "history" => {
                std::fs::write(&queue_file, &saved).unwrap();
                std::fs::write(&claim, &saved_claim).unwrap();
            }
            _ => std::fs::write(&claim, &saved_claim).unwrap(),
        }
        let again = q.next(&JobFilter::default()).await.unwrap();
        assert!(
            again.is_none(),
            "crash after {crash_after}: handed out again: {again:?}"
        );
        assert!(
            !queue_file.exists(),
            "crash after {crash_after}: the leftover stays"
        );
        // The same report again is idempotent.
        q.report(&job, &ok()).await.unwrap();
        assert_eq!(q.outcomes().unwrap().len(), 1);
    }
}
