//! Agents at the edges, with real processes over a real directory queue: a source whose
//! heartbeats fail with a network error (the build stops at the lease's end, renewals back
//! off), private job logs without the lease token, job fields that would become options,
//! and a build printing 2 GB while the agent's memory stays bounded.

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hgauto_testkit::support;

use async_trait::async_trait;
use hgauto_agent::{Agent, CommandBuild, Iteration};
use hgauto_core::{
    DirJobSource, Error, Job, JobFilter, JobOutcome, JobSource, Lease, LocalProvider, MachineSpec,
    Result,
};

/// A directory queue whose heartbeats fail like a network that is down, and which
/// remembers the lease tokens it handed out.
#[derive(Debug)]
struct NetworkDown {
    inner: DirJobSource,
    heartbeats: AtomicU32,
    tokens: Mutex<Vec<String>>,
    fail_heartbeats: bool,
}

#[async_trait]
impl JobSource for NetworkDown {
    fn name(&self) -> &str {
        self.inner.name()
    }
    async fn next(&self, filter: &JobFilter) -> Result<Option<Job>> {
        let job = self.inner.next(filter).await?;
        if let Some(l) = job.as_ref().and_then(|j| j.lease.as_ref()) {
            self.tokens.lock().unwrap().push(l.token.clone());
        }
        Ok(job)
    }
    async fn heartbeat(&self, job: &Job) -> Result<Lease> {
        self.heartbeats.fetch_add(1, Ordering::SeqCst);
        if self.fail_heartbeats {
            return Err(Error::Backend {
                backend: "test".into(),
                message: "connection reset by peer".into(),
                retryable: true,
                source: None,
            });
        }
        self.inner.heartbeat(job).await
    }
    async fn report(&self, job: &Job, outcome: &JobOutcome) -> Result<()> {
        self.inner.report(job, outcome).await
    }
    async fn release(&self, job: &Job) -> Result<()> {
        self.inner.release(job).await
    }
}

struct World {
    dir: tempfile::TempDir,
    source: Arc<NetworkDown>,
}

fn world(ttl: Duration, fail_heartbeats: bool) -> World {
    let dir = tempfile::tempdir().unwrap();
    let inner = DirJobSource::new(dir.path().join("queue"))
        .unwrap()
        .with_lease_ttl(ttl);
    let source = Arc::new(NetworkDown {
        inner,
        heartbeats: AtomicU32::new(0),
        tokens: Mutex::new(Vec::new()),
        fail_heartbeats,
    });
    World { dir, source }
}

impl World {
    fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }
    fn agent(&self, argv: &[&str]) -> Agent {
        let provider = Arc::new(LocalProvider::new(self.path("state")).unwrap());
        let build = CommandBuild::new(
            provider,
            MachineSpec::linux(),
            argv[0],
            argv[1..].iter().copied(),
        )
        .unwrap();
        Agent::builder(self.source.clone(), self.path("agent/state"))
            .config_dir(self.path("agent/config"))
            .build(build)
            .build_agent()
            .unwrap()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_build_stops_at_its_lease_deadline_when_renewals_fail() {
    let w = world(Duration::from_secs(2), true);
    w.source.inner.enqueue(Job::new("j1", "build")).unwrap();
    let pidfile = w.path("build.pid");
    let script = format!("sleep 600 & echo $! > '{}'; wait", pidfile.display());
    let agent = w.agent(&["sh", "-c", &script]);
    let it = agent.run_once().await.unwrap();
    match it {
        Iteration::Built {
            outcome, reported, ..
        } => {
            assert!(!reported);
            assert!(
                matches!(&outcome, JobOutcome::Skipped { reason } if reason.contains("lease")),
                "{outcome:?}"
            );
        }
        other => panic!("{other:?}"),
    }
    // The whole build stopped: the shell's background sleep too.
    support::wait_until_gone(&pidfile, "the build's sleep, past the lease");
    // Renewals backed off instead of spinning every 20 ms.
    let beats = w.source.heartbeats.load(Ordering::SeqCst);
    assert!(
        (1..=20).contains(&beats),
        "{beats} heartbeats in one 2 s lease"
    );
    assert_eq!(agent.status().leases_lost, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn job_logs_are_private_and_hold_no_lease_token() {
    let w = world(Duration::from_secs(60), false);
    let mut job = Job::new("j1", "build");
    job.payload = Some(serde_json::json!({"pr": 7}));
    w.source.inner.enqueue(job).unwrap();
    let agent = w.agent(&["sh", "-c", "echo building; echo oops >&2; exit 3"]);
    let Iteration::Built { outcome, .. } = agent.run_once().await.unwrap() else {
        panic!("nothing built");
    };
    assert!(matches!(outcome, JobOutcome::Failed { .. }), "{outcome:?}");
    let logs: Vec<_> = std::fs::read_dir(w.path("agent/state/logs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(logs.len(), 1);
    let mode = std::fs::metadata(&logs[0]).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "{}", logs[0].display());
    let text = std::fs::read_to_string(&logs[0]).unwrap();
    assert!(
        text.contains("out building") && text.contains("err oops"),
        "{text}"
    );
    let tokens = w.source.tokens.lock().unwrap().clone();
    assert!(!tokens.is_empty());
    for t in tokens {
        assert!(!text.contains(&t), "the lease token is in the log: {text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revision_that_would_be_an_option_is_refused() {
    let w = world(Duration::from_secs(60), false);
    let marker = w.path("pwned");
    let mut job = Job::new("j1", "build");
    job.revision = Some(format!("--upload-pack=touch {}", marker.display()));
    w.source.inner.enqueue(job).unwrap();
    let agent = w.agent(&["git", "fetch", "origin", "{revision}"]);
    let Iteration::Built { outcome, .. } = agent.run_once().await.unwrap() else {
        panic!("nothing built");
    };
    match outcome {
        JobOutcome::Failed { summary, .. } => {
            assert!(
                summary.contains("option") && summary.contains("revision"),
                "{summary}"
            )
        }
        other => panic!("{other:?}"),
    }
    assert!(!marker.exists());
}

const CHATTY_DIR: &str = "HGAUTO_TEST_CHATTY_DIR";

/// Run by the test below in a child process (so its memory is its own): one agent builds
/// one job printing 2 GB, then prints its peak RSS.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "run by a_build_printing_2_gb_keeps_the_agent_small"]
async fn chatty_agent_process() {
    let Some(dir) = std::env::var_os(CHATTY_DIR) else {
        return;
    };
    let dir = PathBuf::from(dir);
    let source = Arc::new(DirJobSource::new(dir.join("queue")).unwrap());
    source.enqueue(Job::new("chatty", "build")).unwrap();
    let provider = Arc::new(LocalProvider::new(dir.join("state")).unwrap());
    // 2 GB in 64 KiB lines, and a last line on stderr.
    let script = "line=$(head -c 65535 /dev/zero | tr '\\0' x); yes \"$line\" | head -c 2000000000; echo done >&2";
    let build = CommandBuild::new(provider, MachineSpec::linux(), "sh", ["-c", script]).unwrap();
    let agent = Agent::builder(source, dir.join("agent/state"))
        .config_dir(dir.join("agent/config"))
        .build(build.clone())
        .build_agent()
        .unwrap();
    let it = agent.run_once().await.unwrap();
    build.shutdown().await.unwrap();
    let Iteration::Built { outcome, .. } = it else {
        panic!("nothing built");
    };
    assert!(
        matches!(outcome, JobOutcome::Succeeded { .. }),
        "{outcome:?}"
    );
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let hwm = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    println!("PEAK {hwm}");
}

/// The bound: 256 MiB of peak RSS for an agent whose build printed 2 GB (it was above
/// 4 GB when every line was kept).
const RSS_BOUND_KB: u64 = 256 * 1024;

#[test]
fn a_build_printing_2_gb_keeps_the_agent_small() {
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--ignored",
            "--exact",
            "chatty_agent_process",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHATTY_DIR, dir.path())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let kb: u64 = text
        .lines()
        .find_map(|l| l.split("VmHWM:").nth(1))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no peak in {text}"));
    eprintln!("agent peak RSS for a 2 GB build: {kb} kB (bound {RSS_BOUND_KB} kB)");
    assert!(kb < RSS_BOUND_KB, "peak RSS {kb} kB for a 2 GB build");
}

#[test]
fn a_zero_build_timeout_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let source = Arc::new(DirJobSource::new(dir.path().join("queue")).unwrap());
    let e = Agent::builder(source, dir.path().join("state"))
        .build_timeout(Duration::ZERO)
        .build(|_job: Job, _ctx: hgauto_agent::AgentContext| async move {
            Ok(JobOutcome::Succeeded {
                summary: "never".into(),
            })
        })
        .build_agent()
        .unwrap_err();
    assert!(e.to_string().contains("0 is not a timeout"), "{e}");
}
