//! Running a command on the machine under test, failing the check loudly with the machine
//! and the command when it cannot run or (for `run_ok`) fails.

use hgauto_core::command::{Command, Output};
use hgauto_core::machine::RemoteMachine;

/// A fresh scratch directory under the machine's home.
pub(super) async fn scratch(m: &dyn RemoteMachine, what: &str) -> String {
    let dir = format!("hgauto-conformance/{what}-{:08x}", rand::random::<u32>());
    run_ok(m, Command::new("mkdir").arg("-p").arg(&dir)).await;
    dir
}

/// Runs `cmd`; panics when it cannot be run at all.
pub(super) async fn run(m: &dyn RemoteMachine, cmd: Command) -> Output {
    match m.exec(&cmd).await {
        Ok(o) => o,
        Err(e) => panic!("[{}] `{}` failed to run: {e}", m.id(), cmd.display()),
    }
}

/// Runs `cmd`; panics unless it succeeds.
pub(super) async fn run_ok(m: &dyn RemoteMachine, cmd: Command) -> Output {
    let out = run(m, cmd.clone()).await;
    assert!(
        out.status.success(),
        "[{}] `{}` ended with {}; stderr: {}",
        m.id(),
        cmd.display(),
        out.status,
        out.stderr_str()
    );
    out
}
