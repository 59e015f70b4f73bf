//! Dropped connections: repeatable operations reconnect and finish; other commands say
//! they may have run. A proxy cuts the first connection after N bytes.

mod support;

use std::path::Path;
use std::time::Duration;

use hgauto_core::{Command, Error, Jitter, RemoteMachine, RetryPolicy, SyncOptions};
use hgauto_ssh::SshMachine;
use support::{FaultProxy, Faults, Sshd, UserKeys};

fn fast_retry() -> RetryPolicy {
    RetryPolicy {
        max_retries: 3,
        base_delay: Duration::from_millis(50),
        factor: 2.0,
        max_delay: Duration::from_millis(200),
        jitter: Jitter::None,
    }
}

fn through_proxy(
    sshd: &Sshd,
    keys: &UserKeys,
    state: &Path,
    cut_after: u64,
) -> (SshMachine, FaultProxy) {
    let proxy = FaultProxy::start((sshd.ip.clone(), sshd.port), Faults::cut(cut_after, 1));
    let mut cfg = sshd.config(keys, state).with_retry(fast_retry());
    cfg.host = "127.0.0.1".into();
    cfg.port = proxy.port;
    (SshMachine::from_config(cfg), proxy)
}

/// sha256 over (sorted path, content) of every file, computed the same way on both sides.
fn local_tree_hash(root: &Path) -> String {
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg("find . -type f -printf '%P\\0' | LC_ALL=C sort -z | xargs -0 sha256sum | sha256sum")
        .current_dir(root)
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sync_cut_mid_stream_completes_after_reconnecting() {
    let keys = UserKeys::new();
    let sshd = Sshd::start("127.0.0.5", &keys);
    let state = tempfile::tempdir().unwrap();
    let (m, proxy) = through_proxy(&sshd, &keys, state.path(), 400_000);

    let src = tempfile::tempdir().unwrap();
    let mut seed = 12345u64;
    for i in 0..300 {
        let dir = src.path().join(format!("d{}", i % 10));
        std::fs::create_dir_all(&dir).unwrap();
        let data: Vec<u8> = (0..10_000)
            .map(|_| {
                seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
                (seed >> 33) as u8
            })
            .collect();
        std::fs::write(dir.join(format!("f{i}.bin")), data).unwrap();
    }
    let remote = format!("faults-sync-{}", std::process::id());
    let opts = SyncOptions {
        delete: true,
        compress: false,
    };
    m.sync_tree(src.path(), &remote, &opts)
        .await
        .expect("sync completes despite the cut");
    assert!(
        proxy.cuts.load(std::sync::atomic::Ordering::SeqCst) >= 1,
        "the proxy cut the connection"
    );
    assert!(
        proxy.connections.load(std::sync::atomic::Ordering::SeqCst) >= 2,
        "it reconnected"
    );

    let remote_hash = m
        .exec(&Command::script("find . -type f -printf '%P\\0' | LC_ALL=C sort -z | xargs -0 sha256sum | sha256sum").current_dir(&remote))
        .await
        .unwrap()
        .stdout_str();
    assert_eq!(
        remote_hash,
        local_tree_hash(src.path()),
        "remote tree differs after the interrupted sync"
    );
    let again = m.sync_tree(src.path(), &remote, &opts).await.unwrap();
    assert_eq!(again.files_sent, 0, "{again:?}");
    m.exec(&Command::new("rm").args(["-rf", &remote]))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_during_a_plain_command_says_it_may_have_run() {
    let keys = UserKeys::new();
    let sshd = Sshd::start("127.0.0.5", &keys);
    let state = tempfile::tempdir().unwrap();
    let (m, _proxy) = through_proxy(&sshd, &keys, state.path(), 300_000);
    let err = m
        .exec(&Command::script("head -c 2000000 /dev/zero"))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::Connection {
                may_have_run: true,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("may have run"));
    assert!(!err.is_retryable());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idempotent_command_is_retried_after_a_cut() {
    let keys = UserKeys::new();
    let sshd = Sshd::start("127.0.0.5", &keys);
    let state = tempfile::tempdir().unwrap();
    let (m, proxy) = through_proxy(&sshd, &keys, state.path(), 300_000);
    let out = m
        .exec(&Command::script("head -c 2000000 /dev/zero").idempotent(true))
        .await
        .expect("retried on a new connection");
    assert_eq!(out.stdout.len(), 2_000_000);
    assert_eq!(
        proxy.connections.load(std::sync::atomic::Ordering::SeqCst),
        2
    );
}

/// A caller that stops waiting (its future dropped: Ctrl-C in Python, a `select!` that
/// took another branch) does not leave the command running on the host.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_exec_kills_the_remote_command() {
    let keys = UserKeys::new();
    let sshd = Sshd::start("127.0.0.1", &keys);
    let state = tempfile::tempdir().unwrap();
    let m = SshMachine::from_config(sshd.config(&keys, state.path()));
    let running = || async {
        let out = m
            .exec(&Command::script(
                "ps -eo args | grep -c '^sleep 4711$' || true",
            ))
            .await
            .unwrap();
        out.stdout_str().trim().parse::<u32>().unwrap()
    };
    let cmd = Command::script("sleep 4711");
    let gone = tokio::time::timeout(Duration::from_millis(500), m.exec(&cmd)).await;
    assert!(gone.is_err(), "the command cannot have finished");
    let mut left = running().await;
    for _ in 0..50 {
        if left == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        left = running().await;
    }
    assert_eq!(left, 0, "`sleep 4711` still runs on the host");
}
