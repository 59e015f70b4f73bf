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
    /// The host is not recorded (with a key of this type).
    Unknown,
}

/// Checks `blob` for `name` against the file at `path` (a missing file knows no host).
pub fn check(path: &Path, name: &str, blob: &[u8]) -> Result<Verdict> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Verdict::Unknown),
        Err(e) => return Err(Error::io("read known_hosts", path, "localhost", e)),
    };
    let wanted_type = key_type(blob).unwrap_or("");
    let mut changed = None;
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut fields = line.split_whitespace();
        let (Some(names), Some(kind), Some(b64)) = (fields.next(), fields.next(), fields.next())
        else {
            continue;
        };
        if !names.split(',').any(|n| n == name) || kind != wanted_type {
            continue;
        }
        let Ok(recorded) = base64::engine::general_purpose::STANDARD.decode(b64) else {
            continue;
        };
        if recorded == blob {
            return Ok(Verdict::Match);
        }
        changed = Some(fingerprint(&recorded));
    }
    Ok(changed.map_or(Verdict::Unknown, Verdict::Changed))
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
        // Another key type for the same host is simply unknown (hosts have several keys).
        assert_eq!(
            check(&path, "[127.0.0.2]:2222", &blob("ssh-rsa", b"x")).unwrap(),
            Verdict::Unknown
        );
    }

    #[test]
    fn fingerprint_matches_openssh_format() {
        let fp = fingerprint(b"abc");
        assert!(fp.starts_with("SHA256:") && !fp.ends_with('='));
        assert_eq!(fp, "SHA256:ungWv48Bz+pBQUDeXa4iI7ADYaOWF3qctBD/YfIAFa0");
    }
}
