//! Side-by-side benchmark of the directory job queue: 10,000 jobs through `next` +
//! `report` by 4 consumer processes, hgauto's `DirJobSource` against the same protocol in
//! Python (`benches/job_queue.py`: flock, listing, rename).
//!
//! ```text
//! cargo bench --no-default-features --bench job_queue       # HGAUTO_BENCH_JOBS to change the count
//! ```
//!
//! Each side gets a fresh queue on /dev/shm (when it exists, so the disk does not decide),
//! filled before the clock starts. The clock runs from starting the 4 consumers to the last
//! one's exit. Median of 3 runs.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use hgauto_core::{DirJobSource, Job, JobFilter, JobOutcome, JobSource};

const CONSUMERS: usize = 4;
const RUNS: usize = 3;
const CHILD: &str = "HGAUTO_BENCH_QUEUE_CHILD";

fn median(mut xs: Vec<Duration>) -> Duration {
    xs.sort();
    xs[xs.len() / 2]
}

/// The hgauto consumer: takes and reports jobs until the queue is empty.
fn consume(root: &Path) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let n = rt.block_on(async {
        let q = DirJobSource::new(root).unwrap();
        let ok = JobOutcome::Succeeded {
            summary: "ok".into(),
        };
        let mut n = 0;
        while let Some(job) = q.next(&JobFilter::any()).await.unwrap() {
            q.report(&job, &ok).await.unwrap();
            n += 1;
        }
        n
    });
    println!("{n}");
}

fn fill(root: &Path, jobs: usize) {
    let q = DirJobSource::new(root).unwrap();
    for i in 0..jobs {
        q.enqueue(Job::new(format!("job-{i:06}"), "build").with_revision(format!("{i:040x}")))
            .unwrap();
    }
}

/// Runs `consumers` commands at once; returns the wall time and the jobs each took.
fn race(make: impl Fn() -> Command) -> (Duration, usize) {
    let t = Instant::now();
    let children: Vec<_> = (0..CONSUMERS)
        .map(|_| make().stdout(std::process::Stdio::piped()).spawn().unwrap())
        .collect();
    let mut total = 0;
    for c in children {
        let out = c.wait_with_output().unwrap();
        assert!(out.status.success());
        total += String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse::<usize>()
            .unwrap();
    }
    (t.elapsed(), total)
}

fn main() {
    if let Some(root) = std::env::var_os(CHILD) {
        return consume(Path::new(&root));
    }
    let jobs: usize = std::env::var("HGAUTO_BENCH_JOBS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let base = if Path::new("/dev/shm").is_dir() {
        tempfile::tempdir_in("/dev/shm").unwrap()
    } else {
        tempfile::tempdir().unwrap()
    };
    let me = std::env::current_exe().unwrap();
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../benches/job_queue.py");
    let (mut ours, mut peer) = (Vec::new(), Vec::new());
    for run in 0..RUNS {
        let root = base.path().join(format!("ours-{run}"));
        fill(&root, jobs);
        let (t, n) = race(|| {
            let mut c = Command::new(&me);
            c.env(CHILD, &root);
            c
        });
        assert_eq!(n, jobs);
        assert_eq!(
            DirJobSource::new(&root).unwrap().outcomes().unwrap().len(),
            jobs
        );
        ours.push(t);

        let root = base.path().join(format!("peer-{run}"));
        fill(&root, jobs);
        let (t, n) = race(|| {
            let mut c = Command::new("python3");
            c.arg(&script).arg(&root);
            c
        });
        assert_eq!(n, jobs);
        peer.push(t);
    }
    let (o, p) = (median(ours), median(peer));
    println!("{jobs} jobs, {CONSUMERS} consumer processes, median of {RUNS}");
    println!(
        "hgauto DirJobSource {:>8.0} jobs/s ({:.2} s)   python loop {:>8.0} jobs/s ({:.2} s)   speed-up {:.1}x",
        jobs as f64 / o.as_secs_f64(),
        o.as_secs_f64(),
        jobs as f64 / p.as_secs_f64(),
        p.as_secs_f64(),
        p.as_secs_f64() / o.as_secs_f64()
    );
}
