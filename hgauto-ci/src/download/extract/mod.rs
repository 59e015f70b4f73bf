//! [`extract`]: unpack zip and tar archives (plain, gzip, bzip2, xz, zstd) into a
//! directory. No entry of any format can create, write, chmod or link anything outside it
//! (see [`tree`] for how): absolute names, `..`, links that leave the directory or climb out
//! of another link, entries under a link or a file, duplicate names, hard links to anything
//! but an earlier file of the archive, and device files and fifos are all refused with an
//! [`Error::InvalidInput`] naming the entry. Permission bits are kept, setuid, setgid and
//! sticky bits are not. [`ExtractLimits`] caps the total bytes unpacked (8 GiB by default)
//! and the number of entries (200,000), counting what is written, not what the archive
//! declares, so a few-KB bomb cannot fill the disk; runs of zeros are written as holes.
//! Extraction happens in a private temporary sibling directory that is
//! renamed into place only when every entry succeeded, so a refused archive leaves nothing.

mod readers;
mod tree;

use std::fs::File;
use std::io::BufReader;
use std::path::Path;

use hgauto_core::error::{Error, Result};
use readers::{untar, unzip};

/// Archive formats [`extract`] understands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArchiveFormat {
    /// `.zip`
    Zip,
    /// `.tar`
    Tar,
    /// `.tar.gz`, `.tgz`
    TarGz,
    /// `.tar.bz2`, `.tbz2`
    TarBz2,
    /// `.tar.xz`, `.txz`
    TarXz,
    /// `.tar.zst`, `.tzst`
    TarZst,
}

impl ArchiveFormat {
    /// Every file-name extension [`from_name`](Self::from_name) recognises, longest first
    /// within a family (`.tar.gz` before `.tar`), with the format it maps to.
    pub const EXTENSIONS: [(&'static str, ArchiveFormat); 10] = [
        ("zip", ArchiveFormat::Zip),
        ("tar.gz", ArchiveFormat::TarGz),
        ("tgz", ArchiveFormat::TarGz),
        ("tar.bz2", ArchiveFormat::TarBz2),
        ("tbz2", ArchiveFormat::TarBz2),
        ("tar.xz", ArchiveFormat::TarXz),
        ("txz", ArchiveFormat::TarXz),
        ("tar.zst", ArchiveFormat::TarZst),
        ("tzst", ArchiveFormat::TarZst),
        ("tar", ArchiveFormat::Tar),
    ];

    /// Guesses the format from a file name or URL path.
    pub fn from_name(name: &str) -> Option<Self> {
        let n = name.to_ascii_lowercase();
        Self::EXTENSIONS
            .into_iter()
            .find(|(ext, _)| n.strip_suffix(ext).is_some_and(|rest| rest.ends_with('.')))
            .map(|(_, f)| f)
    }
}

impl std::str::FromStr for ArchiveFormat {
    type Err = Error;

    /// Parses an extension without its dot (`"tar.gz"`, `"tgz"`, `"zip"`; any case).
    fn from_str(s: &str) -> Result<Self> {
        let lower = s.to_ascii_lowercase();
        Self::EXTENSIONS
            .into_iter()
            .find(|(ext, _)| *ext == lower)
            .map(|(_, f)| f)
            .ok_or_else(|| {
                let known: Vec<&str> = Self::EXTENSIONS.iter().map(|(ext, _)| *ext).collect();
                Error::invalid(
                    format!("archive format {s:?}"),
                    format!("must be one of {}", known.join(", ")),
                )
            })
    }
}

/// How much one archive may unpack to. Going past either cap refuses the archive, naming
/// the entry, and leaves nothing at the target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ExtractLimits {
    /// Total bytes of all regular files (their logical size, holes included).
    pub max_bytes: u64,
    /// Entries of any kind: files, directories, links.
    pub max_entries: u64,
}

impl ExtractLimits {
    /// The default cap on unpacked bytes: 8 GiB.
    pub const DEFAULT_MAX_BYTES: u64 = 8 << 30;
    /// The default cap on entries: 200,000.
    pub const DEFAULT_MAX_ENTRIES: u64 = 200_000;
}

impl Default for ExtractLimits {
    fn default() -> Self {
        ExtractLimits {
            max_bytes: Self::DEFAULT_MAX_BYTES,
            max_entries: Self::DEFAULT_MAX_ENTRIES,
        }
    }
}

/// Extracts `archive` into `dest` (which must not exist, or be an empty directory), under
/// the default [`ExtractLimits`].
pub fn extract(archive: &Path, dest: &Path, format: ArchiveFormat) -> Result<()> {
    extract_with(archive, dest, format, ExtractLimits::default())
}

/// Extracts `archive` into `dest` under `limits`.
pub fn extract_with(
    archive: &Path,
    dest: &Path,
    format: ArchiveFormat,
    limits: ExtractLimits,
) -> Result<()> {
    if let Ok(mut entries) = std::fs::read_dir(dest) {
        if entries.next().is_some() {
            return Err(Error::invalid(
                format!("extraction target {}", dest.display()),
                "exists and is not empty",
            ));
        }
    }
    let parent = dest
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).map_err(|e| Error::io("create", parent, "localhost", e))?;
    let staging = tempfile::Builder::new()
        .prefix(".hgauto-extract-")
        .tempdir_in(parent)
        .map_err(|e| Error::io("create", parent, "localhost", e))?;
    let root = staging.path();
    let what = archive.display().to_string();
    let unpacked = (|| {
        let file = File::open(archive).map_err(|e| Error::io("open", archive, "localhost", e))?;
        let reader = BufReader::with_capacity(1 << 20, file);
        match format {
            ArchiveFormat::Zip => unzip(archive, root, &what, limits),
            ArchiveFormat::Tar => untar(reader, root, &what, limits),
            ArchiveFormat::TarGz => {
                untar(flate2::read::GzDecoder::new(reader), root, &what, limits)
            }
            ArchiveFormat::TarBz2 => {
                untar(bzip2::read::BzDecoder::new(reader), root, &what, limits)
            }
            ArchiveFormat::TarXz => untar(xz2::read::XzDecoder::new(reader), root, &what, limits),
            ArchiveFormat::TarZst => {
                let z = zstd::stream::read::Decoder::with_buffer(reader)
                    .map_err(|e| Error::io("read", archive, "localhost", e))?;
                untar(z, root, &what, limits)
            }
        }
    })();
    let staged = staging.keep();
    let placed = unpacked.and_then(|()| {
        // The staging directory was private (0700) while entries landed.
        std::fs::set_permissions(&staged, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .map_err(|e| Error::io("chmod", &staged, "localhost", e))?;
        let _ = std::fs::remove_dir(dest); // an empty directory may be replaced
        std::fs::rename(&staged, dest).map_err(|e| Error::io("rename into", dest, "localhost", e))
    });
    if placed.is_err() {
        // Directories may be read-only by now: remove_any makes them writable first.
        let _ = hgauto_core::backend::fs::remove_any(&staged);
    }
    placed
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    /// (path, kind, contents or link target) of one raw tar entry.
    type RawEntry<'a> = (&'a str, tar::EntryType, &'a str);

    fn tar_with(entries: &[RawEntry]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (path, kind, data) in entries {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(*kind);
            h.set_mode(0o755);
            if kind.is_symlink() {
                h.set_size(0);
                // set_path/set_link_name refuse `..`; write the raw bytes like an attacker.
                let name = &mut h.as_old_mut().name;
                name[..path.len()].copy_from_slice(path.as_bytes());
                let link = &mut h.as_old_mut().linkname;
                link[..data.len()].copy_from_slice(data.as_bytes());
                h.set_cksum();
                b.append(&h, std::io::empty()).unwrap();
            } else {
                h.set_size(data.len() as u64);
                let name = &mut h.as_old_mut().name;
                name[..path.len()].copy_from_slice(path.as_bytes());
                h.set_cksum();
                b.append(&h, data.as_bytes()).unwrap();
            }
        }
        b.into_inner().unwrap()
    }

    #[test]
    fn formats_are_guessed_from_names() {
        assert_eq!(
            ArchiveFormat::from_name("a/b.tar.gz"),
            Some(ArchiveFormat::TarGz)
        );
        assert_eq!(
            ArchiveFormat::from_name("x.TZST"),
            Some(ArchiveFormat::TarZst)
        );
        assert_eq!(ArchiveFormat::from_name("x.zip"), Some(ArchiveFormat::Zip));
        assert_eq!(ArchiveFormat::from_name("x.txt"), None);
        assert_eq!(ArchiveFormat::from_name("notar"), None);
    }

    #[test]
    fn formats_parse_from_extensions() {
        assert_eq!(
            "TGZ".parse::<ArchiveFormat>().unwrap(),
            ArchiveFormat::TarGz
        );
        assert_eq!("tar".parse::<ArchiveFormat>().unwrap(), ArchiveFormat::Tar);
        let err = "rar".parse::<ArchiveFormat>().unwrap_err().to_string();
        assert!(err.contains("\"rar\"") && err.contains("tar.zst"), "{err}");
        assert!(".zip".parse::<ArchiveFormat>().is_err());
    }

    #[test]
    fn tar_keeps_modes_and_links_inside() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a.tar");
        std::fs::write(
            &a,
            tar_with(&[
                ("bin/tool", tar::EntryType::Regular, "#!/bin/sh\n"),
                ("bin/alias", tar::EntryType::Symlink, "tool"),
            ]),
        )
        .unwrap();
        let out = dir.path().join("out");
        extract(&a, &out, ArchiveFormat::Tar).unwrap();
        let m = std::fs::metadata(out.join("bin/tool")).unwrap();
        assert_eq!(m.permissions().mode() & 0o777, 0o755);
        assert_eq!(
            std::fs::read_link(out.join("bin/alias")).unwrap(),
            Path::new("tool")
        );
    }

    #[test]
    fn escaping_entries_are_refused_and_nothing_is_left() {
        let cases: &[(&[RawEntry], &str)] = &[
            (&[("../evil", tar::EntryType::Regular, "x")], "`..`"),
            (&[("/etc/evil", tar::EntryType::Regular, "x")], "absolute"),
            (
                &[("ok/link", tar::EntryType::Symlink, "../../etc")],
                "outside",
            ),
            (&[("link", tar::EntryType::Symlink, "/etc")], "absolute"),
            (
                &[
                    ("d", tar::EntryType::Symlink, "."),
                    ("d/x", tar::EntryType::Regular, "x"),
                ],
                "under a symlink",
            ),
        ];
        for (entries, why) in cases {
            let dir = tempfile::tempdir().unwrap();
            let a = dir.path().join("a.tar");
            std::fs::write(&a, tar_with(entries)).unwrap();
            let out = dir.path().join("out");
            let e = extract(&a, &out, ArchiveFormat::Tar)
                .unwrap_err()
                .to_string();
            assert!(e.contains(why), "{entries:?}: {e}");
            assert!(!out.exists(), "{entries:?} left the target");
            let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
            assert_eq!(left.len(), 1, "staging directory left behind");
        }
    }

    #[test]
    fn zip_slip_is_refused_and_good_zips_keep_modes() {
        use std::io::Write;
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("slip.zip");
        let mut w = zip::ZipWriter::new(File::create(&a).unwrap());
        let o = zip::write::SimpleFileOptions::default().unix_permissions(0o644);
        w.start_file("ok.txt", o).unwrap();
        w.write_all(b"ok").unwrap();
        w.start_file("../../escaped.txt", o).unwrap();
        w.write_all(b"evil").unwrap();
        w.finish().unwrap();
        let out = dir.path().join("out");
        let e = extract(&a, &out, ArchiveFormat::Zip)
            .unwrap_err()
            .to_string();
        assert!(e.contains("escaped.txt") && e.contains("`..`"), "{e}");
        assert!(!out.exists() && !dir.path().join("../escaped.txt").exists());

        let good = dir.path().join("good.zip");
        let mut w = zip::ZipWriter::new(File::create(&good).unwrap());
        w.start_file("bin/run", o.unix_permissions(0o750)).unwrap();
        w.write_all(b"#!/bin/sh\n").unwrap();
        w.finish().unwrap();
        extract(&good, &out, ArchiveFormat::Zip).unwrap();
        let m = std::fs::metadata(out.join("bin/run")).unwrap();
        assert_eq!(m.permissions().mode() & 0o777, 0o750);
    }
}
