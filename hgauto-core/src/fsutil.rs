//! Small file-system rules every backend shares: which mode bits travel, and how a file
//! that will hold someone else's bytes is created.

use std::fs::{File, OpenOptions, Permissions};
use std::io;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// The mode bits hgauto carries from one place to another: read, write and execute for
/// owner, group and others. Setuid, setgid and sticky bits never travel: a file copied,
/// fetched or unpacked by a build tool must not gain privileges on the way.
pub const MODE_MASK: u32 = 0o777;

/// Creates a new file at `path` that only its owner can read (0600 from the first byte,
/// whatever the umask), failing if anything (a file or a symlink) is already there.
pub fn create_private(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
}

/// Sets `file`'s permission bits to `mode & MODE_MASK` through its handle.
pub fn set_mode(file: &File, mode: u32) -> io::Result<()> {
    file.set_permissions(Permissions::from_mode(mode & MODE_MASK))
}

/// An exclusive `flock` on a file (created if missing, never removed), held until dropped.
/// It excludes other processes and other open descriptions in this one.
#[derive(Debug)]
pub struct ExclusiveLock(#[allow(dead_code)] File);

impl ExclusiveLock {
    /// Waits until this caller holds the lock on `path`.
    pub fn acquire(path: &Path) -> crate::Result<ExclusiveLock> {
        use std::os::unix::io::AsRawFd;
        let f = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)
            .map_err(|e| crate::Error::io("open", path, "localhost", e))?;
        // SAFETY: flock on a descriptor we own; released when the file is closed.
        if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) } != 0 {
            return Err(crate::Error::io(
                "lock",
                path,
                "localhost",
                io::Error::last_os_error(),
            ));
        }
        Ok(ExclusiveLock(f))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn private_files_are_0600_and_never_follow_links() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        let f = create_private(&p).unwrap();
        assert_eq!(std::fs::metadata(&p).unwrap().mode() & 0o7777, 0o600);
        set_mode(&f, 0o4755).unwrap();
        assert_eq!(std::fs::metadata(&p).unwrap().mode() & 0o7777, 0o755);
        let victim = dir.path().join("victim");
        std::fs::write(&victim, "keep").unwrap();
        std::os::unix::fs::symlink(&victim, dir.path().join("l")).unwrap();
        assert!(create_private(&dir.path().join("l")).is_err());
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep");
    }
}
