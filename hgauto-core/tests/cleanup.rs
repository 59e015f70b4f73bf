//! Machines are cleaned up on every exit path: error, panic, SIGINT, SIGTERM, and (through
//! purge) SIGKILL. The signal cases run a child process: this same test binary, re-invoked
//! to run the ignored `child_holds_machines` test.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::FutureExt;
use hgauto_core::cleanup::SignalHandling;
use hgauto_core::{with_machines, Command, Error, LocalProvider, MachineSpec, ResourceProvider};

const CHILD_STATE: &str = "HGAUTO_TEST_CHILD_STATE";
const CHILD_MANUAL: &str = "HGAUTO_TEST_CHILD_MANUAL";

fn sandboxes(state: &Path) -> Vec<String> {
    std::fs::read_dir(state.join("local/machines"))
        .map(|d| {
            d.map(|e| e.unwrap().file_name().into_string().unwrap())
                .collect()
        })
        .unwrap_or_default()
}

fn ledger_len(state: &Path) -> usize {
    std::fs::read_dir(state.join("ledger/local"))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// Pids of live processes started by any of these machines.
fn machine_processes(ids: &[String]) -> Vec<i32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(env) = std::fs::read(e.path().join("environ")) else {
            continue;
        };
        let stat = std::fs::read_to_string(e.path().join("stat")).unwrap_or_default();
        let zombie = stat
            .rsplit_once(')')
            .is_some_and(|(_, r)| r.trim_start().starts_with('Z'));
        let ours = ids.iter().any(|id| {
            let marker = format!("HGAUTO_MACHINE_ID={id}");
            env.split(|&b| b == 0).any(|kv| kv == marker.as_bytes())
        });
        if ours && !zombie {
            out.push(pid);
        }
    }
    out
}

/// Runs in the child: provisions 2 machines, starts a long command on each, reports
/// readiness, then waits to be signalled.
#[test]
#[ignore = "run as a child process by the signal tests"]
fn child_holds_machines() {
    let Some(state) = std::env::var_os(CHILD_STATE) else {
        return;
    };
    let manual = std::env::var_os(CHILD_MANUAL).is_some();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async move {
        if manual {
            // The program owns SIGTERM: it cleans up through the hook and exits 0 itself.
            hgauto_core::cleanup::set_signal_handling(SignalHandling::Manual).unwrap();
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).unwrap();
            tokio::spawn(async move {
                term.recv().await;
                let sets = hgauto_core::cleanup::interrupt(libc::SIGTERM).await;
                println!("CLEANED {sets}");
                std::process::exit(0);
            });
        }
        let provider = Arc::new(LocalProvider::new(state).unwrap());
        let _ = with_machines(provider, &MachineSpec::linux(), 2, |ms| async move {
            for m in &ms {
                let m = m.clone();
                tokio::spawn(async move { m.exec(&Command::new("sleep").arg("300")).await });
            }
            // Give the commands a moment to start, then report.
            tokio::time::sleep(Duration::from_millis(300)).await;
            let ids: Vec<&str> = ms.iter().map(|m| m.id()).collect();
            println!("READY {}", ids.join(" "));
            tokio::time::sleep(Duration::from_secs(300)).await;
            Ok(())
        })
        .await;
    });
}

fn spawn_child(state: &Path) -> (Child, Vec<String>) {
    spawn_child_with(state, false)
}

fn spawn_child_with(state: &Path, manual: bool) -> (Child, Vec<String>) {
    let mut cmd = std::process::Command::new(std::env::current_exe().unwrap());
    if manual {
        cmd.env(CHILD_MANUAL, "1");
    }
    let mut child = cmd
        .args([
            "--ignored",
            "--exact",
            "child_holds_machines",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_STATE, state)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            // libtest prints "test child_holds_machines ... " before our output.
            if let Some((_, ids)) = line.split_once("READY ") {
                let _ = tx.send(ids.split(' ').map(str::to_owned).collect::<Vec<_>>());
            }
        }
    });
    let ids = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("child reported READY");
    (child, ids)
}

fn wait_exit(child: &mut Child, limit: Duration) -> std::process::ExitStatus {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(
            start.elapsed() < limit,
            "child did not exit within {limit:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn signal_leaves_nothing(sig: i32) {
    use std::os::unix::process::ExitStatusExt;
    let state = tempfile::tempdir().unwrap();
    let (mut child, ids) = spawn_child(state.path());
    assert_eq!(ids.len(), 2);
    assert_eq!(sandboxes(state.path()).len(), 2);
    assert_eq!(ledger_len(state.path()), 2);
    assert_eq!(machine_processes(&ids).len(), 2, "the sleeps are running");

    // SAFETY: sending a signal to our own child.
    unsafe { libc::kill(child.id() as i32, sig) };
    let status = wait_exit(&mut child, Duration::from_secs(60));
    assert_eq!(
        status.signal(),
        Some(sig),
        "the child dies of the signal it got: {status:?}"
    );
    assert!(
        sandboxes(state.path()).is_empty(),
        "sandboxes left: {:?}",
        sandboxes(state.path())
    );
    assert_eq!(ledger_len(state.path()), 0);
    assert!(machine_processes(&ids).is_empty(), "processes left behind");
}

#[test]
fn sigint_leaves_nothing_behind() {
    signal_leaves_nothing(libc::SIGINT);
}

#[test]
fn sigterm_leaves_nothing_behind() {
    signal_leaves_nothing(libc::SIGTERM);
}

#[test]
fn sighup_leaves_nothing_behind() {
    signal_leaves_nothing(libc::SIGHUP);
}

/// A program that handles SIGTERM itself (SignalHandling::Manual) keeps control: hgauto's
/// handler does not kill it, and its call to `interrupt` terminates every machine.
#[test]
fn a_program_that_owns_its_signals_cleans_up_through_the_hook() {
    let state = tempfile::tempdir().unwrap();
    let (mut child, ids) = spawn_child_with(state.path(), true);
    // SAFETY: sending a signal to our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let status = wait_exit(&mut child, Duration::from_secs(60));
    assert_eq!(
        status.code(),
        Some(0),
        "the program's own handler decided: {status:?}"
    );
    assert!(
        sandboxes(state.path()).is_empty(),
        "{:?}",
        sandboxes(state.path())
    );
    assert_eq!(ledger_len(state.path()), 0);
    assert!(machine_processes(&ids).is_empty());
}

#[test]
fn manual_handling_cannot_be_chosen_once_the_handler_is_installed() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let state = tempfile::tempdir().unwrap();
    rt.block_on(async {
        let provider = Arc::new(LocalProvider::new(state.path()).unwrap());
        with_machines(provider, &MachineSpec::linux(), 1, |_| async { Ok(()) })
            .await
            .unwrap();
    });
    let e = hgauto_core::cleanup::set_signal_handling(SignalHandling::Manual).unwrap_err();
    assert!(e.to_string().contains("already installed"), "{e}");
    hgauto_core::cleanup::set_signal_handling(SignalHandling::Install).unwrap();
}

#[test]
fn sigkill_then_purge_leaves_nothing_behind() {
    let state = tempfile::tempdir().unwrap();
    let (mut child, ids) = spawn_child(state.path());
    child.kill().unwrap(); // SIGKILL: no cleanup can run in the child
    wait_exit(&mut child, Duration::from_secs(30));
    assert_eq!(
        sandboxes(state.path()).len(),
        2,
        "SIGKILL leaves the sandboxes"
    );
    assert_eq!(ledger_len(state.path()), 2, "...but the ledger knows them");
    assert_eq!(machine_processes(&ids).len(), 2, "...and their processes");

    let rt = tokio::runtime::Runtime::new().unwrap();
    let report = rt
        .block_on(LocalProvider::new(state.path()).unwrap().purge())
        .unwrap();
    assert_eq!(report.removed.len(), 2);
    assert!(sandboxes(state.path()).is_empty());
    assert_eq!(ledger_len(state.path()), 0);
    assert!(
        machine_processes(&ids).is_empty(),
        "purge left processes running"
    );
}

#[tokio::test]
async fn error_in_the_closure_terminates() {
    let state = tempfile::tempdir().unwrap();
    let provider = Arc::new(LocalProvider::new(state.path()).unwrap());
    let r: hgauto_core::Result<()> = with_machines(
        provider.clone(),
        &MachineSpec::linux(),
        2,
        |ms| async move {
            assert_eq!(ms.len(), 2);
            Err(Error::invalid("test", "deliberate failure"))
        },
    )
    .await;
    assert!(r.unwrap_err().to_string().contains("deliberate failure"));
    assert!(sandboxes(state.path()).is_empty());
    assert!(provider.list_managed().await.unwrap().is_empty());
}

#[tokio::test]
async fn panic_in_the_closure_terminates() {
    let state = tempfile::tempdir().unwrap();
    let provider = Arc::new(LocalProvider::new(state.path()).unwrap());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let seen2 = seen.clone();
    let r = std::panic::AssertUnwindSafe(with_machines(
        provider.clone(),
        &MachineSpec::linux(),
        2,
        |ms| async move {
            seen2
                .lock()
                .unwrap()
                .extend(ms.iter().map(|m| m.id().to_owned()));
            let _ = ms[0]
                .exec(&Command::script("sleep 300 > /dev/null 2>&1 &"))
                .await;
            if !ms.is_empty() {
                panic!("deliberate panic");
            }
            Ok(())
        },
    ))
    .catch_unwind()
    .await;
    assert!(r.is_err(), "the panic propagates");
    assert_eq!(seen.lock().unwrap().len(), 2);
    assert!(sandboxes(state.path()).is_empty());
    assert!(provider.list_managed().await.unwrap().is_empty());
    assert!(machine_processes(&seen.lock().unwrap()).is_empty());
}

#[tokio::test]
async fn success_terminates_and_returns_the_value() {
    let state = tempfile::tempdir().unwrap();
    let provider = Arc::new(LocalProvider::new(state.path()).unwrap());
    let v = with_machines(
        provider.clone(),
        &MachineSpec::linux(),
        1,
        |ms| async move {
            Ok(ms[0]
                .exec(&Command::new("echo").arg("hi"))
                .await?
                .stdout_str())
        },
    )
    .await
    .unwrap();
    assert_eq!(v, "hi\n");
    assert!(provider.list_managed().await.unwrap().is_empty());
}

/// `keep` leaves the named machines up and in the ledger, terminates the others, and hands
/// the kept ones back to the caller: nothing of the guard terminates them later.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_leaves_the_named_machines_and_terminates_the_others() {
    let dir = tempfile::tempdir().unwrap();
    let provider = Arc::new(LocalProvider::new(dir.path()).unwrap());
    let guard =
        hgauto_core::TemporaryMachines::provision(provider.clone(), &MachineSpec::linux(), 3)
            .await
            .unwrap();
    let ids = guard.ids();
    let keep = vec![ids[1].clone(), "not-one-of-them".to_owned()];
    let kept = guard.keep(&keep).await.unwrap();
    assert_eq!(kept, [ids[1].clone()]);
    assert_eq!(sandboxes(dir.path()), [ids[1].clone()]);
    let listed: Vec<String> = provider
        .list_managed()
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.exists && r.kind == hgauto_core::ResourceKind::Machine)
        .map(|r| r.id)
        .collect();
    assert_eq!(listed, [ids[1].clone()]);
    provider.terminate(&kept).await.unwrap();
    assert!(sandboxes(dir.path()).is_empty());
    assert_eq!(ledger_len(dir.path()), 0);
}
