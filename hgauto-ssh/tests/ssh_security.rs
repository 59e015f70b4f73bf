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

/// A running sshd, and a client config that checks its key strictly (nothing recorded yet).
fn strict_host(ip: &str) -> (UserKeys, Sshd, tempfile::TempDir, hgauto_ssh::SshConfig) {
    let keys = UserKeys::new();
    let sshd = Sshd::start(ip, &keys);
    let state = tempfile::tempdir().unwrap();
    let cfg = sshd
        .config(&keys, state.path())
        .with_host_keys(HostKeyPolicy::Strict);
    (keys, sshd, state, cfg)
}

#[tokio::test]
async fn strict_refuses_an_unknown_host_naming_it_and_its_fingerprint() {
    let (_keys, sshd, _state, cfg) = strict_host("127.0.0.3");
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

/// A known_hosts file OpenSSH wrote, hashed names and all (`ssh-keyscan -H`), is trusted
/// under strict checking; what hgauto records, OpenSSH's own tools find.
#[tokio::test]
async fn known_hosts_files_are_shared_with_openssh_both_ways() {
    let (_keys, sshd, _state, cfg) = strict_host("127.0.0.3");
    let scan = std::process::Command::new("ssh-keyscan")
        .args([
            "-H",
            "-t",
            &sshd.host_key_type,
            "-p",
            &sshd.port.to_string(),
            &sshd.ip,
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&scan.stdout).into_owned();
    assert!(text.starts_with("|1|"), "not hashed: {text:?}");
    std::fs::create_dir_all(cfg.known_hosts.parent().unwrap()).unwrap();
    std::fs::write(&cfg.known_hosts, format!("# from ssh-keyscan -H\n{text}")).unwrap();
    let out = SshMachine::from_config(cfg.clone())
        .exec(&true_cmd())
        .await
        .unwrap();
    assert!(out.status.success());

    // The other way: a key hgauto records (accept-new) is one `ssh-keygen -F` finds.
    let (_keys, sshd2, _state, cfg2) = known_host("127.0.0.4").await;
    let name = format!("[{}]:{}", sshd2.ip, sshd2.port);
    let found = std::process::Command::new("ssh-keygen")
        .arg("-F")
        .arg(&name)
        .arg("-f")
        .arg(&cfg2.known_hosts)
        .output()
        .unwrap();
    assert!(
        found.status.success() && String::from_utf8_lossy(&found.stdout).contains(&name),
        "{found:?}"
    );
}

/// A running sshd whose host key accept-new has recorded (one command ran).
async fn known_host(ip: &str) -> (UserKeys, Sshd, tempfile::TempDir, hgauto_ssh::SshConfig) {
    let keys = UserKeys::new();
    let sshd = Sshd::start(ip, &keys);
    let state = tempfile::tempdir().unwrap();
    let cfg = sshd.config(&keys, state.path());
    SshMachine::from_config(cfg.clone())
        .exec(&true_cmd())
        .await
        .unwrap();
    (keys, sshd, state, cfg)
}

#[tokio::test]
async fn accept_new_records_the_key_and_strict_then_trusts_it() {
    let (_keys, sshd, _state, cfg) = known_host("127.0.0.3").await;
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
    let (keys, sshd, _state, cfg) = known_host("127.0.0.3").await;
    let old = fingerprint(&sshd.host_key());

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

/// A host known with one key type that presents another (an attacker without the known
/// key, or a server reinstalled behind the same name): accept-new must not trust it.
#[tokio::test]
async fn accept_new_refuses_a_second_key_type_for_a_known_host() {
    let (keys, sshd, _state, cfg) = known_host("127.0.0.3").await;
    let port = sshd.port;
    drop(sshd);
    std::thread::sleep(Duration::from_millis(100));
    let rsa = Sshd::start_typed("127.0.0.3", &keys, Some(port), "rsa").launch();
    let err = SshMachine::from_config(cfg.clone())
        .exec(&true_cmd())
        .await
        .unwrap_err();
    match &err {
        Error::HostKey { reason, actual, .. } => {
            assert!(reason.contains("another key type"), "{reason}");
            assert_eq!(actual, &fingerprint(&rsa.host_key()));
        }
        other => panic!("expected a host key error, got {other:?}"),
    }
    let recorded = std::fs::read_to_string(&cfg.known_hosts).unwrap();
    assert_eq!(recorded.lines().count(), 1, "nothing was added: {recorded}");
}

/// Cloud machines are recorded under their instance id: a new instance that gets an old
/// one's address has its own entry instead of failing on the old key forever.
#[tokio::test]
async fn keys_recorded_under_an_alias_survive_a_recycled_address() {
    let keys = UserKeys::new();
    let sshd = Sshd::start("127.0.0.3", &keys);
    let state = tempfile::tempdir().unwrap();
    let first = sshd
        .config(&keys, state.path())
        .with_host_key_alias("i-0aaa");
    SshMachine::from_config(first.clone())
        .exec(&true_cmd())
        .await
        .unwrap();
    let sshd = sshd.restart_with_new_host_key(&keys);
    let second = sshd
        .config(&keys, state.path())
        .with_host_key_alias("i-0bbb");
    SshMachine::from_config(second)
        .exec(&true_cmd())
        .await
        .unwrap();
    let recorded = std::fs::read_to_string(&first.known_hosts).unwrap();
    let names: Vec<&str> = recorded
        .lines()
        .filter_map(|l| l.split(' ').next())
        .collect();
    assert_eq!(names, ["i-0aaa", "i-0bbb"], "{recorded}");
    // The old instance's entry still guards the old instance.
    let err = SshMachine::from_config(first)
        .exec(&true_cmd())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::HostKey { .. }), "{err:?}");
}

/// A secret put on a machine is never readable by others on the way: the temporary file
/// is 0600 from its first byte, and the final mode is set at the end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_in_transit_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let keys = UserKeys::new();
    let sshd = Sshd::start("127.0.0.3", &keys);
    let state = tempfile::tempdir().unwrap();
    let m = SshMachine::from_config(sshd.config(&keys, state.path()));
    let dir = format!("hgauto-transit-{}", std::process::id());
    m.exec(&Command::new("mkdir").args(["-p", &dir]))
        .await
        .unwrap();
    let local = tempfile::tempdir().unwrap();
    let src = local.path().join("secret");
    std::fs::write(&src, vec![7u8; 96 * 1024 * 1024]).unwrap();
    std::fs::set_permissions(&src, std::fs::Permissions::from_mode(0o640)).unwrap();
    // A watcher on the machine records the mode of every temporary file it sees.
    // It stops once the file has landed (or after 30 s).
    let watch = Command::script(format!(
        "end=$(($(date +%s) + 30)); while [ \"$(date +%s)\" -lt $end ]; do \
         for f in {dir}/.hgauto-put.*; do [ -e \"$f\" ] && stat -c %a \"$f\"; done; \
         [ -e {dir}/secret ] && break; done 2>/dev/null; exit 0"
    ));
    let (watched, put) = tokio::join!(m.exec(&watch), async {
        tokio::time::sleep(Duration::from_millis(50)).await;
        m.put(&src, &format!("{dir}/secret")).await
    });
    put.unwrap();
    let modes = watched.unwrap().stdout_str();
    assert!(
        !modes.trim().is_empty(),
        "the watcher never saw the transfer"
    );
    // 0600 while the bytes arrive; the final mode only in the instant before the rename.
    let lines: Vec<&str> = modes.lines().collect();
    let private = lines.iter().take_while(|l| **l == "600").count();
    assert!(private > 0, "modes seen in transit: {modes}");
    assert!(
        lines[private..].iter().all(|l| *l == "640"),
        "modes seen in transit: {modes}"
    );
    let fin = m
        .exec(&Command::new("stat").args(["-c", "%a", &format!("{dir}/secret")]))
        .await
        .unwrap();
    assert_eq!(fin.stdout_str().trim(), "640");
    let _ = m.exec(&Command::new("rm").args(["-rf", &dir])).await;
}
