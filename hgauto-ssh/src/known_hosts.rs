//! hgauto's own known_hosts file, in OpenSSH's format, so it can be read with
//! `ssh -o UserKnownHostsFile=...` too, and so a file OpenSSH wrote can be used as it is.
//!
//! Lines are parsed by the `ssh-key` crate (markers, hashed names, comments, every key
//! type OpenSSH writes); what it leaves to its callers is done here: matching a host name
//! against an entry's patterns (exact names, `*` and `?` globs, `!` negations, and hashed
//! `|1|salt|hash` names, which are an HMAC-SHA1 of the name), and what the entries say about
//! a presented key. `@revoked` keys are refused; `@cert-authority` lines are ignored
//! (hgauto does not use host certificates).

use std::path::Path;

use hgauto_core::backend::fs::write_atomic;
use hgauto_core::{Error, Result};
use hmac::{Hmac, Mac};
use sha1::Sha1;
use ssh_key::known_hosts::{Entry, HostPatterns, Marker};
use ssh_key::{HashAlg, PublicKey};

/// OpenSSH's fingerprint of a key blob (`SHA256:` and unpadded base64), as `ssh-keygen -l`
/// prints it; for bytes that are not a public key, a note saying so.
pub fn fingerprint(blob: &[u8]) -> String {
    match PublicKey::from_bytes(blob) {
        Ok(key) => key.fingerprint(HashAlg::Sha256).to_string(),
        Err(e) => format!("(not an SSH public key: {e})"),
    }
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
    /// The presented key is marked `@revoked`.
    Revoked,
    /// The host is not recorded.
    Unknown,
}

/// The file's text (a missing file is empty).
fn read(path: &Path) -> Result<String> {
    match std::fs::read_to_string(path) {
        Ok(t) => Ok(t),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(String::new()),
        Err(e) => Err(Error::io("read known_hosts", path, "localhost", e)),
    }
}

/// Parses one line; `None` for blank lines, comments and lines OpenSSH would skip too
/// (logged, so a typo in a hand-edited file is visible).
fn parse_line(line: &str) -> Option<Entry> {
    let trimmed = line.trim();
    if trimmed.is_empty() || trimmed.starts_with('#') {
        return None;
    }
    match trimmed.parse::<Entry>() {
        Ok(e) => Some(e),
        Err(e) => {
            tracing::debug!(line = trimmed, error = %e, "skipping a known_hosts line");
            None
        }
    }
}

/// True when `name` (`host` or `[host]:port`) matches one OpenSSH host pattern: `*` is any
/// run of characters, `?` any one.
fn glob_matches(pattern: &str, name: &str) -> bool {
    fn go(p: &[u8], n: &[u8]) -> bool {
        match (p.first(), n.first()) {
            (None, None) => true,
            (Some(b'*'), _) => go(&p[1..], n) || (!n.is_empty() && go(p, &n[1..])),
            (Some(b'?'), Some(_)) => go(&p[1..], &n[1..]),
            (Some(a), Some(b)) if a.eq_ignore_ascii_case(b) => go(&p[1..], &n[1..]),
            _ => false,
        }
    }
    go(pattern.as_bytes(), name.as_bytes())
}

/// True when the entry's host patterns cover `name`: a hashed name equal to it, or a
/// pattern list with a positive match and no negated one.
fn covers(patterns: &HostPatterns, name: &str) -> bool {
    match patterns {
        HostPatterns::HashedName { salt, hash } => {
            let Ok(mut mac) = Hmac::<Sha1>::new_from_slice(salt) else {
                return false;
            };
            mac.update(name.as_bytes());
            mac.verify_slice(hash).is_ok()
        }
        HostPatterns::Patterns(list) => {
            let mut hit = false;
            for p in list {
                match p.strip_prefix('!') {
                    Some(neg) if glob_matches(neg, name) => return false,
                    Some(_) => {}
                    None => hit |= glob_matches(p, name),
                }
            }
            hit
        }
    }
}

/// The plain (non-marker) entries for `name`, and the keys revoked for anyone.
fn entries_for(text: &str, name: &str) -> (Vec<PublicKey>, Vec<PublicKey>) {
    let mut keys = Vec::new();
    let mut revoked = Vec::new();
    for e in text.lines().filter_map(parse_line) {
        match e.marker() {
            Some(Marker::Revoked) => revoked.push(e.public_key().clone()),
            Some(Marker::CertAuthority) => {}
            None if covers(e.host_patterns(), name) => keys.push(e.public_key().clone()),
            None => {}
        }
    }
    (keys, revoked)
}

fn blob_of(key: &PublicKey) -> Vec<u8> {
    key.to_bytes().unwrap_or_default()
}

/// The key types recorded for `name`.
pub fn recorded_types(path: &Path, name: &str) -> Result<Vec<String>> {
    let (keys, _) = entries_for(&read(path)?, name);
    let mut kinds: Vec<String> = keys
        .iter()
        .map(|k| k.algorithm().as_str().to_owned())
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

/// Removes every key recorded for `name`: its name leaves a shared line (the other names
/// stay), and a hashed line for it goes. Comments, markers and other hosts are kept as
/// they were written.
pub fn remove(path: &Path, name: &str) -> Result<()> {
    let text = read(path)?;
    let mut out = String::with_capacity(text.len());
    let mut changed = false;
    for line in text.lines() {
        let entry = parse_line(line).filter(|e| e.marker().is_none());
        match entry.as_ref().map(Entry::host_patterns) {
            Some(h @ HostPatterns::HashedName { .. }) if covers(h, name) => changed = true,
            Some(HostPatterns::Patterns(list)) if list.iter().any(|p| p == name) => {
                changed = true;
                let kept: Vec<&str> = list
                    .iter()
                    .map(String::as_str)
                    .filter(|p| *p != name)
                    .collect();
                if !kept.is_empty() {
                    let rest = line
                        .trim_start()
                        .split_once(char::is_whitespace)
                        .map_or("", |(_, r)| r.trim_start());
                    out.push_str(&kept.join(","));
                    out.push(' ');
                    out.push_str(rest);
                    out.push('\n');
                }
            }
            _ => {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    if changed {
        write_atomic(path, out.as_bytes())?;
    }
    Ok(())
}

/// Checks `blob` for `name` against the file at `path` (a missing file knows no host).
pub fn check(path: &Path, name: &str, blob: &[u8]) -> Result<Verdict> {
    let (keys, revoked) = entries_for(&read(path)?, name);
    if revoked.iter().any(|k| blob_of(k) == blob) {
        return Ok(Verdict::Revoked);
    }
    let wanted_type = key_type(blob).unwrap_or("");
    let mut changed = None;
    let mut others = Vec::new();
    for key in keys {
        let kind = key.algorithm().as_str().to_owned();
        if kind != wanted_type {
            others.push(kind);
        } else if blob_of(&key) == blob {
            return Ok(Verdict::Match);
        } else {
            changed = Some(key.fingerprint(HashAlg::Sha256).to_string());
        }
    }
    Ok(match (changed, others.is_empty()) {
        (Some(fp), _) => Verdict::Changed(fp),
        (None, false) => Verdict::OtherTypes(others),
        (None, true) => Verdict::Unknown,
    })
}

/// Appends `name`'s key to the file (atomically: read, append, rename). The blob must be
/// an SSH public key.
pub fn add(path: &Path, name: &str, blob: &[u8]) -> Result<()> {
    let key = PublicKey::from_bytes(blob)
        .map_err(|e| Error::invalid(format!("host key of {name}"), e.to_string()))?;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| Error::io("create directory", dir, "localhost", e))?;
    }
    let mut text = read(path)?;
    if !text.is_empty() && !text.ends_with('\n') {
        text.push('\n');
    }
    let line = key
        .to_openssh()
        .map_err(|e| Error::invalid(format!("host key of {name}"), e.to_string()))?;
    text.push_str(&format!("{name} {line}\n"));
    write_atomic(path, text.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    // Real public keys (ssh-keygen), as a server presents them.
    const ED1: &str = "AAAAC3NzaC1lZDI1NTE5AAAAIImmVKmR5ctSe+xkttXEBWQbSHanSV2oKO4dWrSUgXvL";
    const ED2: &str = "AAAAC3NzaC1lZDI1NTE5AAAAII302gS7mSY3Ejh72K6MnanXyvDwTMMsz2oNoxIuj3Jd";
    const ECDSA: &str = "AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBHKs2KGwRy778qTI6RAGCLtm8jkWfRHrGq6qvl5aVtvZpnnxuZUPPyMTS9fvPtiK414JoUOvbfG7vskn5wZoNvw=";

    fn blob(b64: &str) -> Vec<u8> {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD
            .decode(b64)
            .unwrap()
    }

    #[test]
    fn unknown_then_match_then_changed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kh");
        let (k1, k2) = (blob(ED1), blob(ED2));
        let host = "[127.0.0.2]:2222";
        assert_eq!(check(&path, host, &k1).unwrap(), Verdict::Unknown);
        add(&path, host, &k1).unwrap();
        assert_eq!(check(&path, host, &k1).unwrap(), Verdict::Match);
        assert_eq!(
            check(&path, host, &k2).unwrap(),
            Verdict::Changed(fingerprint(&k1))
        );
        assert_eq!(
            check(&path, "[127.0.0.3]:2222", &k1).unwrap(),
            Verdict::Unknown
        );
        // Another key type for a host we know is not trusted on first use.
        assert_eq!(
            check(&path, host, &blob(ECDSA)).unwrap(),
            Verdict::OtherTypes(vec!["ssh-ed25519".into()])
        );
        assert_eq!(recorded_types(&path, host).unwrap(), ["ssh-ed25519"]);
        add(&path, "i-0abc,i-0def", &k2).unwrap();
        remove(&path, "i-0abc").unwrap();
        assert_eq!(check(&path, "i-0abc", &k2).unwrap(), Verdict::Unknown);
        assert_eq!(check(&path, "i-0def", &k2).unwrap(), Verdict::Match);
        assert_eq!(check(&path, host, &k1).unwrap(), Verdict::Match);
    }

    #[test]
    fn reads_what_openssh_writes_hashed_names_globs_negations_and_markers() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kh");
        // `ssh-keygen -H` form of "build1.example.org": HMAC-SHA1 keyed with the salt.
        let salt = b"0123456789abcdef0123";
        let mut mac = Hmac::<Sha1>::new_from_slice(salt).unwrap();
        mac.update(b"build1.example.org");
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::STANDARD;
        let hashed = format!(
            "|1|{}|{}",
            b64.encode(salt),
            b64.encode(mac.finalize().into_bytes())
        );
        std::fs::write(
            &path,
            format!(
                "# a comment\n\
                 {hashed} ssh-ed25519 {ED1} build1\n\
                 *.ci.example.org,!bad.ci.example.org ssh-ed25519 {ED2}\n\
                 @revoked * ecdsa-sha2-nistp256 {ECDSA}\n\
                 @cert-authority *.example.org ssh-ed25519 {ED2}\n\
                 this line is not a key\n"
            ),
        )
        .unwrap();
        let (k1, k2) = (blob(ED1), blob(ED2));
        assert_eq!(
            check(&path, "build1.example.org", &k1).unwrap(),
            Verdict::Match
        );
        assert_eq!(
            check(&path, "build2.example.org", &k1).unwrap(),
            Verdict::Unknown
        );
        assert_eq!(
            check(&path, "w7.ci.example.org", &k2).unwrap(),
            Verdict::Match
        );
        assert_eq!(
            check(&path, "bad.ci.example.org", &k2).unwrap(),
            Verdict::Unknown
        );
        assert_eq!(
            check(&path, "anything", &blob(ECDSA)).unwrap(),
            Verdict::Revoked
        );
        // A hashed line goes when its host is removed; the rest stays as written.
        remove(&path, "build1.example.org").unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(!text.contains(&hashed), "{text}");
        assert!(text.contains("# a comment") && text.contains("@revoked"));
        assert_eq!(
            check(&path, "build1.example.org", &k1).unwrap(),
            Verdict::Unknown
        );
    }

    #[test]
    fn fingerprint_matches_ssh_keygen() {
        // ssh-keygen -lf of ED1's public key.
        assert_eq!(
            fingerprint(&blob(ED1)),
            "SHA256:IfEy1sVYstilPyABbkVnoWAyr9wOFzOjpct8hW3D6iI"
        );
        assert!(fingerprint(b"abc").starts_with("(not an SSH public key"));
    }
}
