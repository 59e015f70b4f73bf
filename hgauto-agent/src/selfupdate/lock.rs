//! The self-update lock: one updater at a time per state directory.
//!
//! The lock file names its holder (pid, host, a random token) and a heartbeat that the
//! holder refreshes from a thread of its own while it works, however long check, gate,
//! hook and checkouts take together. Another updater takes the lock over only when
//! - the holder is a process of this host that no longer exists (a crash: at once), or
//! - the heartbeat is older than the stale age (a holder that is stuck, or on a host whose
//!   processes we cannot see).
//!
//! A holder removes the file only while it still holds its own token, so an updater that
//! lost its lock never deletes the next holder's.

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use hgauto_core::backend::fs::{write_atomic, ExclusiveLock};
use hgauto_core::clock::SharedClock;
use hgauto_core::error::{Error, Result};

#[derive(Debug, Clone, Serialize, Deserialize)]
struct LockFile {
    pid: u32,
    #[serde(default)]
    host: String,
    #[serde(default)]
    token: String,
    taken_ms: u64,
    #[serde(default)]
    heartbeat_ms: u64,
}

impl LockFile {
    fn read(path: &Path) -> Option<std::result::Result<LockFile, ()>> {
        let data = std::fs::read(path).ok()?;
        Some(serde_json::from_slice(&data).map_err(drop))
    }

    fn write(&self, path: &Path) -> Result<()> {
        let data = serde_json::to_vec(self)
            .map_err(|e| Error::invalid("self-update lock", e.to_string()))?;
        write_atomic(path, &data)
    }
}

/// The held update lock; dropping it stops the heartbeat and removes the file if it is
/// still ours.
#[derive(Debug)]
pub struct UpdateLock {
    path: PathBuf,
    token: String,
    stop: Option<mpsc::Sender<()>>,
    beat: Option<std::thread::JoinHandle<()>>,
}

fn guard(path: &Path) -> Result<ExclusiveLock> {
    ExclusiveLock::acquire(&path.with_extension("flock"))
}

/// How often the holder refreshes its heartbeat: well inside the stale age.
fn beat_interval(stale_after_ms: u64) -> Duration {
    Duration::from_millis((stale_after_ms / 4).clamp(10, 60_000))
}

impl UpdateLock {
    /// Takes the lock at `path`, or returns `None` while a live holder has it (see the
    /// [module docs](self)). Times come from `clock`.
    pub fn take(path: &Path, clock: SharedClock, stale_after_ms: u64) -> Result<Option<Self>> {
        let now = clock.now_ms();
        let _guard = guard(path)?;
        match LockFile::read(path) {
            None => {}
            Some(Err(())) => {
                tracing::warn!(lock = %path.display(), "taking over an unreadable self-update lock")
            }
            Some(Ok(held)) => {
                let here = held.host.is_empty() || held.host == hgauto_core::session::hostname();
                let crashed = here && !hgauto_core::session::pid_alive(held.pid as i32);
                let beat = held.heartbeat_ms.max(held.taken_ms);
                let age = now.saturating_sub(beat);
                if !crashed && age < stale_after_ms {
                    return Ok(None);
                }
                tracing::warn!(
                    lock = %path.display(),
                    pid = held.pid,
                    crashed,
                    heartbeat_minutes = age / 60_000,
                    "taking over the self-update lock"
                );
            }
        }
        let token = hex::encode(rand::random::<[u8; 16]>());
        let file = LockFile {
            pid: std::process::id(),
            host: hgauto_core::session::hostname(),
            token: token.clone(),
            taken_ms: now,
            heartbeat_ms: now,
        };
        file.write(path)?;
        let (stop, stopped) = mpsc::channel::<()>();
        let beat_path = path.to_owned();
        let interval = beat_interval(stale_after_ms);
        let beat = std::thread::Builder::new()
            .name("selfupdate-lock".into())
            .spawn(move || {
                while let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(interval) {
                    if !refresh(&beat_path, &file.token, clock.now_ms()) {
                        break;
                    }
                }
            })
            .map_err(|e| Error::io("start the heartbeat of", path, "localhost", e))?;
        Ok(Some(UpdateLock {
            path: path.to_owned(),
            token,
            stop: Some(stop),
            beat: Some(beat),
        }))
    }
}

/// Writes a new heartbeat if the lock is still `token`'s; false when it is not.
fn refresh(path: &Path, token: &str, now_ms: u64) -> bool {
    let Ok(_guard) = guard(path) else {
        return true;
    };
    match LockFile::read(path) {
        Some(Ok(mut held)) if held.token == token => {
            held.heartbeat_ms = now_ms;
            if let Err(e) = held.write(path) {
                tracing::warn!(lock = %path.display(), error = %e, "cannot refresh the self-update lock");
            }
            true
        }
        _ => {
            tracing::warn!(lock = %path.display(), "the self-update lock was taken over");
            false
        }
    }
}

impl Drop for UpdateLock {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(beat) = self.beat.take() {
            let _ = beat.join();
        }
        let Ok(_guard) = guard(&self.path) else {
            return;
        };
        if matches!(LockFile::read(&self.path), Some(Ok(held)) if held.token == self.token) {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hgauto_core::clock::ManualClock;
    use std::sync::Arc;

    const STALE: u64 = 120 * 60_000;

    #[test]
    fn a_live_holder_keeps_the_lock_however_long_it_works() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lock");
        // A short stale age, so the heartbeat (a quarter of it) beats often.
        let stale = 200;
        let clock = ManualClock::new(1_000);
        let held = UpdateLock::take(&path, Arc::new(clock.clone()), stale)
            .unwrap()
            .unwrap();
        assert!(UpdateLock::take(&path, Arc::new(clock.clone()), stale)
            .unwrap()
            .is_none());
        // Three stale ages later the holder still beats, so the lock is still its own.
        for _ in 0..3 {
            clock.advance(Duration::from_millis(stale));
            let before = std::fs::read_to_string(&path).unwrap();
            wait_until(|| std::fs::read_to_string(&path).unwrap() != before);
            assert!(UpdateLock::take(&path, Arc::new(clock.clone()), stale)
                .unwrap()
                .is_none());
        }
        drop(held);
        assert!(!path.exists());
    }

    fn wait_until(f: impl Fn() -> bool) {
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while !f() {
            assert!(std::time::Instant::now() < deadline, "never happened");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    fn plant(path: &Path, pid: u32, beat_ms: u64, token: &str) {
        LockFile {
            pid,
            host: hgauto_core::session::hostname(),
            token: token.into(),
            taken_ms: beat_ms,
            heartbeat_ms: beat_ms,
        }
        .write(path)
        .unwrap();
    }

    #[test]
    fn a_crashed_holder_is_taken_over_at_once_and_a_stuck_one_when_stale() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lock");
        let clock: SharedClock = Arc::new(ManualClock::new(10_000));
        // A pid that no longer exists: a child that has been reaped.
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let dead = child.id();
        child.wait().unwrap();
        plant(&path, dead, 10_000, "crashed");
        assert!(UpdateLock::take(&path, clock.clone(), STALE)
            .unwrap()
            .is_some());
        // A live holder (this process, another token) whose heartbeat is fresh is kept;
        // once its heartbeat is stale it is taken over.
        plant(&path, std::process::id(), 10_000, "other");
        assert!(UpdateLock::take(&path, clock.clone(), STALE)
            .unwrap()
            .is_none());
        let later: SharedClock = Arc::new(ManualClock::new(10_000 + STALE));
        let taken = UpdateLock::take(&path, later, STALE).unwrap();
        assert!(taken.is_some());
    }

    #[test]
    fn a_holder_that_lost_its_lock_does_not_remove_the_new_holders() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lock");
        let clock: SharedClock = Arc::new(ManualClock::new(10_000));
        let first = UpdateLock::take(&path, clock.clone(), STALE)
            .unwrap()
            .unwrap();
        // Someone else took it over (as if our heartbeat had stopped).
        plant(&path, std::process::id(), 10_000, "second");
        drop(first);
        let left = std::fs::read_to_string(&path).unwrap();
        assert!(left.contains("second"), "{left}");
    }
}
