//! [`PartLock`]: one download at a time per destination, across threads and processes.
//!
//! Two downloads to the same `dest` would otherwise share its part file: one truncates what
//! the other is writing, and the second rename finds nothing to move. The lock is an
//! exclusive `flock` on `.<name>.hgauto-lock` next to `dest`, removed by its holder when it
//! is done. A waiter that wakes up holding a lock file that was removed meanwhile (its
//! inode is no longer the one at the path) tries again, so the removal is safe.

use std::fs::File;
use std::os::unix::fs::MetadataExt;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

use hgauto_core::error::{Error, Result};

/// Held while a download writes its part file; released (and removed) on drop.
pub(super) struct PartLock {
    path: PathBuf,
    _file: File,
}

impl PartLock {
    /// Waits (on a blocking thread) until this process holds the lock at `path`.
    pub(super) async fn acquire(path: PathBuf) -> Result<PartLock> {
        hgauto_core::backend::task::run_blocking("download", move || Self::acquire_blocking(&path))
            .await
    }

    fn acquire_blocking(path: &Path) -> Result<PartLock> {
        loop {
            let opened = match hgauto_core::backend::fs::create_private(path) {
                // Never through a planted symlink, and never blocking on a FIFO.
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    use std::os::unix::fs::OpenOptionsExt;
                    std::fs::OpenOptions::new()
                        .read(true)
                        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
                        .open(path)
                }
                other => other,
            };
            let file = match opened {
                Ok(f) => f,
                // Removed between our two opens: try again.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                // A symlink planted where the lock goes is removed, never followed.
                Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
                    std::fs::remove_file(path)
                        .map_err(|e| Error::io("remove planted link", path, "localhost", e))?;
                    continue;
                }
                Err(e) => return Err(Error::io("open lock", path, "localhost", e)),
            };
            // SAFETY: flock on a descriptor we own.
            if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } != 0 {
                let e = std::io::Error::last_os_error();
                if e.kind() == std::io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(Error::io("lock", path, "localhost", e));
            }
            let held = file.metadata().map(|m| m.ino()).ok();
            let current = std::fs::metadata(path).map(|m| m.ino()).ok();
            if held.is_some() && held == current {
                return Ok(PartLock {
                    path: path.to_owned(),
                    _file: file,
                });
            }
            // The holder before us removed this file when it finished: start over.
        }
    }
}

impl Drop for PartLock {
    fn drop(&mut self) {
        // Removed while still locked, so a waiter that gets this inode sees it is stale.
        let _ = std::fs::remove_file(&self.path);
    }
}
