//! The hostile-archive battery: zip and tar archives built the way an attacker builds them
//! (raw names, link chains, `./` aliases, duplicates, hard links, absolute names, device
//! files, a link replaced by a directory). Each must end with a typed error and the victim
//! file outside the target unchanged, and leave nothing behind.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use hgauto_ci::download::{extract, ArchiveFormat};
use hgauto_core::Error;

/// One raw archive entry.
#[derive(Clone, Debug)]
enum E {
    File(&'static str, &'static str),
    FileMode(&'static str, &'static str, u32),
    Dir(&'static str),
    Symlink(&'static str, String),
    HardLink(&'static str, String),
    CharDevice(&'static str),
    Fifo(&'static str),
}

/// A tar with exactly these names and link targets (no normalisation, as an attacker
/// writes them).
fn raw_tar(entries: &[E]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for e in entries {
        let mut h = tar::Header::new_gnu();
        let (name, kind, data, link, mode): (&str, tar::EntryType, &[u8], &str, u32) = match e {
            E::File(n, d) => (n, tar::EntryType::Regular, d.as_bytes(), "", 0o644),
            E::FileMode(n, d, m) => (n, tar::EntryType::Regular, d.as_bytes(), "", *m),
            E::Dir(n) => (n, tar::EntryType::Directory, b"", "", 0o755),
            E::Symlink(n, t) => (n, tar::EntryType::Symlink, b"", t.as_str(), 0o777),
            E::HardLink(n, t) => (n, tar::EntryType::Link, b"", t.as_str(), 0o644),
            E::CharDevice(n) => (n, tar::EntryType::Char, b"", "", 0o644),
            E::Fifo(n) => (n, tar::EntryType::Fifo, b"", "", 0o644),
        };
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_size(data.len() as u64);
        let old = h.as_old_mut();
        old.name[..name.len()].copy_from_slice(name.as_bytes());
        old.linkname[..link.len()].copy_from_slice(link.as_bytes());
        h.set_cksum();
        b.append(&h, data).unwrap();
    }
    b.into_inner().unwrap()
}

/// A zip (stored, no compression) with exactly these names and Unix modes; symlinks hold
/// their target as content, as Info-ZIP writes them.
fn raw_zip(entries: &[E]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let mut central = Vec::new();
    let mut count = 0u16;
    for e in entries {
        let (name, data, mode): (&str, &[u8], u32) = match e {
            E::File(n, d) => (n, d.as_bytes(), 0o100644),
            E::FileMode(n, d, m) => (n, d.as_bytes(), 0o100000 | m),
            E::Dir(n) => (n, b"", 0o040755),
            E::Symlink(n, t) => (n, t.as_bytes(), 0o120777),
            E::CharDevice(n) => (n, b"", 0o020644),
            E::Fifo(n) => (n, b"", 0o010644),
            E::HardLink(..) => return None, // zip has no hard links
        };
        let mut crc = flate2::Crc::new();
        crc.update(data);
        let crc = crc.sum();
        let offset = out.len() as u32;
        let mut local = Vec::new();
        local.extend_from_slice(&0x04034b50u32.to_le_bytes());
        local.extend_from_slice(&20u16.to_le_bytes());
        local.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0x21, 0]); // flags, method, time, date
        local.extend_from_slice(&crc.to_le_bytes());
        local.extend_from_slice(&(data.len() as u32).to_le_bytes());
        local.extend_from_slice(&(data.len() as u32).to_le_bytes());
        local.extend_from_slice(&(name.len() as u16).to_le_bytes());
        local.extend_from_slice(&0u16.to_le_bytes());
        local.extend_from_slice(name.as_bytes());
        out.extend_from_slice(&local);
        out.extend_from_slice(data);
        central.extend_from_slice(&0x02014b50u32.to_le_bytes());
        central.extend_from_slice(&((3u16 << 8) | 20).to_le_bytes()); // made by Unix
        central.extend_from_slice(&20u16.to_le_bytes());
        central.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0x21, 0]);
        central.extend_from_slice(&crc.to_le_bytes());
        central.extend_from_slice(&(data.len() as u32).to_le_bytes());
        central.extend_from_slice(&(data.len() as u32).to_le_bytes());
        central.extend_from_slice(&(name.len() as u16).to_le_bytes());
        central.extend_from_slice(&[0; 8]); // extra, comment, disk, internal attributes
        central.extend_from_slice(&(mode << 16).to_le_bytes());
        central.extend_from_slice(&offset.to_le_bytes());
        central.extend_from_slice(name.as_bytes());
        count += 1;
    }
    let cd_offset = out.len() as u32;
    out.extend_from_slice(&central);
    out.extend_from_slice(&0x06054b50u32.to_le_bytes());
    out.extend_from_slice(&[0, 0, 0, 0]);
    out.extend_from_slice(&count.to_le_bytes());
    out.extend_from_slice(&count.to_le_bytes());
    out.extend_from_slice(&(central.len() as u32).to_le_bytes());
    out.extend_from_slice(&cd_offset.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    Some(out)
}

/// The layout every case uses: `<tmp>/victim.txt` and `<tmp>/victims/` beside
/// `<tmp>/work/out`, the extraction target. The staging directory is a sibling of the
/// target, so `../..` from it (or from the target) is `<tmp>`.
struct Scene {
    tmp: tempfile::TempDir,
}

impl Scene {
    fn new() -> Scene {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(tmp.path().join("victim.txt"), "original").unwrap();
        std::fs::create_dir(tmp.path().join("victims")).unwrap();
        std::fs::set_permissions(
            tmp.path().join("victims"),
            std::fs::Permissions::from_mode(0o755),
        )
        .unwrap();
        std::fs::create_dir(tmp.path().join("work")).unwrap();
        Scene { tmp }
    }

    fn target(&self) -> std::path::PathBuf {
        self.tmp.path().join("work/out")
    }

    fn run(&self, format: ArchiveFormat, bytes: &[u8]) -> hgauto_core::Result<()> {
        let archive = self.tmp.path().join("a.bin");
        std::fs::write(&archive, bytes).unwrap();
        extract(&archive, &self.target(), format)
    }

    /// Nothing outside the target changed, and nothing was left in `work/`.
    fn assert_untouched(&self, case: &str) {
        let t = self.tmp.path();
        assert_eq!(
            std::fs::read_to_string(t.join("victim.txt")).unwrap(),
            "original",
            "{case}: the victim file was overwritten"
        );
        let m = std::fs::symlink_metadata(t.join("victims")).unwrap();
        assert!(m.is_dir(), "{case}: victims/ replaced");
        assert_eq!(
            m.permissions().mode() & 0o7777,
            0o755,
            "{case}: victims/ chmodded"
        );
        let inside: Vec<_> = std::fs::read_dir(t.join("victims")).unwrap().collect();
        assert!(
            inside.is_empty(),
            "{case}: something was written into victims/"
        );
        let mut names: Vec<String> = std::fs::read_dir(t)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, ["a.bin", "victim.txt", "victims", "work"], "{case}");
        let left: Vec<_> = std::fs::read_dir(t.join("work")).unwrap().collect();
        assert!(left.is_empty(), "{case}: left behind {left:?}");
    }
}

fn up(n: usize) -> String {
    vec![".."; n].join("/")
}

/// The battery: (name, entries, words the error must contain).
fn hostile_cases() -> Vec<(&'static str, Vec<E>, &'static str)> {
    // From the staging dir (work/.hgauto-extract-*), `../..` is the scene's root.
    vec![
        (
            "the reported chain: up -> ., esc -> up/up/../../victim, then a file ./esc",
            vec![
                E::Symlink("up", ".".into()),
                E::Symlink("esc", format!("up/up/{}/victim.txt", up(2))),
                E::File("./esc", "pwned"),
            ],
            "",
        ),
        (
            "a directory entry through the chain chmods the victim directory",
            vec![
                E::Symlink("up", ".".into()),
                E::Symlink("esc", format!("up/up/{}/victims", up(2))),
                E::Dir("./esc/"),
            ],
            "",
        ),
        (
            "a link that climbs out of another link, then a link through it",
            vec![
                E::Symlink("a", ".".into()),
                E::Symlink("b", "a/..".into()),
                E::Symlink("c", "b/../victim.txt".into()),
            ],
            "symlink",
        ),
        (
            "a file under a link",
            vec![E::Symlink("d", ".".into()), E::File("d/x", "x")],
            "under a symlink",
        ),
        (
            "a file under a link that points outside",
            vec![
                E::Symlink("out", format!("{}/victims", up(2))),
                E::File("out/planted", "x"),
            ],
            "",
        ),
        (
            "./ alias of an earlier file",
            vec![E::File("a", "first"), E::File("./a", "second")],
            "twice",
        ),
        (
            "duplicate names",
            vec![E::File("a", "first"), E::File("a", "second")],
            "twice",
        ),
        (
            "a link replaced by a directory, then a file under it",
            vec![
                E::Symlink("d", format!("{}/victims", up(2))),
                E::Dir("d"),
                E::File("d/planted", "x"),
            ],
            "",
        ),
        (
            "a directory replaced by a link, then a file under it",
            vec![
                E::Dir("d"),
                E::Symlink("d", format!("{}/victims", up(2))),
                E::File("d/planted", "x"),
            ],
            "",
        ),
        (
            "hard link to outside",
            vec![E::HardLink("h", format!("{}/victim.txt", up(2)))],
            "hard link",
        ),
        (
            "hard link to an absolute path",
            vec![E::HardLink("h", "/etc/passwd".into())],
            "hard link",
        ),
        (
            "hard link to a symlink of the archive",
            vec![
                E::Symlink("l", format!("{}/victim.txt", up(2))),
                E::HardLink("h", "l".into()),
            ],
            "",
        ),
        (
            "absolute file name",
            vec![E::File("/tmp/hgauto-absolute-entry", "x")],
            "absolute",
        ),
        ("`..` in a name", vec![E::File("a/../../x", "x")], "`..`"),
        ("a character device", vec![E::CharDevice("dev")], "device"),
        ("a fifo", vec![E::Fifo("fifo")], "fifo"),
        (
            "a file under a file",
            vec![E::File("f", "x"), E::File("f/g", "y")],
            "under the file",
        ),
    ]
}

#[test]
fn hostile_archives_are_refused_and_touch_nothing_outside() {
    for (case, entries, words) in hostile_cases() {
        for format in [ArchiveFormat::Tar, ArchiveFormat::Zip] {
            let bytes = match format {
                ArchiveFormat::Zip => match raw_zip(&entries) {
                    Some(b) => b,
                    None => continue,
                },
                _ => raw_tar(&entries),
            };
            let scene = Scene::new();
            let r = scene.run(format, &bytes);
            let case = format!("{case} ({format:?})");
            match r {
                Err(Error::InvalidInput {
                    ref what,
                    ref reason,
                }) => {
                    let text = format!("{what}: {reason}");
                    assert!(text.contains("entry"), "{case}: {text}");
                    assert!(text.contains(words), "{case}: wanted {words:?} in {text}");
                }
                other => panic!("{case}: expected a typed refusal, got {other:?}"),
            }
            assert!(!scene.target().exists(), "{case}: the target exists");
            scene.assert_untouched(&case);
            assert!(
                !Path::new("/tmp/hgauto-absolute-entry").exists(),
                "{case}: absolute entry written"
            );
        }
    }
}

#[test]
fn good_archives_keep_files_links_and_modes_but_no_setuid() {
    let entries = vec![
        E::Dir("bin/"),
        E::FileMode("bin/tool", "#!/bin/sh\n", 0o4755),
        E::FileMode("bin/private", "k", 0o600),
        E::Symlink("bin/alias", "tool".into()),
        E::Symlink("lib/current", "../bin".into()),
        E::File("./docs/readme", "hi"),
        E::File("docs/other", "x"),
    ];
    for format in [ArchiveFormat::Tar, ArchiveFormat::Zip] {
        let bytes = match format {
            ArchiveFormat::Zip => raw_zip(&entries).unwrap(),
            _ => raw_tar(&entries),
        };
        let scene = Scene::new();
        scene.run(format, &bytes).unwrap();
        let out = scene.target();
        let mode = |p: &str| std::fs::metadata(out.join(p)).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode("bin/tool"), 0o755, "{format:?}: setuid dropped");
        assert_eq!(mode("bin/private"), 0o600, "{format:?}");
        assert_eq!(
            std::fs::read_to_string(out.join("lib/current/tool")).unwrap(),
            "#!/bin/sh\n"
        );
        assert_eq!(
            std::fs::read_link(out.join("bin/alias")).unwrap(),
            Path::new("tool")
        );
        assert_eq!(
            std::fs::read_to_string(out.join("docs/readme")).unwrap(),
            "hi"
        );
    }
    // Tar hard links to an earlier file of the archive are kept.
    let scene = Scene::new();
    let tar = raw_tar(&[E::File("a", "same"), E::HardLink("b", "a".into())]);
    scene.run(ArchiveFormat::Tar, &tar).unwrap();
    assert_eq!(
        std::fs::read_to_string(scene.target().join("b")).unwrap(),
        "same"
    );
}

#[test]
fn a_read_only_directory_does_not_stop_extraction() {
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Directory);
    h.set_mode(0o555);
    h.set_size(0);
    b.append_data(&mut h, "ro/", std::io::empty()).unwrap();
    let mut h = tar::Header::new_gnu();
    h.set_mode(0o644);
    h.set_size(1);
    b.append_data(&mut h, "ro/f", &b"x"[..]).unwrap();
    let scene = Scene::new();
    scene
        .run(ArchiveFormat::Tar, &b.into_inner().unwrap())
        .unwrap();
    let m = std::fs::metadata(scene.target().join("ro")).unwrap();
    assert_eq!(m.permissions().mode() & 0o777, 0o555);
    assert_eq!(std::fs::read(scene.target().join("ro/f")).unwrap(), b"x");
}
