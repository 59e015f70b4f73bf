//! Running one command on many machines with bounded parallelism.

use std::sync::Arc;

use futures::stream::{self, StreamExt};

use crate::command::{Command, Output};
use crate::error::Result;
use crate::machine::RemoteMachine;

/// One machine's result of a [`fan_out`].
#[derive(Debug)]
pub struct HostResult {
    /// The machine id.
    pub machine: String,
    /// Its output, or why it could not run.
    pub result: Result<Output>,
}

/// Runs `cmd` on every machine, at most `parallelism` at a time (at least 1). One machine
/// failing (to connect, or with a non-zero exit) does not stop the others. Results are in
/// the order of `machines`.
pub async fn fan_out(
    machines: &[Arc<dyn RemoteMachine>],
    cmd: &Command,
    parallelism: usize,
) -> Vec<HostResult> {
    // The futures are built before the stream, so no closure is part of the returned
    // future's type: it is then provably `Send` and can be spawned (the Python module
    // runs it on its runtime).
    let runs: Vec<_> = machines
        .iter()
        .map(|m| run_one(m.clone(), cmd.clone()))
        .collect();
    stream::iter(runs)
        .buffered(parallelism.max(1))
        .collect()
        .await
}

async fn run_one(m: Arc<dyn RemoteMachine>, cmd: Command) -> HostResult {
    let result = m.exec(&cmd).await;
    HostResult {
        machine: m.id().to_owned(),
        result,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::local::LocalMachine;

    #[tokio::test]
    async fn one_failure_does_not_stop_the_others() {
        let dirs: Vec<tempfile::TempDir> = (0..5).map(|_| tempfile::tempdir().unwrap()).collect();
        let mut machines: Vec<Arc<dyn RemoteMachine>> = dirs
            .iter()
            .enumerate()
            .map(|(i, d)| Arc::new(LocalMachine::open(format!("m{i}"), d.path()).unwrap()) as _)
            .collect();
        // A machine whose sandbox is gone: it cannot run anything.
        let gone = tempfile::tempdir().unwrap();
        let broken = LocalMachine::open("broken", gone.path()).unwrap();
        drop(gone);
        machines.insert(2, Arc::new(broken));
        let results = fan_out(&machines, &Command::script("echo $HGAUTO_MACHINE_ID"), 2).await;
        assert_eq!(results.len(), 6);
        assert_eq!(results[2].machine, "broken");
        assert!(results[2].result.is_err());
        for r in results.iter().filter(|r| r.machine != "broken") {
            assert_eq!(r.result.as_ref().unwrap().stdout_str().trim(), r.machine);
        }
    }
}
