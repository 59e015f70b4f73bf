//! What the self-updater remembers between polls, in `STATE/selfupdate.json`: the
//! revisions running, the heads seen and when each was first seen, since when the
//! machine has been out of sync, and the last error. Also its lock, and the Nagios-style
//! check that reads the state.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, IoContext, Result};

/// A head as the watcher saw it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeenHead {
    /// The revision.
    pub revision: String,
    /// When the watcher first saw it, in ms since the epoch (not the commit date).
    pub first_seen_ms: u64,
}

/// The self-updater's state (see the [module docs](super)).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpdateState {
    /// The revision each repository's working copy runs, by repository name.
    pub running: BTreeMap<String, String>,
    /// The last head seen on each repository's production branch.
    pub seen: BTreeMap<String, SeenHead>,
    /// When a seen head first differed from the running one (none: in sync).
    pub out_of_sync_since_ms: Option<u64>,
    /// The last poll's error, if it failed or was blocked.
    pub last_error: Option<String>,
    /// When an update was last applied.
    pub last_applied_ms: Option<u64>,
    /// When the state was last written.
    pub updated_ms: u64,
}

impl UpdateState {
    /// The state in `path`; none yet is the default.
    pub fn load(path: &Path) -> Result<UpdateState> {
        match std::fs::read(path) {
            Ok(data) => serde_json::from_slice(&data).map_err(|e| {
                Error::invalid(
                    format!("self-update state {}", path.display()),
                    e.to_string(),
                )
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(UpdateState::default()),
            Err(e) => Err(Error::io("read", path, "localhost", e)),
        }
    }

    /// Writes the state to `path` by atomic rename.
    pub fn save(&mut self, path: &Path, now_ms: u64) -> Result<()> {
        self.updated_ms = now_ms;
        let data = serde_json::to_vec_pretty(self)
            .map_err(|e| Error::invalid("self-update state", e.to_string()))?;
        crate::backend::fs::write_atomic(path, &data)
    }

    /// Minutes out of sync as of `now_ms` (0 when in sync).
    pub fn minutes_out_of_sync(&self, now_ms: u64) -> u64 {
        self.out_of_sync_since_ms
            .map_or(0, |since| now_ms.saturating_sub(since) / 60_000)
    }

    /// A Nagios-style check: 0 (OK), 1 (WARNING) or 2 (CRITICAL) and a one-line message,
    /// by how long the machine has been out of sync against `warn` and `crit` minutes.
    pub fn nagios(&self, now_ms: u64, warn: u64, crit: u64) -> (i32, String) {
        let minutes = self.minutes_out_of_sync(now_ms);
        let behind: Vec<String> = self
            .seen
            .iter()
            .filter(|(repo, head)| self.running.get(*repo) != Some(&head.revision))
            .map(|(repo, head)| format!("{repo} {}", &head.revision[..head.revision.len().min(12)]))
            .collect();
        let error = self
            .last_error
            .as_deref()
            .map(|e| format!("; last error: {e}"))
            .unwrap_or_default();
        if self.out_of_sync_since_ms.is_none() {
            return (0, format!("SELFUPDATE OK - in sync{error}"));
        }
        let what = format!("out of sync for {minutes} min ({})", behind.join(", "));
        if minutes >= crit {
            (2, format!("SELFUPDATE CRITICAL - {what}{error}"))
        } else if minutes >= warn {
            (1, format!("SELFUPDATE WARNING - {what}{error}"))
        } else {
            (0, format!("SELFUPDATE OK - {what}{error}"))
        }
    }
}

/// The update lock: a file holding its holder's pid and when it was taken. A lock older
/// than the stale age is taken over (its holder is assumed dead or stuck, as seed 004
/// says); a fresh one is respected.
#[derive(Debug)]
pub struct UpdateLock {
    path: PathBuf,
}

#[derive(Debug, Serialize, Deserialize)]
struct LockFile {
    pid: u32,
    taken_ms: u64,
}

impl UpdateLock {
    /// Takes the lock at `path`, or returns `None` when a fresh lock is held.
    pub fn take(path: &Path, now_ms: u64, stale_after_ms: u64) -> Result<Option<UpdateLock>> {
        let _guard = crate::backend::fs::ExclusiveLock::acquire(&path.with_extension("flock"))?;
        if let Ok(data) = std::fs::read(path) {
            match serde_json::from_slice::<LockFile>(&data) {
                Ok(held) if now_ms.saturating_sub(held.taken_ms) < stale_after_ms => {
                    return Ok(None);
                }
                Ok(held) => tracing::warn!(
                    lock = %path.display(),
                    pid = held.pid,
                    minutes = now_ms.saturating_sub(held.taken_ms) / 60_000,
                    "taking over a stale self-update lock"
                ),
                Err(_) => {
                    tracing::warn!(lock = %path.display(), "taking over an unreadable self-update lock")
                }
            }
        }
        let data = serde_json::to_vec(&LockFile {
            pid: std::process::id(),
            taken_ms: now_ms,
        })
        .map_err(|e| Error::invalid("self-update lock", e.to_string()))?;
        crate::backend::fs::write_atomic(path, &data)?;
        Ok(Some(UpdateLock {
            path: path.to_owned(),
        }))
    }
}

impl Drop for UpdateLock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path).at("remove", &self.path, "localhost");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_check_goes_ok_warning_critical_as_time_passes() {
        let mut s = UpdateState::default();
        s.running.insert("config".into(), "a".repeat(40));
        s.seen.insert(
            "config".into(),
            SeenHead {
                revision: "b".repeat(40),
                first_seen_ms: 0,
            },
        );
        assert_eq!(s.nagios(0, 30, 60).0, 0);
        s.out_of_sync_since_ms = Some(0);
        let (code, msg) = s.nagios(10 * 60_000, 30, 60);
        assert_eq!(code, 0, "{msg}");
        let (code, msg) = s.nagios(31 * 60_000, 30, 60);
        assert_eq!(code, 1, "{msg}");
        assert!(msg.contains("config bbbbbbbbbbbb"), "{msg}");
        assert_eq!(s.nagios(61 * 60_000, 30, 60).0, 2);
    }

    #[test]
    fn a_fresh_lock_is_respected_and_a_stale_one_taken_over() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lock");
        let held = UpdateLock::take(&path, 1_000, 120 * 60_000).unwrap();
        assert!(held.is_some());
        std::mem::forget(held);
        assert!(UpdateLock::take(&path, 60_000, 120 * 60_000)
            .unwrap()
            .is_none());
        let taken = UpdateLock::take(&path, 121 * 60_000 + 1_000, 120 * 60_000).unwrap();
        assert!(taken.is_some());
        drop(taken);
        assert!(!path.exists());
    }
}
