//! A tar stream writer for tree transfers: directories, regular files and symlinks, in GNU
//! format (what `tar -x` on every POSIX machine reads). Long names and link targets go in
//! GNU long-name entries, sizes past the octal field in base-256, as GNU tar writes them.
//!
//! Hand-written (about a hundred lines) so that the backends, which only ever write tar,
//! compile no archive crate; reading archives is `hgauto-ci`'s (the `tar` crate).

use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt as _;
use std::path::{Component, Path};

const BLOCK: usize = 512;

/// The kind of one entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    /// A directory.
    Dir,
    /// A regular file.
    File,
    /// A symbolic link.
    Symlink,
}

impl EntryKind {
    fn flag(self) -> u8 {
        match self {
            EntryKind::File => b'0',
            EntryKind::Symlink => b'2',
            EntryKind::Dir => b'5',
        }
    }
}

/// One entry's header fields.
#[derive(Debug, Clone, Copy)]
pub struct Entry<'a> {
    /// What it is.
    pub kind: EntryKind,
    /// Its path relative to the tree's root.
    pub rel: &'a Path,
    /// Permission bits.
    pub mode: u32,
    /// Modification time (Unix seconds).
    pub mtime: u64,
    /// A file's size in bytes (0 for the others).
    pub size: u64,
    /// A symlink's target.
    pub link: Option<&'a Path>,
}

/// Writes tar entries to `out`; [`finish`](TarWriter::finish) ends the archive.
pub struct TarWriter<W: Write> {
    out: W,
}

impl<W: Write> TarWriter<W> {
    /// A writer over `out`.
    pub fn new(out: W) -> Self {
        TarWriter { out }
    }

    /// Appends one entry. A file's `data` must hold exactly `size` bytes. A path that is
    /// absolute or climbs out with `..` is refused: the archive is extracted into the
    /// target directory and only there.
    pub fn append(&mut self, entry: &Entry<'_>, data: impl Read) -> io::Result<()> {
        let Entry {
            kind,
            rel,
            mode,
            mtime,
            size,
            link,
        } = *entry;
        if rel.components().any(|c| !matches!(c, Component::Normal(_))) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("not a relative path inside the tree: {}", rel.display()),
            ));
        }
        let name = rel.as_os_str().as_bytes();
        let link = link.map(|l| l.as_os_str().as_bytes()).unwrap_or_default();
        for (bytes, flag) in [(name, b'L'), (link, b'K')] {
            if bytes.len() > 100 {
                // GNU: an entry named ././@LongLink whose data is the name, NUL-ended.
                let mut long = bytes.to_vec();
                long.push(0);
                let h = header(b"././@LongLink", 0o644, 0, long.len() as u64, flag, b"");
                self.out.write_all(&h)?;
                self.write_data(&mut long.as_slice(), long.len() as u64)?;
            }
        }
        let size = if kind == EntryKind::File { size } else { 0 };
        let h = header(name, mode, mtime, size, kind.flag(), link);
        self.out.write_all(&h)?;
        self.write_data(&mut data.take(size), size)
    }

    /// Writes the two zero blocks that end an archive, and returns the output.
    pub fn finish(mut self) -> io::Result<W> {
        self.out.write_all(&[0; 2 * BLOCK])?;
        Ok(self.out)
    }

    fn write_data(&mut self, data: &mut impl Read, size: u64) -> io::Result<()> {
        let copied = io::copy(data, &mut self.out)?;
        if copied != size {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("entry data was {copied} bytes, not {size}"),
            ));
        }
        let pad = (BLOCK - (size as usize % BLOCK)) % BLOCK;
        self.out.write_all(&[0; BLOCK][..pad])
    }
}

/// One GNU header block. Names and links past 100 bytes are cut here; the long-name entry
/// before the header carries them whole.
fn header(name: &[u8], mode: u32, mtime: u64, size: u64, flag: u8, link: &[u8]) -> [u8; BLOCK] {
    let mut h = [0u8; BLOCK];
    let cut = |b: &[u8]| b[..b.len().min(100)].to_vec();
    h[..name.len().min(100)].copy_from_slice(&cut(name));
    number(&mut h[100..108], u64::from(mode & 0o7777));
    number(&mut h[108..116], 0); // uid: extracted with --no-same-owner
    number(&mut h[116..124], 0); // gid
    number(&mut h[124..136], size);
    number(&mut h[136..148], mtime);
    h[156] = flag;
    h[157..157 + link.len().min(100)].copy_from_slice(&cut(link));
    h[257..265].copy_from_slice(b"ustar  \0"); // GNU magic and version
    h[148..156].fill(b' ');
    let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
    h[148..155].copy_from_slice(format!("{sum:06o}\0").as_bytes());
    h
}

/// A numeric field: octal with a NUL when it fits, else GNU base-256 (high bit set).
fn number(field: &mut [u8], value: u64) {
    let digits = field.len() - 1;
    let octal = format!("{value:0digits$o}");
    if octal.len() <= digits {
        field[..digits].copy_from_slice(octal.as_bytes());
        field[digits] = 0;
    } else {
        field.fill(0);
        let bytes = value.to_be_bytes();
        let n = field.len();
        field[n - 8..].copy_from_slice(&bytes);
        field[0] |= 0x80;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_past_the_octal_field_are_base_256() {
        let mut f = [0u8; 12];
        number(&mut f, 0o777);
        assert_eq!(&f, b"00000000777\0");
        number(&mut f, 1 << 40);
        assert_eq!(f[0], 0x80);
        assert_eq!(&f[4..], &(1u64 << 40).to_be_bytes());
    }

    #[test]
    fn paths_outside_the_tree_are_refused() {
        let mut w = TarWriter::new(Vec::new());
        for bad in ["../x", "/etc/passwd", "a/../../b"] {
            let entry = Entry {
                kind: EntryKind::Dir,
                rel: Path::new(bad),
                mode: 0o755,
                mtime: 0,
                size: 0,
                link: None,
            };
            let e = w.append(&entry, io::empty()).unwrap_err();
            assert!(e.to_string().contains(bad), "{e}");
        }
    }
}
