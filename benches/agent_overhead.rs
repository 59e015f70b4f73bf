//! What the builder agent adds per job on top of its source: a no-op build over a
//! directory queue, against the bare `next` + `report` loop over the same queue.
//!
//! ```text
//! cargo bench --no-default-features --bench agent_overhead      # HGAUTO_BENCH_JOBS to change the count
//! ```
//!
//! Both sides get a fresh queue on /dev/shm (when it exists), filled before the clock
//! starts, and one consumer. The agent's extra work per job: re-reading `config/`, a log
//! file, `status.json` and `metrics.prom` written twice (job started, job done), `started`.
//! Goal: under 1 ms per job. Medians of 3, interleaved.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hgauto_agent::{Agent, AgentContext, Iteration};
use hgauto_core::{DirJobSource, Job, JobFilter, JobOutcome, JobSource};

const RUNS: usize = 3;

fn scratch() -> tempfile::TempDir {
    let shm = Path::new("/dev/shm");
    if shm.is_dir() {
        tempfile::tempdir_in(shm).unwrap()
    } else {
        tempfile::tempdir().unwrap()
    }
}

fn fill(root: &Path, jobs: usize) -> DirJobSource {
    let q = DirJobSource::new(root).unwrap();
    for i in 0..jobs {
        q.enqueue(Job::new(format!("job-{i}"), "build").with_revision(format!("{i:040x}")))
            .unwrap();
    }
    q
}

async fn bare(root: PathBuf) -> Duration {
    let q = DirJobSource::new(root).unwrap();
    let t = Instant::now();
    while let Some(j) = q.next(&JobFilter::any()).await.unwrap() {
        q.started(&j).await.unwrap();
        q.report(
            &j,
            &JobOutcome::Succeeded {
                summary: "ok".into(),
            },
        )
        .await
        .unwrap();
    }
    t.elapsed()
}

async fn agent(root: PathBuf, state: PathBuf) -> Duration {
    let q = Arc::new(DirJobSource::new(root).unwrap());
    let agent = Agent::builder(q, state)
        .build(|_job: Job, _ctx: AgentContext| async move {
            Ok(JobOutcome::Succeeded {
                summary: "ok".into(),
            })
        })
        .build_agent()
        .unwrap();
    let t = Instant::now();
    while let Iteration::Built { .. } = agent.run_once().await.unwrap() {}
    t.elapsed()
}

fn median(mut xs: Vec<Duration>) -> Duration {
    xs.sort();
    xs[xs.len() / 2]
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let jobs: usize = std::env::var("HGAUTO_BENCH_JOBS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000);
    let (mut ours, mut base) = (Vec::new(), Vec::new());
    for _ in 0..RUNS {
        let dir = scratch();
        fill(&dir.path().join("q"), jobs);
        base.push(bare(dir.path().join("q")).await);
        let dir = scratch();
        fill(&dir.path().join("q"), jobs);
        ours.push(agent(dir.path().join("q"), dir.path().join("agent/state")).await);
    }
    let (ours, base) = (median(ours), median(base));
    let per_job = |d: Duration| d.as_secs_f64() * 1e6 / jobs as f64;
    println!("{jobs} jobs, one consumer, directory queue on /dev/shm, median of {RUNS}");
    println!(
        "bare next + started + report: {:.3} s ({:.0} µs per job)",
        base.as_secs_f64(),
        per_job(base)
    );
    println!(
        "agent, no-op build:          {:.3} s ({:.0} µs per job)",
        ours.as_secs_f64(),
        per_job(ours)
    );
    println!(
        "agent overhead: {:.0} µs per job (goal: under 1,000 µs)",
        per_job(ours) - per_job(base)
    );
}
