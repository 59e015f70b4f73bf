//! Builder agents as real processes over one directory queue, claims mode: 200 jobs, four
//! agents, one SIGKILLed in the middle of a build (its job is redone by another once the
//! lease runs out), and SIGTERM ends the others cleanly (exit 0, state "stopped").

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hgauto_agent::{Agent, AgentContext};
use hgauto_core::{DirJobSource, Job, JobOutcome};

const QUEUE: &str = "HGAUTO_TEST_AGENT_QUEUE";
const STATE: &str = "HGAUTO_TEST_AGENT_STATE";
const SLOW: &str = "HGAUTO_TEST_AGENT_SLOW";
const TTL: Duration = Duration::from_secs(2);

/// Run by the test below in child processes: one agent until SIGTERM. Builds take 5 ms,
/// or 30 s for the job named by SLOW (so the test can kill its holder mid-build).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "run by four_agent_processes_build_every_job_once_despite_a_sigkill"]
async fn agent_process() {
    let (Some(queue), Some(state)) = (std::env::var_os(QUEUE), std::env::var_os(STATE)) else {
        return;
    };
    let slow = std::env::var(SLOW).unwrap_or_default();
    let source = Arc::new(DirJobSource::new(&queue).unwrap().with_lease_ttl(TTL));
    let agent = Agent::builder(source, PathBuf::from(state))
        .build(move |job: Job, _ctx: AgentContext| {
            let ms = if job.id == slow { 30_000 } else { 5 };
            async move {
                tokio::time::sleep(Duration::from_millis(ms)).await;
                Ok(JobOutcome::Succeeded {
                    summary: format!("attempt {}", job.attempt),
                })
            }
        })
        .build_agent()
        .unwrap();
    agent.run_until_signal().await.unwrap();
}

fn spawn(queue: &Path, base: &Path, slow: &str) -> Child {
    std::fs::create_dir_all(base.join("config")).unwrap();
    std::fs::write(base.join("config/min-loop-seconds"), "0.05").unwrap();
    Command::new(std::env::current_exe().unwrap())
        .args(["--ignored", "--exact", "agent_process", "--test-threads=1"])
        .env(QUEUE, queue)
        .env(STATE, base.join("state"))
        .env(SLOW, slow)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

fn status(base: &Path) -> serde_json::Value {
    std::fs::read(base.join("state/status.json"))
        .ok()
        .and_then(|d| serde_json::from_slice(&d).ok())
        .unwrap_or(serde_json::Value::Null)
}

fn wait_for(what: &str, limit: Duration, mut f: impl FnMut() -> bool) {
    let t = Instant::now();
    while !f() {
        assert!(t.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn four_agent_processes_build_every_job_once_despite_a_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let queue = dir.path().join("q");
    let q = DirJobSource::new(&queue).unwrap();
    for i in 0..200 {
        q.enqueue(Job::new(format!("j{i:03}"), "build").with_revision(format!("r{i}")))
            .unwrap();
    }
    // The victim gets the slow job: it is the only agent until it has taken it.
    let victim_base = dir.path().join("victim");
    let mut victim = spawn(&queue, &victim_base, "j000");
    wait_for("the victim to take j000", Duration::from_secs(30), || {
        status(&victim_base)["current"]["id"] == "j000"
    });
    let bases: Vec<PathBuf> = (0..3)
        .map(|i| dir.path().join(format!("agent{i}")))
        .collect();
    let mut others: Vec<Child> = bases.iter().map(|b| spawn(&queue, b, "")).collect();
    std::thread::sleep(Duration::from_millis(200));
    let killed_at = Instant::now();
    victim.kill().unwrap();
    victim.wait().unwrap();

    wait_for("all 200 jobs reported", Duration::from_secs(60), || {
        q.outcomes().map(|o| o.len() == 200).unwrap_or(false)
    });
    let outcomes = q.outcomes().unwrap();
    assert!(outcomes.values().all(|o| o.status() == "succeeded"));
    // The killed holder's job was redone as its second attempt, after the lease ran out.
    assert_eq!(
        outcomes["j000"],
        JobOutcome::Succeeded {
            summary: "attempt 2".into()
        }
    );
    assert!(killed_at.elapsed() >= Duration::from_millis(500));
    for child in &others {
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    }
    for (child, b) in others.iter_mut().zip(&bases) {
        let code = child.wait().unwrap();
        assert!(code.success(), "an agent exited with {code:?} on SIGTERM");
        assert_eq!(status(b)["state"], "stopped");
    }
    // Every job was built once by the survivors (j000 once by a survivor too). Counted
    // from the final status files: an agent writes its status after the report, so the
    // queue can show all 200 outcomes before the last count lands.
    let mut built = 0;
    for b in &bases {
        built += status(b)["jobs"]["succeeded"].as_u64().unwrap_or(0);
    }
    assert_eq!(built, 200, "each job reported exactly once");
}
