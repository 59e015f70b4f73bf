//! Host key policies and authentication against a real sshd.

mod support;

use std::time::{Duration, Instant};

use hgauto_core::{Command, Error, RemoteMachine, RetryPolicy};
use hgauto_ssh::known_hosts::fingerprint;
use hgauto_ssh::{Auth, HostKeyPolicy, SshMachine};
use support::{Sshd, UserKeys};

fn true_cmd() -> Command {
    Command::new("true")
}

#[tokio::test]
async fn strict_refuses_an_unknown_host_naming_it_and_its_fingerprint() {
    let keys = UserKeys::new();
    let sshd = Sshd::start("127.0.0.3", &keys);
    let state = tempfile::tempdir().unwrap();
    let cfg = sshd
        .config(&keys, state.path())
        .with_host_keys(HostKeyPolicy::Strict);
    let err = SshMachine::from_config(cfg.clone())
        .exec(&true_cmd())
        .await
        .unwrap_err();
    let msg = err.to_string();
    assert!(
        matches!(err, Error::HostKey { ref actual, .. } if *actual == fingerprint(&sshd.host_key())),
        "{err:?}"
    );
    assert!(
        msg.contains(&format!("[127.0.0.3]:{}", sshd.port)) && msg.contains("unknown"),
        "{msg}"
    );
    assert!(!err.is_retryable());
    assert!(
        !cfg.known_hosts.exists(),
        "strict mode must not record anything"
    );
}

#[tokio::test]
async fn accept_new_records_the_key_and_strict_then_trusts_it() {
    let keys = UserKeys::new();
    let sshd = Sshd::start("127.0.0.3", &keys);
    let state = tempfile::tempdir().unwrap();
    let cfg = sshd.config(&keys, state.path());
    SshMachine::from_config(cfg.clone())
        .exec(&true_cmd())
        .await
        .unwrap();
    let recorded = std::fs::read_to_string(&cfg.known_hosts).unwrap();
    assert!(
        recorded.starts_with(&format!("[127.0.0.3]:{} ssh-ed25519 ", sshd.port)),
        "{recorded}"
    );
    let strict = cfg.with_host_keys(HostKeyPolicy::Strict);
    assert!(SshMachine::from_config(strict)
        .exec(&true_cmd())
        .await
        .unwrap()
        .status
        .success());
}

#[tokio::test]
async fn a_changed_host_key_is_refused_with_both_fingerprints() {
    let keys = UserKeys::new();
    let sshd = Sshd::start("127.0.0.3", &keys);
    let old = fingerprint(&sshd.host_key());
    let state = tempfile::tempdir().unwrap();
    let cfg = sshd.config(&keys, state.path());
    SshMachine::from_config(cfg.clone())
        .exec(&true_cmd())
        .await
        .unwrap();

    let sshd = sshd.restart_with_new_host_key(&keys);
    let new = fingerprint(&sshd.host_key());
    assert_ne!(old, new);
    // Even accept-new refuses a *changed* key.
    let err = SshMachine::from_config(cfg)
        .exec(&true_cmd())
        .await
        .unwrap_err();
    match &err {
        Error::HostKey {
            reason,
            expected,
            actual,
            ..
        } => {
            assert!(reason.contains("changed"), "{reason}");
            assert_eq!(expected.as_deref(), Some(old.as_str()));
            assert_eq!(actual, &new);
        }
        other => panic!("expected a host key error, got {other:?}"),
    }
    assert!(err.to_string().contains(&old) && err.to_string().contains(&new));
}

#[tokio::test]
async fn a_pinned_key_is_used_instead_of_known_hosts() {
    let keys = UserKeys::new();
    let sshd = Sshd::start("127.0.0.3", &keys);
    let state = tempfile::tempdir().unwrap();
    let pinned = sshd
        .config(&keys, state.path())
        .with_host_keys(HostKeyPolicy::Pinned(sshd.host_key()));
    assert!(SshMachine::from_config(pinned.clone())
        .exec(&true_cmd())
        .await
        .unwrap()
        .status
        .success());
    assert!(!pinned.known_hosts.exists());
    let other = UserKeys::new(); // any other key blob
    let wrong = pinned.with_host_keys(HostKeyPolicy::Pinned(support::public_blob(
        &other.dir.path().join("id_ed25519.pub"),
    )));
    let err = SshMachine::from_config(wrong)
        .exec(&true_cmd())
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::HostKey { ref reason, .. } if reason.contains("pinned")),
        "{err:?}"
    );
}

#[tokio::test]
async fn wait_ready_fails_fast_on_bad_credentials() {
    let keys = UserKeys::new();
    let sshd = Sshd::start("127.0.0.3", &keys);
    let state = tempfile::tempdir().unwrap();
    let stranger = UserKeys::new();
    let mut cfg = sshd.config(&keys, state.path());
    cfg.auth = Auth::KeyFile {
        path: stranger.private(),
        passphrase: None,
    };
    let started = Instant::now();
    let err = SshMachine::from_config(cfg)
        .wait_ready(Duration::from_secs(60))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Auth { .. }), "{err:?}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "auth failure must not wait out the deadline"
    );
    assert!(err.to_string().contains(&support::user()));
}

#[tokio::test]
async fn a_missing_key_file_is_named() {
    let keys = UserKeys::new();
    let sshd = Sshd::start("127.0.0.3", &keys);
    let state = tempfile::tempdir().unwrap();
    let mut cfg = sshd.config(&keys, state.path());
    cfg.auth = Auth::KeyFile {
        path: "/nonexistent/id_key".into(),
        passphrase: None,
    };
    let err = SshMachine::from_config(cfg)
        .exec(&true_cmd())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("/nonexistent/id_key"), "{err}");
}

#[tokio::test]
async fn wait_ready_retries_until_the_server_comes_up_and_times_out_when_it_does_not() {
    let keys = UserKeys::new();
    let state = tempfile::tempdir().unwrap();
    // Nothing listens: a timeout error after about the deadline.
    let port = std::net::TcpListener::bind("127.0.0.4:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut cfg = hgauto_ssh::SshConfig::new(
        "127.0.0.4",
        port,
        support::user(),
        Auth::KeyFile {
            path: keys.private(),
            passphrase: None,
        },
        state.path(),
    )
    .with_host_keys(HostKeyPolicy::AcceptNew)
    .with_retry(RetryPolicy::none());
    let started = Instant::now();
    let err = SshMachine::from_config(cfg.clone())
        .wait_ready(Duration::from_secs(2))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Timeout { .. }), "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(8));

    // The server appears after a second: wait_ready gets there.
    let ip_keys = keys;
    let starter = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs(1));
        // Keep the keys alive alongside the server: the client reads them meanwhile.
        (
            Sshd::start_with("127.0.0.4", &ip_keys, Some(port), ""),
            ip_keys,
        )
    });
    cfg.connect_timeout = Duration::from_secs(2);
    SshMachine::from_config(cfg)
        .wait_ready(Duration::from_secs(20))
        .await
        .unwrap();
    drop(starter.join().unwrap());
}
