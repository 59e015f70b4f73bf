//! What the self-updater remembers between update rounds, in `STATE/selfupdate.json`: the
//! revisions running, the heads seen and when each was first seen, since when the
//! machine has been out of sync, the last error and the heads that failed; and the
//! Nagios-style check that reads the state.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use hgauto_core::error::{Error, Result};

/// A head as the watcher saw it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeenHead {
    /// The revision.
    pub revision: String,
    /// When the watcher first saw it, in ms since the epoch (not the commit date).
    pub first_seen_ms: u64,
}

/// Heads whose update failed (the hook failed and the working copies were rolled back):
/// they are not tried again until a branch moves.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RejectedHeads {
    /// The head of each repository, by name.
    pub heads: BTreeMap<String, String>,
    /// Why they were rejected.
    pub reason: String,
    /// When, in ms since the epoch.
    pub at_ms: u64,
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
    /// The last round's error, if it failed or was blocked.
    pub last_error: Option<String>,
    /// When an update was last applied.
    pub last_applied_ms: Option<u64>,
    /// Heads that failed to apply, skipped until a branch moves.
    #[serde(default)]
    pub rejected: Option<RejectedHeads>,
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
        hgauto_core::backend::fs::write_atomic(path, &data)
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
        let behind: BTreeMap<String, String> = self
            .seen
            .iter()
            .filter(|(repo, head)| self.running.get(*repo) != Some(&head.revision))
            .map(|(repo, head)| (repo.clone(), head.revision.clone()))
            .collect();
        let mut error = self
            .last_error
            .as_deref()
            .map(|e| format!("; last error: {e}"))
            .unwrap_or_default();
        if let Some(r) = &self.rejected {
            error.push_str(&format!(
                "; skipping {} until a branch moves",
                super::short_heads(&r.heads)
            ));
        }
        if self.out_of_sync_since_ms.is_none() {
            return (0, format!("SELFUPDATE OK - in sync{error}"));
        }
        let what = format!(
            "out of sync for {minutes} min ({})",
            super::short_heads(&behind)
        );
        if minutes >= crit {
            (2, format!("SELFUPDATE CRITICAL - {what}{error}"))
        } else if minutes >= warn {
            (1, format!("SELFUPDATE WARNING - {what}{error}"))
        } else {
            (0, format!("SELFUPDATE OK - {what}{error}"))
        }
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
}
