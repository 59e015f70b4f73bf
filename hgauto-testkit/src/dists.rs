//! Small, valid Python distributions made in the test itself: wheels and sdists with real
//! core metadata, for the PyPI publisher's checks and benchmark.

use std::io::Write;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// The `METADATA` / `PKG-INFO` text of `name` `version`.
pub fn metadata(name: &str, version: &str) -> String {
    format!(
        "Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n\
         Summary: hgauto test package\nRequires-Python: >=3.8\n\
         Classifier: Programming Language :: Python :: 3\n\n\
         A package made by hgauto's tests.\n"
    )
}

fn module(name: &str) -> String {
    name.replace(['-', '.'], "_").to_lowercase()
}

/// Writes `{name}-{version}.tar.gz` (the name with `_` for `-` and `.`, as PEP 625 and
/// setuptools write it), an sdist holding `PKG-INFO` and `payload.txt` with `payload`, into
/// `dir`.
pub fn sdist(dir: &Path, name: &str, version: &str, payload: &[u8]) -> PathBuf {
    let base = format!("{}-{version}", module(name));
    let path = dir.join(format!("{base}.tar.gz"));
    let file = std::fs::File::create(&path).expect("create sdist");
    let gz = flate2::write::GzEncoder::new(file, flate2::Compression::fast());
    let mut tar = tar::Builder::new(gz);
    let mut add = |inner: &str, data: &[u8]| {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_mtime(1_700_000_000);
        h.set_cksum();
        tar.append_data(&mut h, format!("{base}/{inner}"), data)
            .expect("append to sdist");
    };
    add("PKG-INFO", metadata(name, version).as_bytes());
    add("payload.txt", payload);
    tar.into_inner()
        .and_then(|gz| gz.finish())
        .expect("finish sdist");
    path
}

/// Writes `{name}-{version}-py3-none-any.whl` into `dir`: an installable wheel with one
/// module (`import {name}` gives `VERSION`) and `payload` as package data.
pub fn wheel(dir: &Path, name: &str, version: &str, payload: &[u8]) -> PathBuf {
    let module = module(name);
    let dist_info = format!("{module}-{version}.dist-info");
    let path = dir.join(format!("{module}-{version}-py3-none-any.whl"));
    let file = std::fs::File::create(&path).expect("create wheel");
    let mut zip = zip::ZipWriter::new(file);
    let stored =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    let files = [
        (
            format!("{module}/__init__.py"),
            format!("VERSION = {version:?}\n").into_bytes(),
        ),
        (format!("{module}/payload.bin"), payload.to_vec()),
        (
            format!("{dist_info}/METADATA"),
            metadata(name, version).into_bytes(),
        ),
        (
            format!("{dist_info}/WHEEL"),
            b"Wheel-Version: 1.0\nGenerator: hgauto-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
                .to_vec(),
        ),
    ];
    let mut record = String::new();
    for (inner, data) in &files {
        zip.start_file(inner.as_str(), stored).expect("wheel entry");
        zip.write_all(data).expect("write wheel entry");
        let digest = base64::Engine::encode(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
            Sha256::digest(data),
        );
        record.push_str(&format!("{inner},sha256={digest},{}\n", data.len()));
    }
    record.push_str(&format!("{dist_info}/RECORD,,\n"));
    zip.start_file(format!("{dist_info}/RECORD"), stored)
        .expect("wheel RECORD");
    zip.write_all(record.as_bytes()).expect("write RECORD");
    zip.finish().expect("finish wheel");
    path
}
