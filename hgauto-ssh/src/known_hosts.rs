//! hgauto's own known_hosts file, in OpenSSH's format (`name keytype base64-blob`), so it
//! can be read with `ssh -o UserKnownHostsFile=...` too.

use std::path::Path;

use base64::Engine as _;
use hgauto_core::ledger::write_atomic;
use hgauto_core::{Error, Result};
use sha2::{Digest, Sha256};

/// OpenSSH's fingerprint of a key blob: `SHA256:` + unpadded base64 of its sha256.
pub fn fingerprint(blob: &[u8]) -> String {
    format!(
        "SHA256:{}",
        base64::engine::general_purpose::STANDARD_NO_PAD.encode(Sha256::digest(blob))
    )
}

/// The key type name inside an SSH public key blob (its first length-prefixed string).
pub fn key_type(blob: &[u8]) -> Option<&str> {
    let len = u32::from_be_bytes(blob.get(..4)?.try_into().ok()?) as usize;
    std::str::from_utf8(blob.get(4..4 + len)?).ok()
}

/// What known_hosts says about a presented key.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// The host is recorded with this key.
    Match,
    /// The host is recorded with another key of the same type (fingerprint given).
    Changed(String),
    /// The host is recorded, but only with keys of other types (those types).
    OtherTypes(Vec<String>),
    /// The host is not recorded.
    Unknown,
}

/// The entries of the file at `path` (a missing file has none): (names, type, blob).
fn entries(path: &Path) -> Result<Vec<(String, String, Vec<u8>)>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io("read known_hosts", path, "localhost", e)),
    };
    Ok(text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|line| {
            let mut f = line.split_whitespace();
            let (names, kind, b64) = (f.next()?, f.next()?, f.next()?);
            let blob = base64::engine::general_purpose::STANDARD.decode(b64).ok()?;
            Some((names.to_owned(), kind.to_owned(), blob))
        })
        .collect())
}

fn names_include(names: &str, name: &str) -> bool {
    names.split(',').any(|n| n == name)
}

/// The key types recorded for `name`.
pub fn recorded_types(path: &Path, name: &str) -> Result<Vec<String>> {
    let mut kinds: Vec<String> = entries(path)?
        .into_iter()
        .filter(|(names, _, _)| names_include(names, name))
        .map(|(_, kind, _)| kind)
        .collect();
    kinds.dedup();
    Ok(kinds)
}

/// The libssh2 host key methods that present a key of type `kind` (an RSA key is offered
/// with SHA-2 signatures first: current OpenSSH refuses SHA-1 `ssh-rsa` signatures).
pub fn host_key_methods(kind: &str) -> String {
    match kind {
        "ssh-rsa" => "rsa-sha2-512,rsa-sha2-256,ssh-rsa".to_owned(),
        other => other.to_owned(),
    }
}

/// Removes every key recorded for `name` (other names of a shared line stay).
pub fn remove(path: &Path, name: &str) -> Result<()> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::io("read known_hosts", path, "localhost", e)),
    };
    let mut out = String::with_capacity(text.len());
    let mut changed = false;
    for line in text.lines() {
        let mut fields = line.splitn(2, char::is_whitespace);
        let names = fields.next().unwrap_or("");
        if line.trim_start().starts_with('#') || !names_include(names, name) {
            out.push_str(line);
            out.push('\n');
            continue;
        }
        changed = true;
        let kept: Vec<&str> = names.split(',').filter(|n| *n != name).collect();
        if !kept.is_empty() {
            out.push_str(&kept.join(","));
            out.push(' ');
            out.push_str(fields.next().unwrap_or("").trim_start());
            out.push('\n');
        }
    }
    if changed {
        write_atomic(path, out.as_bytes())?;
    }
    Ok(())
}

/// Checks `blob` for `name` against the file at `path` (a missing file knows no host).
pub fn check(path: &Path, name: &str, blob: &[u8]) -> Result<Verdict> {
    let wanted_type = key_type(blob).unwrap_or("");
    let mut changed = None;
    let mut others = Vec::new();
    for (names, kind, recorded) in entries(path)? {
        if !names_include(&names, name) {
            continue;
        }
        if kind != wanted_type {
            others.push(kind);
        } else if recorded == blob {
            return Ok(Verdict::Match);
        } else {
            changed = Some(fingerprint(&recorded));
        }
    }
    Ok(match (changed, others.is_empty()) {
        (Some(fp), _) => Verdict::Changed(fp),
        (None, false) => Verdict::OtherTypes(others),
        (None, true) => Verdict::Unknown,
    })
}

/// Appends `name`'s key to the file (atomically: read, append, rename).
pub fn add(path: &Path, name: &str, blob: &[u8]) -> Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| Error::io("create directory", dir, "localhost", e))?;
    }
    let mut text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(Error::io("read known_hosts", path, "localhost", e)),
    };
    if !text.is_empty() && !text.ends_with('\n') {
        text.push('\n');
    }
    let kind = key_type(blob).unwrap_or("unknown");
    text.push_str(&format!(
        "{name} {kind} {}\n",
        base64::engine::general_purpose::STANDARD.encode(blob)
    ));
    write_atomic(path, text.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blob(kind: &str, body: &[u8]) -> Vec<u8> {
        let mut b = (kind.len() as u32).to_be_bytes().to_vec();
        b.extend_from_slice(kind.as_bytes());
        b.extend_from_slice(body);
        b
    }

    #[test]
    fn unknown_then_match_then_changed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kh");
        let k1 = blob("ssh-ed25519", b"one");
        let k2 = blob("ssh-ed25519", b"two");
        assert_eq!(
            check(&path, "[127.0.0.2]:2222", &k1).unwrap(),
            Verdict::Unknown
        );
        add(&path, "[127.0.0.2]:2222", &k1).unwrap();
        assert_eq!(
            check(&path, "[127.0.0.2]:2222", &k1).unwrap(),
            Verdict::Match
        );
        assert_eq!(
            check(&path, "[127.0.0.2]:2222", &k2).unwrap(),
            Verdict::Changed(fingerprint(&k1))
        );
        assert_eq!(
            check(&path, "[127.0.0.3]:2222", &k1).unwrap(),
            Verdict::Unknown
        );
        // Another key type for a host we know is not trusted on first use.
        assert_eq!(
            check(&path, "[127.0.0.2]:2222", &blob("ssh-rsa", b"x")).unwrap(),
            Verdict::OtherTypes(vec!["ssh-ed25519".into()])
        );
        assert_eq!(
            recorded_types(&path, "[127.0.0.2]:2222").unwrap(),
            ["ssh-ed25519"]
        );
        add(&path, "i-0abc,i-0def", &k2).unwrap();
        remove(&path, "i-0abc").unwrap();
        assert_eq!(check(&path, "i-0abc", &k2).unwrap(), Verdict::Unknown);
        assert_eq!(check(&path, "i-0def", &k2).unwrap(), Verdict::Match);
        assert_eq!(
            check(&path, "[127.0.0.2]:2222", &k1).unwrap(),
            Verdict::Match
        );
    }

    #[test]
    fn fingerprint_matches_openssh_format() {
        let fp = fingerprint(b"abc");
        assert!(fp.starts_with("SHA256:") && !fp.ends_with('='));
        assert_eq!(fp, "SHA256:ungWv48Bz+pBQUDeXa4iI7ADYaOWF3qctBD/YfIAFa0");
    }
}
