//! Caps and planted files: archive bombs (a sparse tar.xz and a zip64 that unpack to 10 GB,
//! a zip that lies about its size, too many entries), a chunked body longer than the size
//! the caller expects, and a part file or sidecar planted in the destination directory.

use hgauto_testkit::support;

use std::io::{Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use hgauto_ci::download::{
    download, extract, extract_with, ArchiveFormat, DownloadOptions, ExtractLimits,
};
use hgauto_core::retry::RetryPolicy;
use hgauto_core::Error;
use support::{blob, sha256, FaultProxy, Faults, Nginx};

const TEN_GB: u64 = 10_000_000_000;

/// Writes `v` into a 12-byte tar number field in base-256 (GNU's form for big values).
fn base256(field: &mut [u8; 12], v: u64) {
    field.fill(0);
    field[0] = 0x80;
    field[4..].copy_from_slice(&v.to_be_bytes());
}

fn octal(field: &mut [u8; 12], v: u64) {
    let s = format!("{v:011o}\0");
    field.copy_from_slice(s.as_bytes());
}

/// A tar holding one GNU sparse entry of `real` bytes whose only data is 512 bytes of `A`
/// at offset 0: a few KB of archive.
fn sparse_tar(name: &str, real: u64) -> Vec<u8> {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::GNUSparse);
    h.set_mode(0o644);
    h.set_size(512);
    h.set_path(name).unwrap();
    let gnu = h.as_gnu_mut().unwrap();
    octal(&mut gnu.sparse[0].offset, 0);
    octal(&mut gnu.sparse[0].numbytes, 512);
    // GNU tar ends the map with an empty block at the end of the file.
    base256(&mut gnu.sparse[1].offset, real);
    octal(&mut gnu.sparse[1].numbytes, 0);
    base256(&mut gnu.realsize, real);
    h.set_cksum();
    let mut b = tar::Builder::new(Vec::new());
    b.append(&h, &[b'A'; 512][..]).unwrap();
    b.into_inner().unwrap()
}

fn xz(data: &[u8]) -> Vec<u8> {
    let mut e = xz2::write::XzEncoder::new(Vec::new(), 6);
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

/// A raw deflate stream of `n` MiB of zeros: one flushed block repeated (every back
/// reference in it points at zeros, so the repeats decode to zeros too), then a final
/// empty block. About 1 KB per MiB.
fn deflate_zeros(mib: u64) -> Vec<u8> {
    let mut c = flate2::Compress::new(flate2::Compression::best(), false);
    let mut block = Vec::with_capacity(4096);
    c.compress_vec(&vec![0u8; 1 << 20], &mut block, flate2::FlushCompress::Sync)
        .unwrap();
    let mut out = Vec::with_capacity(block.len() * mib as usize + 16);
    for _ in 0..mib {
        out.extend_from_slice(&block);
    }
    out.extend_from_slice(&[0x03, 0x00]); // a final, empty fixed-Huffman block
    out
}

/// A zip64 archive with one deflated entry: `body` decodes to `real` bytes, and the headers
/// declare `declared` bytes (honest when they are equal).
fn zip64(name: &str, body: &[u8], declared: u64, crc: u32) -> Vec<u8> {
    let mut out = Vec::new();
    let le16 = |v: u16| v.to_le_bytes();
    let le32 = |v: u32| v.to_le_bytes();
    let extra = |declared: u64, compressed: u64| {
        let mut e = Vec::new();
        e.extend_from_slice(&le16(1));
        e.extend_from_slice(&le16(16));
        e.extend_from_slice(&declared.to_le_bytes());
        e.extend_from_slice(&compressed.to_le_bytes());
        e
    };
    let ex = extra(declared, body.len() as u64);
    out.extend_from_slice(&le32(0x04034b50));
    for v in [45u16, 0, 8, 0, 0] {
        out.extend_from_slice(&le16(v));
    }
    out.extend_from_slice(&le32(crc));
    out.extend_from_slice(&le32(u32::MAX));
    out.extend_from_slice(&le32(u32::MAX));
    out.extend_from_slice(&le16(name.len() as u16));
    out.extend_from_slice(&le16(ex.len() as u16));
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(&ex);
    out.extend_from_slice(body);
    let cd_start = out.len() as u32;
    out.extend_from_slice(&le32(0x02014b50));
    for v in [0x031eu16, 45, 0, 8, 0, 0] {
        out.extend_from_slice(&le16(v));
    }
    out.extend_from_slice(&le32(crc));
    out.extend_from_slice(&le32(u32::MAX));
    out.extend_from_slice(&le32(u32::MAX));
    out.extend_from_slice(&le16(name.len() as u16));
    out.extend_from_slice(&le16(ex.len() as u16));
    for v in [0u16, 0, 0] {
        out.extend_from_slice(&le16(v));
    }
    out.extend_from_slice(&le32(0o100644 << 16));
    out.extend_from_slice(&le32(0));
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(&ex);
    let cd_len = out.len() as u32 - cd_start;
    out.extend_from_slice(&le32(0x06054b50));
    for v in [0u16, 0, 1, 1] {
        out.extend_from_slice(&le16(v));
    }
    out.extend_from_slice(&le32(cd_len));
    out.extend_from_slice(&le32(cd_start));
    out.extend_from_slice(&le16(0));
    out
}

/// The CRC-32 of `n` MiB of zeros.
fn crc_of_zeros(mib: u64) -> u32 {
    let mut crc = flate2::Crc::new();
    let zeros = vec![0u8; 1 << 20];
    for _ in 0..mib {
        crc.update(&zeros);
    }
    crc.sum()
}

/// Asserts `e` is a refusal naming the entry and the cap, and nothing is left but `keep`.
fn assert_refused(e: Error, entry: &str, cap: &str, dir: &Path, keep: &str) {
    assert!(matches!(e, Error::InvalidInput { .. }), "{e:?}");
    let text = e.to_string();
    assert!(text.contains(entry) && text.contains(cap), "{text}");
    let left: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(left, [keep], "the target and staging are gone");
}

#[test]
fn a_sparse_tar_xz_that_unpacks_to_10_gb_is_refused_by_default() {
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("bomb.tar.xz");
    std::fs::write(&archive, xz(&sparse_tar("huge.img", TEN_GB))).unwrap();
    assert!(std::fs::metadata(&archive).unwrap().len() < 4096);
    let e = extract(&archive, &dir.path().join("out"), ArchiveFormat::TarXz).unwrap_err();
    assert_refused(e, "huge.img", "8589934592 bytes", dir.path(), "bomb.tar.xz");
}

#[test]
fn a_zip64_that_unpacks_to_10_gb_is_refused_by_default() {
    let dir = tempfile::tempdir().unwrap();
    let mib = TEN_GB / (1 << 20);
    let body = deflate_zeros(mib);
    let real = mib << 20;
    let archive = dir.path().join("bomb.zip");
    std::fs::write(&archive, zip64("zeros.bin", &body, real, crc_of_zeros(mib))).unwrap();
    let e = extract(&archive, &dir.path().join("out"), ArchiveFormat::Zip).unwrap_err();
    assert_refused(e, "zeros.bin", "8589934592 bytes", dir.path(), "bomb.zip");
}

/// A zip that declares 1000 bytes and inflates to 64 MiB is stopped, not unpacked: the
/// zip reader refuses to read past the declared size, and the cap counts what is written.
#[test]
fn a_zip_that_lies_about_its_size_is_stopped() {
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("liar.zip");
    std::fs::write(&archive, zip64("liar.bin", &deflate_zeros(64), 1000, 0)).unwrap();
    let out = dir.path().join("out");
    let e = extract(&archive, &out, ArchiveFormat::Zip).unwrap_err();
    assert!(e.to_string().contains("liar.bin"), "{e}");
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
}

#[test]
fn too_many_entries_are_refused_and_the_cap_is_configurable() {
    let dir = tempfile::tempdir().unwrap();
    let mut b = tar::Builder::new(Vec::new());
    for i in 0..50 {
        let mut h = tar::Header::new_gnu();
        h.set_size(1);
        h.set_mode(0o644);
        h.set_cksum();
        b.append_data(&mut h, format!("f{i:02}"), &b"x"[..])
            .unwrap();
    }
    let archive = dir.path().join("many.tar");
    std::fs::write(&archive, b.into_inner().unwrap()).unwrap();
    let few = ExtractLimits {
        max_entries: 10,
        ..ExtractLimits::default()
    };
    let out = dir.path().join("out");
    let e = extract_with(&archive, &out, ArchiveFormat::Tar, few).unwrap_err();
    assert_refused(e, "f10", "10 entries", dir.path(), "many.tar");
    extract(&archive, &out, ArchiveFormat::Tar).unwrap();
    assert_eq!(std::fs::read_dir(&out).unwrap().count(), 50);
}

/// Within the caps a sparse entry lands with its full length but its holes unwritten.
#[test]
fn a_sparse_entry_within_the_caps_stays_sparse_on_disk() {
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("disk.tar");
    std::fs::write(&archive, sparse_tar("disk.img", 256 << 20)).unwrap();
    let out = dir.path().join("out");
    extract(&archive, &out, ArchiveFormat::Tar).unwrap();
    let m = std::fs::metadata(out.join("disk.img")).unwrap();
    assert_eq!(m.len(), 256 << 20);
    assert!(
        m.blocks() * 512 < 1 << 20,
        "{} blocks allocated",
        m.blocks()
    );
    let mut head = [0u8; 513];
    std::fs::File::open(out.join("disk.img"))
        .unwrap()
        .read_exact(&mut head)
        .unwrap();
    assert!(head[..512].iter().all(|b| *b == b'A') && head[512] == 0);
}

/// A server that sends a chunked body of `total` bytes (no length to trust), counting what
/// it managed to write before the client hung up.
fn endless_chunked(total: u64) -> (u16, Arc<AtomicU64>, std::thread::JoinHandle<()>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let written = Arc::new(AtomicU64::new(0));
    let w = written.clone();
    let server = std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().unwrap();
        let mut buf = [0u8; 4096];
        let _ = conn.read(&mut buf);
        let head = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n";
        conn.write_all(head.as_bytes()).unwrap();
        let chunk = vec![b'z'; 64 * 1024];
        while w.load(Ordering::SeqCst) < total {
            let framed = [format!("{:x}\r\n", chunk.len()).as_bytes(), &chunk, b"\r\n"].concat();
            if conn.write_all(&framed).is_err() {
                return;
            }
            w.fetch_add(chunk.len() as u64, Ordering::SeqCst);
        }
        let _ = conn.write_all(b"0\r\n\r\n");
    });
    (port, written, server)
}

#[tokio::test]
async fn a_chunked_body_longer_than_its_size_is_cut_off() {
    let total = 256u64 << 20;
    let (port, written, server) = endless_chunked(total);
    let dir = tempfile::tempdir().unwrap();
    let opts = DownloadOptions::default()
        .with_size(100_000)
        .with_retry(RetryPolicy::none());
    let url = format!("http://127.0.0.1:{port}/stream");
    let e = download(&url, &dir.path().join("f"), &opts)
        .await
        .unwrap_err();
    assert!(
        matches!(&e, Error::Integrity { actual, .. } if actual.contains("more than 100000")),
        "{e}"
    );
    tokio::task::spawn_blocking(move || server.join().unwrap())
        .await
        .unwrap();
    let sent = written.load(Ordering::SeqCst);
    assert!(sent < total, "the client read the whole {sent}-byte body");
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

/// A symlink planted where the part file goes is removed, never written through.
#[tokio::test]
async fn a_planted_part_symlink_is_not_followed() {
    let nginx = Nginx::start();
    let data = blob(256 * 1024, 7);
    nginx.serve("f.bin", &data);
    let dir = tempfile::tempdir().unwrap();
    let victim = dir.path().join("victim");
    std::fs::write(&victim, b"precious").unwrap();
    let shared = dir.path().join("shared");
    std::fs::create_dir(&shared).unwrap();
    std::os::unix::fs::symlink(&victim, shared.join(".f.bin.hgauto-part")).unwrap();
    std::os::unix::fs::symlink(&victim, shared.join(".f.bin.hgauto-lock")).unwrap();
    let dest = shared.join("f.bin");
    let opts = DownloadOptions::default().with_sha256(sha256(&data));
    download(&nginx.url("f.bin"), &dest, &opts).await.unwrap();
    assert_eq!(std::fs::read(&victim).unwrap(), b"precious");
    assert!(std::fs::symlink_metadata(&dest).unwrap().is_file());
    assert!(std::fs::read(&dest).unwrap() == data);
}

/// A part file and sidecar that another user planted (right URL hash, right validator,
/// wrong bytes) are not resumed: without a sha256 to catch it, their prefix would be
/// spliced onto the download.
#[tokio::test]
async fn a_part_file_another_user_owns_is_not_resumed() {
    let nginx = Nginx::start();
    let data = blob(2 << 20, 8);
    nginx.serve("f.bin", &data);
    let proxy = FaultProxy::start(("127.0.0.1".into(), nginx.port), Faults::cut(700_000, 1));
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("f.bin");
    let url = format!("http://127.0.0.1:{}/f.bin", proxy.port);
    let once = DownloadOptions::default().with_retry(RetryPolicy::none());
    assert!(download(&url, &dest, &once).await.is_err());
    // Make the genuine leftovers look planted: hostile bytes, owned by `nobody`.
    let part = dir.path().join(".f.bin.hgauto-part");
    let sidecar = dir.path().join(".f.bin.hgauto-part.json");
    let len = std::fs::metadata(&part).unwrap().len() as usize;
    std::fs::write(&part, vec![b'!'; len]).unwrap();
    for f in [&part, &sidecar] {
        std::os::unix::fs::chown(f, Some(65534), Some(65534)).unwrap();
    }
    let r = download(&url, &dest, &once).await.unwrap();
    assert_eq!(r.resumed, 0, "{r:?}");
    assert!(
        std::fs::read(&dest).unwrap() == data,
        "a planted prefix was spliced on"
    );
    let (m, me) = (
        std::fs::metadata(&dest).unwrap(),
        std::fs::metadata(dir.path()).unwrap(),
    );
    assert_eq!((m.uid(), m.mode() & 0o777), (me.uid(), 0o644));
}
