//! Many hosts and many commands at once.

mod support;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hgauto_core::{fan_out, Command, RemoteMachine, RetryPolicy};
use hgauto_ssh::SshMachine;
use support::{Sshd, UserKeys};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fan_out_reaches_every_host_and_survives_one_being_down() {
    let keys = UserKeys::new();
    let state = tempfile::tempdir().unwrap();
    let servers: Vec<Sshd> = (2..=5)
        .map(|i| Sshd::start(&format!("127.0.0.{i}"), &keys))
        .collect();
    let mut machines: Vec<Arc<dyn RemoteMachine>> = servers
        .iter()
        .map(|s| Arc::new(SshMachine::from_config(s.config(&keys, state.path()))) as _)
        .collect();
    // A host where nothing listens.
    let port = std::net::TcpListener::bind("127.0.0.6:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut dead = servers[0]
        .config(&keys, state.path())
        .with_retry(RetryPolicy::none());
    dead.host = "127.0.0.6".into();
    dead.port = port;
    machines.insert(1, Arc::new(SshMachine::from_config(dead)));

    let results = fan_out(
        &machines,
        &Command::new("printenv").arg("SSH_CONNECTION"),
        3,
    )
    .await;
    assert_eq!(results.len(), 5);
    assert!(results[1].result.is_err(), "the dead host fails");
    let mut servers_seen = Vec::new();
    for r in results.iter().filter(|r| !r.machine.contains("127.0.0.6")) {
        let out = r.result.as_ref().expect("live hosts succeed");
        // SSH_CONNECTION = client_ip client_port server_ip server_port
        servers_seen.push(
            out.stdout_str()
                .split_whitespace()
                .nth(2)
                .unwrap()
                .to_owned(),
        );
    }
    servers_seen.sort();
    assert_eq!(
        servers_seen,
        ["127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn more_concurrent_commands_than_max_sessions() {
    let keys = UserKeys::new();
    let sshd = Sshd::start_with("127.0.0.2", &keys, None, "MaxSessions 2");
    let state = tempfile::tempdir().unwrap();
    let m = Arc::new(SshMachine::from_config(sshd.config(&keys, state.path())));
    let started = Instant::now();
    let runs: Vec<_> = (0..6)
        .map(|i| {
            let m = m.clone();
            tokio::spawn(
                async move { m.exec(&Command::script(format!("sleep 1; echo {i}"))).await },
            )
        })
        .collect();
    for (i, r) in runs.into_iter().enumerate() {
        let out = r.await.unwrap().expect("each command runs");
        assert_eq!(out.stdout_str().trim(), i.to_string());
    }
    // Six 1-second commands ran side by side (serially they take 6 s).
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn remote_commands_never_block_the_runtime_thread() {
    let keys = UserKeys::new();
    let sshd = Sshd::start("127.0.0.2", &keys);
    let state = tempfile::tempdir().unwrap();
    let m = SshMachine::from_config(sshd.config(&keys, state.path()));
    // One runtime thread: if exec blocked it, the ticker would stall for the whole second.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let ticks = Arc::new(AtomicU64::new(0));
        let t = ticks.clone();
        let ticker = tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(10)).await;
                t.fetch_add(1, Ordering::Relaxed);
            }
        });
        m.wait_ready(Duration::from_secs(20)).await.unwrap();
        let before = ticks.load(Ordering::Relaxed);
        m.exec(&Command::new("sleep").arg("1")).await.unwrap();
        let during = ticks.load(Ordering::Relaxed) - before;
        ticker.abort();
        assert!(
            during >= 50,
            "only {during} ticks during a 1 s remote command"
        );
    });
}
