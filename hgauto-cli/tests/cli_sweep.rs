//! `hgauto sweep` on the local provider: machines past their deadline go only when the
//! process that made them is not known to be alive, and a machine whose creator is gone
//! goes once the grace period has passed. The test process is the live creator.

use std::process::Command;

use hgauto_core::{Ledger, LocalProvider, MachineSpec, ResourceProvider};
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_hgauto");

/// A session id like ours, for a process that has ended (same boot and pid namespace).
fn dead_session() -> String {
    let mut child = Command::new("true").spawn().unwrap();
    let pid = child.id();
    child.wait().unwrap();
    let ours = hgauto_core::session::session_id();
    let mut parts: Vec<String> = ours.split('/').map(str::to_owned).collect();
    parts[3] = pid.to_string();
    parts.join("/")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sweep_keeps_machines_of_a_live_creator_and_takes_abandoned_ones() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let provider = LocalProvider::new(&state).unwrap();
    let spec = MachineSpec::linux();
    let mut ids = Vec::new();
    for _ in 0..4 {
        let m = provider.provision(&spec, 1).await.unwrap();
        ids.push(m[0].id().to_owned());
    }
    let [live, dead, unknown, fresh] = [0, 1, 2, 3].map(|i| ids[i].clone());
    let ledger = Ledger::open(&state, provider.name()).unwrap();
    // Every deadline but `fresh`'s is past; the creator of `dead` has ended, the one of
    // `unknown` ran on another boot (nobody here can tell).
    let past = hgauto_core::clock::unix_now() - 3600;
    provider
        .extend_deadline(&[live.clone(), dead.clone(), unknown.clone()], past)
        .await
        .unwrap();
    let gone = dead_session();
    ledger
        .update(&dead, "machine", |r| {
            r.session = gone;
            r.created_at -= 7200;
        })
        .unwrap();
    ledger
        .update(&unknown, "machine", |r| {
            r.session = r.session.replacen('/', "/another-boot-", 1)
        })
        .unwrap();
    ledger
        .update(&fresh, "machine", |r| {
            r.session = r.session.replacen('/', "/another-boot-", 1)
        })
        .unwrap();

    let out = Command::new(BIN)
        .args(["--json", "sweep", "--grace-secs", "60"])
        .env("HGAUTO_STATE_DIR", &state)
        .env_remove("HGAUTO_CONFIG")
        .env_remove("HGAUTO_PROVIDER")
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut removed: Vec<String> = report["removed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect();
    removed.sort();
    let mut expected = vec![dead.clone(), unknown.clone()];
    expected.sort();
    assert_eq!(removed, expected, "{report}");
    let left: Vec<String> = provider
        .list_managed()
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.exists)
        .map(|r| r.id)
        .collect();
    assert!(left.contains(&live) && left.contains(&fresh), "{left:?}");
    assert_eq!(left.len(), 2, "{left:?}");
    provider.purge().await.unwrap();
}
