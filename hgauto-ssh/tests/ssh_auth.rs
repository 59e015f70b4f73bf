//! Every authentication method against a real sshd: key files of each type, a key in
//! memory, and ssh-agent.

mod support;

use std::process::Stdio;
use std::time::Duration;

use hgauto_core::{Command, RemoteMachine};
use hgauto_ssh::{Auth, SshMachine};
use support::{Sshd, UserKeys};

#[tokio::test]
async fn key_files_of_every_type_and_a_key_in_memory() {
    let keys = UserKeys::with_types(&["ed25519", "rsa", "ecdsa"]);
    let sshd = Sshd::start("127.0.0.7", &keys);
    let state = tempfile::tempdir().unwrap();
    for kind in ["ed25519", "rsa", "ecdsa"] {
        let mut cfg = sshd.config(&keys, state.path());
        cfg.auth = Auth::KeyFile {
            path: keys.private_of(kind),
            passphrase: None,
        };
        let out = SshMachine::from_config(cfg)
            .exec(&Command::new("echo").arg(kind))
            .await;
        assert_eq!(
            out.unwrap_or_else(|e| panic!("{kind}: {e}")).stdout_str(),
            format!("{kind}\n")
        );
    }
    let mut cfg = sshd.config(&keys, state.path());
    cfg.auth = Auth::KeyMemory(std::fs::read_to_string(keys.private_of("rsa")).unwrap());
    assert!(
        format!("{:?}", cfg.auth).contains("redacted"),
        "key material must never be printed"
    );
    assert!(SshMachine::from_config(cfg)
        .exec(&Command::new("true"))
        .await
        .unwrap()
        .status
        .success());
}

#[tokio::test]
async fn ssh_agent() {
    let keys = UserKeys::with_types(&["ed25519"]);
    let sshd = Sshd::start("127.0.0.7", &keys);
    let state = tempfile::tempdir().unwrap();
    let sock = state.path().join("agent.sock");
    let mut agent = std::process::Command::new("ssh-agent")
        .arg("-D")
        .arg("-a")
        .arg(&sock)
        .stdout(Stdio::null())
        .spawn()
        .expect("ssh-agent starts");
    for _ in 0..100 {
        if sock.exists() {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let added = std::process::Command::new("ssh-add")
        .arg(keys.private_of("ed25519"))
        .env("SSH_AUTH_SOCK", &sock)
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(added.success());
    // This test runs in its own process (nextest), so setting the variable is contained.
    std::env::set_var("SSH_AUTH_SOCK", &sock);
    let mut cfg = sshd.config(&keys, state.path());
    cfg.auth = Auth::Agent;
    let out = SshMachine::from_config(cfg)
        .exec(&Command::new("echo").arg("agent"))
        .await;
    let _ = agent.kill();
    let _ = agent.wait();
    assert_eq!(out.unwrap().stdout_str(), "agent\n");
}

#[tokio::test]
async fn hostile_remote_paths_and_compressed_sync() {
    let keys = UserKeys::new();
    let sshd = Sshd::start("127.0.0.7", &keys);
    let state = tempfile::tempdir().unwrap();
    let m = SshMachine::from_config(sshd.config(&keys, state.path()));
    let base = format!("hostile-{}", std::process::id());
    let local = tempfile::tempdir().unwrap();
    let src = local.path().join("f");
    std::fs::write(&src, "payload").unwrap();
    let remote = format!("{base}/we ird'$(touch canary)`touch canary`/-x; touch canary");
    m.put(&src, &remote).await.unwrap();
    let back = local.path().join("back");
    m.get(&remote, &back).await.unwrap();
    assert_eq!(std::fs::read(&back).unwrap(), b"payload");

    let tree = local.path().join("tree");
    hgauto_testkit::machine::make_tree(&tree);
    let opts = hgauto_core::SyncOptions {
        delete: true,
        compress: true,
    };
    let report = m
        .sync_tree(&tree, &format!("{base}/tree"), &opts)
        .await
        .unwrap();
    assert_eq!(report.files_sent, 2000);
    let count = m
        .exec(&Command::script(format!(
            "find '{base}/tree' -type f | wc -l"
        )))
        .await
        .unwrap()
        .stdout_str();
    assert_eq!(count.trim(), "2000");
    let canary = m
        .exec(&Command::script(format!(
            "find {base} ~ -maxdepth 3 -name canary | grep -q . && exit 1; exit 0"
        )))
        .await
        .unwrap();
    assert!(canary.status.success(), "a canary was created");
    m.exec(&Command::new("rm").args(["-rf", &base]))
        .await
        .unwrap();
}
