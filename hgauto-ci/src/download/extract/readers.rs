//! Reading tar and zip archives entry by entry into a [`Tree`], which decides what may land.

use std::ffi::OsStr;
use std::fs::File;
use std::io::{BufReader, Read};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use super::tree::Tree;
use super::ExtractLimits;
use hgauto_core::error::{Error, Result};

/// Unpacks a tar stream into `root`.
pub(super) fn untar(
    reader: impl Read,
    root: &Path,
    archive: &str,
    limits: ExtractLimits,
) -> Result<()> {
    use tar::EntryType as T;
    let mut tree = Tree::new(root, archive, limits);
    let mut ar = tar::Archive::new(reader);
    let io = |e| Error::io("read", archive, "localhost", e);
    for entry in ar.entries().map_err(io)? {
        let mut entry = entry.map_err(io)?;
        let path = entry.path().map_err(io)?.into_owned();
        let header = entry.header();
        let kind = header.entry_type();
        let mode = header.mode().ok();
        let mtime = header.mtime().ok().and_then(|t| i64::try_from(t).ok());
        match kind {
            T::Regular | T::Continuous | T::GNUSparse => {
                // For a sparse entry this is its full (unpacked) size.
                let size = entry.size();
                tree.file(&path, mode, mtime, size, &mut entry)?;
            }
            T::Directory => tree.dir(&path, mode, mtime)?,
            T::Symlink | T::Link => {
                let target = entry
                    .link_name()
                    .map_err(io)?
                    .ok_or_else(|| tree.refuse(&path, "is a link without a target"))?
                    .into_owned();
                if kind == T::Link {
                    tree.hard_link(&path, &target)?;
                } else {
                    tree.symlink(&path, &target)?;
                }
            }
            // Metadata for the whole archive; nothing to write.
            T::XGlobalHeader => {}
            T::Char | T::Block | T::Fifo => {
                return Err(tree.refuse(
                    &path,
                    "is a device file or fifo; only files, directories and links are extracted",
                ))
            }
            other => {
                return Err(tree.refuse(
                    &path,
                    format!(
                        "has the unsupported tar entry type {:?}",
                        other.as_byte() as char
                    ),
                ))
            }
        }
    }
    tree.finish()
}

/// The file-type bits of a Unix mode.
const S_IFMT: u32 = 0o170000;
const S_IFREG: u32 = 0o100000;
const S_IFDIR: u32 = 0o040000;
const S_IFLNK: u32 = 0o120000;

/// Unpacks the zip file `archive` into `root`.
pub(super) fn unzip(archive: &Path, root: &Path, what: &str, limits: ExtractLimits) -> Result<()> {
    let file = File::open(archive).map_err(|e| Error::io("open", archive, "localhost", e))?;
    let mut zip = zip::ZipArchive::new(BufReader::new(file))
        .map_err(|e| Error::invalid(format!("zip archive {what}"), e.to_string()))?;
    let mut tree = Tree::new(root, what, limits);
    // The zip crate indexes entries by name, so a second entry of the same name would
    // silently replace the first: find it in the central directory itself.
    let start = zip.offset() + zip.central_directory_start();
    let names = central_directory_names(archive, start)
        .map_err(|e| Error::io("read", archive, "localhost", e))?;
    let mut seen = std::collections::HashSet::new();
    if let Some(dup) = names.iter().find(|n| !seen.insert(n.as_slice())) {
        return Err(tree.refuse(
            Path::new(OsStr::from_bytes(dup)),
            "appears twice in the archive",
        ));
    }
    for i in 0..zip.len() {
        let mut entry = zip
            .by_index(i)
            .map_err(|e| Error::invalid(format!("zip archive {what}"), e.to_string()))?;
        let raw = Path::new(OsStr::from_bytes(entry.name_raw())).to_owned();
        if raw.as_os_str().as_bytes().contains(&0) {
            return Err(tree.refuse(&raw, "has a NUL byte in its name"));
        }
        let unix = entry.unix_mode();
        let file_type = unix.map(|m| m & S_IFMT).filter(|t| *t != 0);
        let mode = unix.map(|m| m & 0o7777);
        match (file_type, entry.is_dir()) {
            (Some(S_IFLNK), _) => {
                let mut target = Vec::new();
                (&mut entry)
                    .take(4096)
                    .read_to_end(&mut target)
                    .map_err(|e| Error::io("read", archive, "localhost", e))?;
                tree.symlink(&raw, Path::new(OsStr::from_bytes(&target)))?;
            }
            (Some(S_IFDIR), _) | (None | Some(S_IFREG), true) => tree.dir(&raw, mode, None)?,
            (Some(S_IFREG) | None, false) => {
                let size = entry.size();
                tree.file(&raw, mode, None, size, &mut entry)?
            }
            (Some(_), _) => {
                return Err(tree.refuse(
                    &raw,
                    "is a device file, fifo or socket; only files, directories and links are \
                     extracted",
                ))
            }
        }
    }
    tree.finish()
}

/// The raw names of the central directory records starting at `start`, in order.
fn central_directory_names(archive: &Path, start: u64) -> std::io::Result<Vec<Vec<u8>>> {
    use std::io::{Seek, SeekFrom};
    let mut r = BufReader::new(File::open(archive)?);
    r.seek(SeekFrom::Start(start))?;
    let mut names = Vec::new();
    let mut fixed = [0u8; 46];
    loop {
        match r.read_exact(&mut fixed) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
            Err(e) => return Err(e),
        }
        if fixed[..4] != 0x02014b50u32.to_le_bytes() {
            break;
        }
        let len = |at: usize| u16::from_le_bytes([fixed[at], fixed[at + 1]]) as usize;
        let mut name = vec![0u8; len(28)];
        r.read_exact(&mut name)?;
        r.seek(SeekFrom::Current((len(30) + len(32)) as i64))?;
        names.push(name);
    }
    Ok(names)
}
