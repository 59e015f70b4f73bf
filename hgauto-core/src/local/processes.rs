//! Finding and killing a local machine's processes by the `HGAUTO_MACHINE_ID` every one of
//! them carries in its environment, even after their creator died.

use std::path::Path;
use std::time::Duration;

use crate::env::MACHINE_ID;

/// Sends SIGKILL to every process whose environment carries `HGAUTO_MACHINE_ID=<id>`, until
/// none is left (bounded, in case of a fork bomb).
///
/// A process in the middle of `execve` can show an empty environment for a moment, so the
/// scan only ends after several consecutive empty passes.
pub fn kill_machine_processes(id: &str) -> usize {
    const EMPTY_PASSES: u32 = 3;
    let marker = format!("{MACHINE_ID}={id}");
    let me = std::process::id() as i32;
    let mut killed = 0;
    let mut empty = 0;
    for _ in 0..100 {
        let pids: Vec<i32> = processes_with_env(marker.as_bytes())
            .into_iter()
            .filter(|&p| p != me)
            .collect();
        if pids.is_empty() {
            empty += 1;
            if empty >= EMPTY_PASSES {
                break;
            }
        } else {
            empty = 0;
            for pid in &pids {
                // SAFETY: kill has no memory-safety preconditions.
                unsafe {
                    libc::kill(*pid, libc::SIGKILL);
                }
            }
            killed += pids.len();
        }
        std::thread::sleep(Duration::from_millis(3));
    }
    if killed > 0 {
        tracing::info!(machine = %id, killed, "killed leftover processes");
    }
    killed
}

/// Pids of live (not zombie) processes whose environment contains the entry `entry`.
fn processes_with_env(entry: &[u8]) -> Vec<i32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for e in dir.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        let Ok(environ) = std::fs::read(e.path().join("environ")) else {
            continue;
        };
        if environ.split(|&b| b == 0).any(|kv| kv == entry) && !is_zombie(&e.path()) {
            out.push(pid);
        }
    }
    out
}

fn is_zombie(proc_dir: &Path) -> bool {
    std::fs::read_to_string(proc_dir.join("stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')
                .map(|(_, rest)| rest.trim_start().starts_with('Z'))
        })
        .unwrap_or(true)
}
