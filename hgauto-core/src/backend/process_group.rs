//! Local commands that run in a process group of their own, so that a timeout, or a
//! dropped future, kills the command and everything it started (a hook's `sleep &`, a
//! build's compiler), not only the direct child.

use std::process::Output;
use std::time::Duration;

use crate::error::{Error, Result};

/// Kills the whole process group on drop (a dropped future), unless defused once the
/// leader has been waited for.
#[derive(Debug)]
pub struct GroupKiller {
    pgid: Option<i32>,
}

impl GroupKiller {
    /// Guards the group led by `pid`.
    pub fn new(pid: Option<u32>) -> Self {
        GroupKiller {
            pgid: pid.map(|p| p as i32).filter(|p| *p > 0),
        }
    }

    /// Kills the group now (SIGKILL).
    pub fn kill(&mut self) {
        if let Some(pgid) = self.pgid.take() {
            // SAFETY: signalling a process group this crate created.
            unsafe { libc::killpg(pgid, libc::SIGKILL) };
        }
    }

    /// The leader ended and was reaped: its pid may be reused, so the group is left alone.
    pub fn defuse(&mut self) {
        self.pgid = None;
    }
}

impl Drop for GroupKiller {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Runs `cmd` in a new process group with its output captured. Past `timeout` (or when the
/// returned future is dropped) the group is killed; a timeout is `Ok(None)`. `program` names
/// the command in errors.
pub async fn output_in_group(
    mut cmd: tokio::process::Command,
    program: &str,
    timeout: Duration,
) -> Result<Option<Output>> {
    cmd.process_group(0)
        .kill_on_drop(true)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let child = cmd.spawn().map_err(|source| Error::Spawn {
        machine: "localhost".into(),
        program: program.into(),
        source,
    })?;
    let mut group = GroupKiller::new(child.id());
    // The leader's exit is not enough: a descendant holding stdout keeps the pipe open, and
    // `wait_with_output` waits for it, so the deadline covers the whole group.
    let out = match tokio::time::timeout(timeout, child.wait_with_output()).await {
        Err(_) => {
            group.kill();
            return Ok(None);
        }
        Ok(out) => out.map_err(|e| Error::io("wait for", program, "localhost", e))?,
    };
    group.defuse();
    Ok(Some(out))
}
