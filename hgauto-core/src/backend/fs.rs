//! Small file-system rules every backend shares: which mode bits travel, how a file that
//! will hold someone else's bytes is created, and how a file lands whole (by rename from a
//! temporary file beside it, so a reader never sees half of it).

use std::fs::{self, File, OpenOptions, Permissions};
use std::io::{self, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::error::{Error, IoContext};

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

/// Opens an existing file that this process may trust to be its own: never through a
/// symlink (`O_NOFOLLOW`), without blocking on a FIFO, and only a regular file with one link
/// that the effective user owns and that no one else can write. `Ok(None)` when something
/// is there but fails these checks (planted by someone else, or a link); `NotFound` when
/// nothing is there.
pub fn open_own_file(path: &Path, write: bool) -> io::Result<Option<File>> {
    let file = match OpenOptions::new()
        .read(true)
        .write(write)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => return Ok(None),
        Err(e) => return Err(e),
    };
    let m = file.metadata()?;
    // SAFETY: geteuid has no preconditions.
    let me = unsafe { libc::geteuid() };
    let own = m.file_type().is_file() && m.uid() == me && m.nlink() == 1 && m.mode() & 0o022 == 0;
    Ok(own.then_some(file))
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

/// Writes `data` to `path` by rename from a temporary file beside it, without fsync: a
/// reader never sees half a file, but a crash may lose the write (for status files,
/// claims and caches, whose loss is harmless).
pub fn write_unsynced(path: &Path, data: &[u8]) -> crate::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let (tmp, mut f) = tempfile_in(dir, 0o644)?;
    let written = f.write_all(data).at("write", &tmp, "localhost");
    drop(f);
    match written
        .and_then(|()| std::fs::rename(&tmp, path).at("rename into place", path, "localhost"))
    {
        Ok(()) => Ok(()),
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            Err(e)
        }
    }
}

/// Writes `data` to `path` by writing a sibling temporary file, syncing it, and renaming.
/// The file gets the usual mode for new files (0666 less the umask).
pub fn write_atomic(path: &Path, data: &[u8]) -> crate::Result<()> {
    write_atomic_mode(path, data, 0o666)
}

/// [`write_atomic`] for a file only its owner may read: it is 0600 from its first byte.
pub fn write_atomic_private(path: &Path, data: &[u8]) -> crate::Result<()> {
    write_atomic_mode(path, data, 0o600)
}

fn write_atomic_mode(path: &Path, data: &[u8], mode: u32) -> crate::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let (tmp, mut f) = tempfile_in(dir, mode)?;
    let landed = f
        .write_all(data)
        .at("write", &tmp, "localhost")
        .and_then(|()| f.sync_all().at("sync", &tmp, "localhost"))
        .and_then(|()| {
            drop(f);
            std::fs::rename(&tmp, path).at("rename into place", path, "localhost")
        });
    if let Err(e) = landed {
        // A failed write leaves nothing behind: no `.tmp-*` beside the target.
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    // Make the rename itself durable.
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// Removes the file at `path`; one that is already gone is not an error. `action` names
/// the removal in an error ("remove ledger record").
pub fn remove_if_exists(path: &Path, action: &'static str) -> crate::Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(crate::Error::io(action, path, "localhost", e))
        }
        _ => Ok(()),
    }
}

/// Creates a new, uniquely named temporary file in `dir` (name starts with `.tmp-`) with
/// `mode` (less the umask).
pub fn tempfile_in(dir: &Path, mode: u32) -> crate::Result<(PathBuf, std::fs::File)> {
    use std::os::unix::fs::OpenOptionsExt;
    for _ in 0..16 {
        let path = dir.join(format!(".tmp-{:016x}", rand::random::<u64>()));
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&path)
        {
            Ok(f) => return Ok((path, f)),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(Error::io("create temporary file", path, "localhost", e)),
        }
    }
    Err(Error::invalid(
        format!("directory {}", dir.display()),
        "could not create a unique temporary file",
    ))
}

/// Removes a file, symlink or whole directory tree, making read-only directories writable
/// first when that is what stops the removal.
pub fn remove_any(path: &Path) -> io::Result<()> {
    let meta = match fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    if !meta.is_dir() {
        return fs::remove_file(path);
    }
    match fs::remove_dir_all(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
            make_dirs_writable(path)?;
            fs::remove_dir_all(path)
        }
        Err(e) => Err(e),
    }
}

fn make_dirs_writable(dir: &Path) -> io::Result<()> {
    let meta = fs::symlink_metadata(dir)?;
    if !meta.is_dir() {
        return Ok(());
    }
    fs::set_permissions(
        dir,
        fs::Permissions::from_mode((meta.mode() & 0o7777) | 0o700),
    )?;
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            make_dirs_writable(&entry.path())?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_failed_atomic_write_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        // The rename fails: the target is a non-empty directory.
        let target = dir.path().join("target");
        std::fs::create_dir(&target).unwrap();
        std::fs::write(target.join("x"), "x").unwrap();
        assert!(super::write_atomic(&target, b"data").is_err());
        let left: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(left, ["target"]);
    }

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

    #[test]
    fn remove_any_handles_read_only_dirs() {
        let t = tempfile::tempdir().unwrap();
        let ro = t.path().join("ro");
        fs::create_dir_all(ro.join("inner")).unwrap();
        fs::write(ro.join("inner/f"), "x").unwrap();
        fs::set_permissions(ro.join("inner"), fs::Permissions::from_mode(0o555)).unwrap();
        fs::set_permissions(&ro, fs::Permissions::from_mode(0o555)).unwrap();
        remove_any(&ro).unwrap();
        assert!(!ro.exists());
        remove_any(&ro).unwrap();
    }
}
