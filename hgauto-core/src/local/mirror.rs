//! Mirroring a directory tree on this host: the local backend's `sync_tree`.
//!
//! Regular files are compared by size and modification time (like `rsync`'s quick check)
//! and copied only when they differ, through a temporary file and a rename. Modes,
//! modification times and symlinks (as links, never followed) are kept; names are raw
//! bytes, so any file name the filesystem allows survives.

use std::collections::HashSet;
use std::ffi::OsString;
use std::fs;
use std::io;
use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};
use std::path::Path;

use filetime::FileTime;

use crate::backend::fs::{create_private, remove_any, set_mode, MODE_MASK};
use crate::machine::{SyncOptions, SyncReport};

/// Makes `dst` mirror `src` (which must be a directory).
pub fn mirror_tree(src: &Path, dst: &Path, options: &SyncOptions) -> io::Result<SyncReport> {
    let meta = fs::metadata(src)?;
    if !meta.is_dir() {
        return Err(io::Error::new(
            io::ErrorKind::NotADirectory,
            format!("{} is not a directory", src.display()),
        ));
    }
    let mut report = SyncReport::default();
    mirror_dir(src, dst, &meta, options, &mut report)?;
    Ok(report)
}

fn mirror_dir(
    src: &Path,
    dst: &Path,
    src_meta: &fs::Metadata,
    options: &SyncOptions,
    report: &mut SyncReport,
) -> io::Result<()> {
    match fs::symlink_metadata(dst) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => {
            remove_any(dst)?;
            fs::create_dir(dst)?;
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => fs::create_dir_all(dst)?,
        Err(e) => return Err(e),
    }
    // Writable while we fill it; the source mode is applied at the end.
    fs::set_permissions(dst, fs::Permissions::from_mode(0o700))?;

    let mut seen: HashSet<OsString> = HashSet::new();
    for entry in fs::read_dir(src)? {
        let entry = entry?;
        let name = entry.file_name();
        let s = entry.path();
        let d = dst.join(&name);
        let sm = fs::symlink_metadata(&s)?;
        let dm = fs::symlink_metadata(&d).ok();
        seen.insert(name);
        let ft = sm.file_type();
        if ft.is_symlink() {
            let target = fs::read_link(&s)?;
            if dm.as_ref().is_some_and(|m| m.file_type().is_symlink())
                && fs::read_link(&d)? == target
            {
                continue;
            }
            if dm.is_some() {
                remove_any(&d)?;
            }
            symlink(&target, &d)?;
            report.symlinks += 1;
        } else if ft.is_dir() {
            mirror_dir(&s, &d, &sm, options, report)?;
        } else if ft.is_file() {
            let same = dm.as_ref().is_some_and(|m| {
                m.is_file()
                    && m.len() == sm.len()
                    && m.mtime() == sm.mtime()
                    && m.mtime_nsec() == sm.mtime_nsec()
            });
            if same {
                let dm = dm.as_ref().map(|m| m.mode() & 0o7777);
                if dm != Some(sm.mode() & MODE_MASK) {
                    fs::set_permissions(&d, fs::Permissions::from_mode(sm.mode() & MODE_MASK))?;
                }
                report.files_unchanged += 1;
                continue;
            }
            if dm.as_ref().is_some_and(|m| !m.is_file()) {
                remove_any(&d)?;
            }
            copy_file_atomic(&s, &d, &sm)?;
            report.files_sent += 1;
            report.bytes_sent += sm.len();
        } else {
            tracing::warn!(path = %s.display(), "skipping special file (fifo, socket or device)");
        }
    }

    if options.delete {
        for entry in fs::read_dir(dst)? {
            let entry = entry?;
            if !seen.contains(&entry.file_name()) {
                remove_any(&entry.path())?;
                report.deleted += 1;
            }
        }
    }
    fs::set_permissions(dst, fs::Permissions::from_mode(src_meta.mode() & MODE_MASK))?;
    filetime::set_file_mtime(dst, FileTime::from_last_modification_time(src_meta))?;
    Ok(())
}

/// Copies `src` to `dst` through a sibling temporary file and a rename, with the source's
/// permission bits (never setuid, setgid or sticky) and modification time. The temporary
/// file is private (0600) until its mode is set, just before the rename.
pub fn copy_file_atomic(src: &Path, dst: &Path, src_meta: &fs::Metadata) -> io::Result<()> {
    let parent = dst.parent().unwrap_or(Path::new("."));
    let tmp = parent.join(format!(".hgauto-tmp-{:016x}", rand::random::<u64>()));
    let result = (|| {
        let mut out = create_private(&tmp)?;
        io::copy(&mut fs::File::open(src)?, &mut out)?;
        set_mode(&out, src_meta.mode())?;
        filetime::set_file_handle_times(
            &out,
            None,
            Some(FileTime::from_last_modification_time(src_meta)),
        )?;
        drop(out);
        fs::rename(&tmp, dst)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_sync_sends_only_changes_and_deletes_extras() {
        let src = tempfile::tempdir().unwrap();
        let dst = tempfile::tempdir().unwrap();
        let d = dst.path().join("out");
        fs::create_dir(src.path().join("sub")).unwrap();
        fs::write(src.path().join("sub/a"), "a").unwrap();
        fs::write(src.path().join("b"), "bb").unwrap();
        symlink("sub/a", src.path().join("link")).unwrap();
        let opts = SyncOptions {
            delete: true,
            compress: false,
        };
        let r1 = mirror_tree(src.path(), &d, &opts).unwrap();
        assert_eq!((r1.files_sent, r1.symlinks, r1.bytes_sent), (2, 1, 3));

        fs::write(d.join("extra"), "x").unwrap();
        // Same size, different mtime: must be re-sent.
        fs::write(src.path().join("b"), "BB").unwrap();
        filetime::set_file_mtime(src.path().join("b"), FileTime::from_unix_time(1, 0)).unwrap();
        let r2 = mirror_tree(src.path(), &d, &opts).unwrap();
        assert_eq!(
            (r2.files_sent, r2.files_unchanged, r2.symlinks, r2.deleted),
            (1, 1, 0, 1)
        );
        assert_eq!(fs::read(d.join("b")).unwrap(), b"BB");
        assert!(!d.join("extra").exists());
    }
}
