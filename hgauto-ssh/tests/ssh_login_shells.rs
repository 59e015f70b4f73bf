//! Whatever the user's login shell, commands run under `/bin/sh` exactly as given, and a
//! shell that never runs them is an error, not a success. Real users with real shells
//! (created by `./scripts/test-all`): fish, tcsh, bash with a noisy `.bashrc`, and one
//! whose shell is `/usr/bin/true`.

mod support;

use std::time::Duration;

use hgauto_core::{Command, Error, ExitStatus, RemoteMachine};
use hgauto_ssh::{Auth, HostKeyPolicy, SshConfig, SshMachine};
use hgauto_testkit::machine;
use support::{Sshd, UserKeys};

/// The login shell each test user has (see `scripts/test-all`).
const USERS: &[(&str, &str)] = &[
    ("hgauto-fish", "/usr/bin/fish"),
    ("hgauto-tcsh", "/usr/bin/tcsh"),
    ("hgauto-bash", "/bin/bash"),
    ("hgauto-noshell", "/usr/bin/true"),
];

/// Checks that `user` exists with its shell; the message says how to create it.
fn require_user(user: &str) {
    let shell = USERS
        .iter()
        .find(|(u, _)| *u == user)
        .map(|(_, s)| *s)
        .unwrap();
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    let line = passwd
        .lines()
        .find(|l| l.starts_with(&format!("{user}:")))
        .unwrap_or_else(|| {
            panic!("test user {user} is missing: run ./scripts/test-all as root to create it")
        });
    assert!(
        line.ends_with(&format!(":{shell}")),
        "{user} must have the login shell {shell}: {line}"
    );
}

fn home_of(user: &str) -> String {
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap();
    let line = passwd
        .lines()
        .find(|l| l.starts_with(&format!("{user}:")))
        .unwrap();
    line.split(':').nth(5).unwrap().to_owned()
}

async fn machine_as(
    user: &str,
    sshd: &Sshd,
    keys: &UserKeys,
    state: &std::path::Path,
) -> SshMachine {
    require_user(user);
    let cfg = SshConfig::new(
        sshd.ip.clone(),
        sshd.port,
        user,
        Auth::KeyFile {
            path: keys.private(),
            passphrase: None,
        },
        state,
    )
    .with_host_keys(HostKeyPolicy::AcceptNew);
    let m = SshMachine::from_config(cfg);
    m.wait_ready(Duration::from_secs(20)).await.unwrap();
    m
}

async fn suite_as(user: &str) {
    let keys = UserKeys::new();
    let sshd = Sshd::start("127.0.0.2", &keys);
    let state = tempfile::tempdir().unwrap();
    let m = machine_as(user, &sshd, &keys, state.path()).await;
    // The case that was reported: fish dropped the command and reported exit code 0.
    let out = m
        .exec(&Command::new("printf").args(["%s", "x"]))
        .await
        .unwrap();
    assert_eq!(
        (out.status, out.stdout_str().as_str()),
        (ExitStatus::Code(0), "x"),
        "[{user}]"
    );
    let out = m
        .exec(&Command::script("echo \"$0\"; exit 3"))
        .await
        .unwrap();
    assert_eq!(out.status, ExitStatus::Code(3), "[{user}] exit code");
    machine::run_all(&m, machine::Capabilities::default()).await;
    let _ = m
        .exec(&Command::new("rm").args(["-rf", "hgauto-conformance"]))
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_fish_every_operation_runs_exactly() {
    suite_as("hgauto-fish").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_tcsh_every_operation_runs_exactly() {
    suite_as("hgauto-tcsh").await;
}

/// bash reads `.bashrc` for commands over SSH; what it prints comes before our marker: it is
/// not the command's output, and the pid is still found (the suite's timeout check kills
/// the process tree).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_bash_with_a_noisy_profile_every_operation_runs_exactly() {
    require_user("hgauto-bash");
    let rc = format!("{}/.bashrc", home_of("hgauto-bash"));
    std::fs::write(
        &rc,
        "printf 'noise from .bashrc\\n' >&2\nprintf 'no newline:' >&2\n",
    )
    .unwrap();
    suite_as("hgauto-bash").await;
    let keys = UserKeys::new();
    let sshd = Sshd::start("127.0.0.2", &keys);
    let state = tempfile::tempdir().unwrap();
    let m = machine_as("hgauto-bash", &sshd, &keys, state.path()).await;
    let out = m.exec(&Command::script("echo err >&2")).await.unwrap();
    assert_eq!(
        out.stderr_str(),
        "err\n",
        "neither the profile's output nor the marker"
    );

    // A profile that exports CDPATH must not send sync_tree (and its `rm -rf` of deleted
    // files) into another directory of the same name.
    use std::os::unix::fs::PermissionsExt;
    let decoy = tempfile::tempdir().unwrap();
    std::fs::create_dir(decoy.path().join("cdpath-target")).unwrap();
    std::fs::write(decoy.path().join("cdpath-target/keep"), "decoy").unwrap();
    // Reachable and writable by the test user: a cd into it would succeed.
    for (p, mode) in [
        (decoy.path().to_owned(), 0o755),
        (decoy.path().join("cdpath-target"), 0o777),
    ] {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
    }
    std::fs::write(&rc, format!("export CDPATH={}\n", decoy.path().display())).unwrap();
    let tree = tempfile::tempdir().unwrap();
    std::fs::write(tree.path().join("f"), "synced").unwrap();
    let m = machine_as("hgauto-bash", &sshd, &keys, state.path()).await;
    let opts = hgauto_core::SyncOptions {
        delete: true,
        compress: false,
    };
    for _ in 0..2 {
        m.sync_tree(tree.path(), "cdpath-target", &opts)
            .await
            .unwrap();
    }
    let home = home_of("hgauto-bash");
    let landed = std::fs::read_to_string(format!("{home}/cdpath-target/f"));
    std::fs::remove_file(&rc).unwrap();
    let _ = std::fs::remove_dir_all(format!("{home}/cdpath-target"));
    assert_eq!(landed.unwrap(), "synced");
    assert_eq!(
        std::fs::read_to_string(decoy.path().join("cdpath-target/keep")).unwrap(),
        "decoy",
        "the decoy directory was synced into"
    );
    assert!(!decoy.path().join("cdpath-target/f").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_login_shell_that_runs_nothing_is_an_error_not_a_success() {
    let keys = UserKeys::new();
    let sshd = Sshd::start("127.0.0.2", &keys);
    let state = tempfile::tempdir().unwrap();
    let m = machine_as("hgauto-noshell", &sshd, &keys, state.path()).await;
    let r = m.exec(&Command::new("printf").args(["%s", "x"])).await;
    match r {
        Err(Error::Spawn { ref source, .. }) => {
            assert!(source.to_string().contains("login shell"), "{source}")
        }
        other => panic!("expected a Spawn error, got {other:?}"),
    }
    let local = tempfile::tempdir().unwrap();
    let f = local.path().join("f");
    std::fs::write(&f, "x").unwrap();
    assert!(matches!(m.put(&f, "f").await, Err(Error::Spawn { .. })));
    assert!(matches!(
        m.get("f", &local.path().join("g")).await,
        Err(Error::Spawn { .. })
    ));
    assert!(!local.path().join("g").exists());
}
