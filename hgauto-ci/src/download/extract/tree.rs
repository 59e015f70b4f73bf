//! The one place archive entries become files: [`Tree`] writes them into a fresh, private
//! staging directory so that no entry can create, write, chmod or link anything outside it.
//!
//! - Names are normalised (`./a` is `a`); `..`, absolute names and names that clash (the
//!   same path twice, a path under a file or under a symlink of the archive) are refused,
//!   whatever the order of the entries.
//! - No symlink exists while files, directories and hard links are written: symlinks are
//!   created last, so nothing is ever written through one. Files are opened with
//!   `O_CREAT|O_EXCL|O_NOFOLLOW` and mode 0600, and get their mode through the open handle.
//! - A symlink's target must stay inside the tree when resolved, and may not climb (`..`)
//!   after passing through another symlink of the archive, whose landing place a lexical
//!   check cannot know. Hard links may only point at a regular file of the same archive.
//! - Modes keep only the permission bits (0o777): no setuid, setgid or sticky bit lands.
//!   Directory modes are applied last, deepest first, so a read-only directory never stops
//!   the extraction.

use std::collections::HashMap;
use std::fs::{File, OpenOptions, Permissions};
use std::io::Read;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use super::ExtractLimits;
use hgauto_core::backend::fs::MODE_MASK;
use hgauto_core::error::{Error, Result};

/// What an archive put at a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// A directory, named by an entry or implied by a deeper one.
    Dir,
    /// A regular file (or a hard link to one).
    File,
    /// A symlink (created at the end).
    Symlink,
}

/// The staging tree one archive is extracted into.
pub(super) struct Tree<'a> {
    root: &'a Path,
    archive: &'a str,
    limits: ExtractLimits,
    /// Bytes and entries unpacked so far, checked against `limits`.
    bytes: u64,
    entries: u64,
    kinds: HashMap<PathBuf, Kind>,
    symlinks: Vec<(PathBuf, PathBuf)>,
    dir_modes: Vec<(PathBuf, u32, Option<i64>)>,
}

impl<'a> Tree<'a> {
    /// A tree rooted at `root` (an empty directory only this process writes), for the
    /// archive named `archive` in errors.
    pub(super) fn new(root: &'a Path, archive: &'a str, limits: ExtractLimits) -> Self {
        Tree {
            root,
            archive,
            limits,
            bytes: 0,
            entries: 0,
            kinds: HashMap::new(),
            symlinks: Vec::new(),
            dir_modes: Vec::new(),
        }
    }

    /// An error naming the archive and the entry.
    pub(super) fn refuse(&self, entry: &Path, why: impl Into<String>) -> Error {
        Error::invalid(
            format!("archive {}: entry {}", self.archive, entry.display()),
            why.into(),
        )
    }

    /// The entry's path relative to the root, or an error if it could leave it. `None` for
    /// the root itself (`.`, `./`).
    fn relative(&self, raw: &Path) -> Result<Option<PathBuf>> {
        let mut out = PathBuf::new();
        for c in raw.components() {
            match c {
                Component::Normal(p) => out.push(p),
                Component::CurDir => {}
                Component::ParentDir => return Err(self.refuse(raw, "contains `..`")),
                Component::RootDir | Component::Prefix(_) => {
                    return Err(self.refuse(raw, "is an absolute path"))
                }
            }
        }
        Ok((!out.as_os_str().is_empty()).then_some(out))
    }

    /// Records that the archive puts a `kind` at `rel`, refusing clashes with what it
    /// already put there or above it.
    fn claim(&mut self, raw: &Path, rel: &Path, kind: Kind) -> Result<()> {
        self.entries += 1;
        if self.entries > self.limits.max_entries {
            return Err(self.refuse(
                raw,
                format!(
                    "is past the cap of {} entries in one archive (ExtractLimits::max_entries)",
                    self.limits.max_entries
                ),
            ));
        }
        let mut above = PathBuf::new();
        let parents: Vec<_> = rel.components().collect();
        for c in &parents[..parents.len() - 1] {
            above.push(c);
            match self.kinds.get(&above) {
                Some(Kind::Symlink) => return Err(self.refuse(raw, "lies under a symlink")),
                Some(Kind::File) => {
                    return Err(self.refuse(raw, format!("lies under the file {}", above.display())))
                }
                Some(Kind::Dir) => {}
                None => {
                    self.kinds.insert(above.clone(), Kind::Dir);
                }
            }
        }
        match (self.kinds.get(rel), kind) {
            (None, _) => {
                self.kinds.insert(rel.to_owned(), kind);
                Ok(())
            }
            (Some(Kind::Dir), Kind::Dir) => Ok(()),
            (Some(_), _) => Err(self.refuse(
                raw,
                "appears twice in the archive (or clashes with a directory)",
            )),
        }
    }

    /// Creates the real directories above `rel` (mode 0700 until the end), checking that
    /// each one is a directory and not a link.
    fn make_parents(&self, rel: &Path) -> Result<()> {
        let mut p = self.root.to_path_buf();
        let parts: Vec<_> = rel.components().collect();
        for c in &parts[..parts.len() - 1] {
            p.push(c);
            match std::fs::symlink_metadata(&p) {
                Ok(m) if m.file_type().is_dir() => {}
                Ok(_) => {
                    return Err(self.refuse(rel, "lies under something that is not a directory"))
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    std::fs::DirBuilder::new()
                        .mode(0o700)
                        .create(&p)
                        .map_err(|e| Error::io("create directory", &p, "localhost", e))?;
                }
                Err(e) => return Err(Error::io("inspect", &p, "localhost", e)),
            }
        }
        Ok(())
    }

    /// A directory entry; its mode (and mtime) are applied at the end.
    pub(super) fn dir(&mut self, raw: &Path, mode: Option<u32>, mtime: Option<i64>) -> Result<()> {
        let Some(rel) = self.relative(raw)? else {
            return Ok(());
        };
        self.claim(raw, &rel, Kind::Dir)?;
        self.make_parents(&rel)?;
        let path = self.root.join(&rel);
        match std::fs::symlink_metadata(&path) {
            Ok(m) if m.file_type().is_dir() => {}
            Ok(_) => return Err(self.refuse(raw, "clashes with another entry")),
            Err(_) => std::fs::DirBuilder::new()
                .mode(0o700)
                .create(&path)
                .map_err(|e| Error::io("create directory", &path, "localhost", e))?,
        }
        self.dir_modes
            .push((rel, mode.unwrap_or(0o755) & MODE_MASK, mtime));
        Ok(())
    }

    /// A regular file with the bytes of `data`, which says it holds `declared` bytes (an
    /// archive may lie: the bytes are counted as they are written, too).
    pub(super) fn file(
        &mut self,
        raw: &Path,
        mode: Option<u32>,
        mtime: Option<i64>,
        declared: u64,
        data: &mut dyn Read,
    ) -> Result<()> {
        let Some(rel) = self.relative(raw)? else {
            return Err(self.refuse(raw, "is a file named like the archive's root"));
        };
        self.claim(raw, &rel, Kind::File)?;
        if self.bytes.saturating_add(declared) > self.limits.max_bytes {
            return Err(self.over_bytes(raw));
        }
        self.make_parents(&rel)?;
        let path = self.root.join(&rel);
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&path)
            .map_err(|e| Error::io("create", &path, "localhost", e))?;
        let room = self.limits.max_bytes - self.bytes;
        let written = copy_sparse(data, &mut file, room)
            .map_err(|e| Error::io("extract", &path, "localhost", e))?;
        if written > room {
            return Err(self.over_bytes(raw));
        }
        self.bytes += written;
        set_mode_and_mtime(&file, &path, mode.unwrap_or(0o644), mtime)
    }

    fn over_bytes(&self, raw: &Path) -> Error {
        self.refuse(
            raw,
            format!(
                "would unpack the archive past its cap of {} bytes (ExtractLimits::max_bytes)",
                self.limits.max_bytes
            ),
        )
    }

    /// A hard link to `target`, a regular file written earlier from the same archive.
    pub(super) fn hard_link(&mut self, raw: &Path, target: &Path) -> Result<()> {
        let Some(rel) = self.relative(raw)? else {
            return Err(self.refuse(raw, "is a link named like the archive's root"));
        };
        let to = self
            .relative(target)
            .map_err(|_| self.refuse(raw, "is a hard link to a path outside the target"))?
            .filter(|t| self.kinds.get(t) == Some(&Kind::File))
            .ok_or_else(|| {
                self.refuse(
                    raw,
                    format!(
                        "is a hard link to {}, which is not a file earlier in the archive",
                        target.display()
                    ),
                )
            })?;
        self.claim(raw, &rel, Kind::File)?;
        self.make_parents(&rel)?;
        let (from, path) = (self.root.join(&to), self.root.join(&rel));
        std::fs::hard_link(&from, &path).map_err(|e| Error::io("link", &path, "localhost", e))
    }

    /// A symlink to `target`; checked and created by [`finish`](Self::finish).
    pub(super) fn symlink(&mut self, raw: &Path, target: &Path) -> Result<()> {
        let Some(rel) = self.relative(raw)? else {
            return Err(self.refuse(raw, "is a link named like the archive's root"));
        };
        if target.as_os_str().is_empty() {
            return Err(self.refuse(raw, "is a link without a target"));
        }
        if target.is_absolute() {
            return Err(self.refuse(raw, "is a link to an absolute path"));
        }
        self.claim(raw, &rel, Kind::Symlink)?;
        self.symlinks.push((rel, target.to_owned()));
        Ok(())
    }

    /// Checks that `target`, read from the directory of the link at `rel`, stays inside
    /// the root with every symlink of the archive taken into account.
    fn check_target(&self, rel: &Path, target: &Path) -> Result<()> {
        let mut at: Vec<&std::ffi::OsStr> = rel
            .parent()
            .into_iter()
            .flat_map(|p| p.components())
            .map(|c| c.as_os_str())
            .collect();
        let mut through_link = false;
        for c in target.components() {
            match c {
                Component::Normal(n) => {
                    at.push(n);
                    let here: PathBuf = at.iter().collect();
                    through_link |= self.kinds.get(&here) == Some(&Kind::Symlink);
                }
                Component::CurDir => {}
                Component::ParentDir if through_link => {
                    return Err(self.refuse(
                        rel,
                        "is a link that climbs (`..`) out of another symlink; where it lands \
                         cannot be checked",
                    ))
                }
                Component::ParentDir => {
                    if at.pop().is_none() {
                        return Err(self.refuse(rel, "is a link that points outside the target"));
                    }
                }
                Component::RootDir | Component::Prefix(_) => {
                    return Err(self.refuse(rel, "is a link to an absolute path"))
                }
            }
        }
        Ok(())
    }

    /// Creates the symlinks, then applies directory modes (deepest first).
    pub(super) fn finish(mut self) -> Result<()> {
        for (rel, target) in &self.symlinks {
            self.check_target(rel, target)?;
        }
        for (rel, target) in &self.symlinks {
            self.make_parents(rel)?;
            let path = self.root.join(rel);
            std::os::unix::fs::symlink(target, &path)
                .map_err(|e| Error::io("symlink", &path, "localhost", e))?;
        }
        self.dir_modes
            .sort_by_key(|(rel, _, _)| std::cmp::Reverse(rel.components().count()));
        for (rel, mode, mtime) in &self.dir_modes {
            let path = self.root.join(rel);
            let dir = OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC)
                .open(&path)
                .map_err(|e| Error::io("open directory", &path, "localhost", e))?;
            set_mode_and_mtime(&dir, &path, *mode, *mtime)?;
        }
        Ok(())
    }
}

/// Copies `data` into `file`, at most `room + 1` bytes (so a caller sees it went over), and
/// returns how many it read. Runs of zeros become holes rather than written blocks, so a
/// sparse entry stays sparse on disk.
fn copy_sparse(data: &mut dyn Read, file: &mut File, room: u64) -> std::io::Result<u64> {
    use std::io::{Seek, SeekFrom, Write};
    let mut limited = data.take(room.saturating_add(1));
    let mut buf = vec![0u8; 64 * 1024];
    let mut total = 0u64;
    let mut hole = false;
    loop {
        let n = match limited.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        total += n as u64;
        if buf[..n].iter().all(|b| *b == 0) {
            file.seek(SeekFrom::Current(n as i64))?;
            hole = true;
        } else {
            file.write_all(&buf[..n])?;
            hole = false;
        }
    }
    if hole {
        file.set_len(total)?; // a trailing hole still counts in the file's length
    }
    Ok(total)
}

/// Sets permission bits (masked to 0o777) and, when known, the mtime through the handle.
fn set_mode_and_mtime(file: &File, path: &Path, mode: u32, mtime: Option<i64>) -> Result<()> {
    file.set_permissions(Permissions::from_mode(mode & MODE_MASK))
        .map_err(|e| Error::io("chmod", path, "localhost", e))?;
    if let Some(t) = mtime {
        let t = filetime::FileTime::from_unix_time(t, 0);
        filetime::set_file_handle_times(file, None, Some(t))
            .map_err(|e| Error::io("set mtime of", path, "localhost", e))?;
    }
    Ok(())
}
