//! Minisign signatures (Ed25519, the `minisign` crate), verifiable with `minisign -V`.
//!
//! Minisign signatures carry random noise, so signing the same file twice gives two
//! different `.minisig` files, and the second would conflict with the first at a
//! destination. A signature already beside the file that verifies with this key is
//! therefore kept: a re-run publishes the same bytes.

use std::io::{Read, Seek};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use minisign::{PublicKey, SecretKey, SecretKeyBox, SignatureBox};

use hgauto_core::backend::fs::write_atomic;
use hgauto_core::error::{Error, IoContext, Result};
use hgauto_core::redact::SecretString;

/// The suffix of a signature file.
pub const SIGNATURE_SUFFIX: &str = ".minisig";

/// An Ed25519 secret key in minisign's format, with its public half.
pub struct SigningKey {
    secret: SecretKey,
    public: PublicKey,
    source: String,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("source", &self.source)
            .field("key_id", &self.key_id())
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    /// Reads a secret key file (as `minisign -G` writes it). The file must not be readable
    /// or writable by group or others. `password` decrypts an encrypted key; a key made with
    /// `minisign -G -W` has none.
    pub fn from_file(path: impl AsRef<Path>, password: Option<SecretString>) -> Result<Self> {
        let path = path.as_ref();
        let meta = std::fs::metadata(path).at("inspect", path, "localhost")?;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(Error::invalid(
                format!("minisign secret key {}", path.display()),
                format!("has mode {mode:03o}: group or others may read it; `chmod 600` it first"),
            ));
        }
        let text = std::fs::read_to_string(path).at("read", path, "localhost")?;
        Self::from_text(&text, password, path.display().to_string())
    }

    /// Reads the secret key from environment variable `var` (the key file's text), and its
    /// password, if any, from `password_var`.
    pub fn from_env(var: &str, password_var: Option<&str>) -> Result<Self> {
        let password = password_var
            .and_then(|v| std::env::var(v).ok())
            .map(SecretString::new);
        Self::from_env_with_password(var, password)
    }

    /// Reads the secret key from environment variable `var` (the key file's text), unlocked
    /// with `password` when it has one.
    pub fn from_env_with_password(var: &str, password: Option<SecretString>) -> Result<Self> {
        let text = std::env::var(var)
            .ok()
            .filter(|v| !v.trim().is_empty())
            .ok_or_else(|| {
                Error::invalid(
                    format!("environment variable {var}"),
                    "is not set: it must hold a minisign secret key",
                )
            })?;
        Self::from_text(&text, password, format!("${var}"))
    }

    /// A key from the text of a minisign secret key file; `source` names it in errors.
    pub fn from_text(text: &str, password: Option<SecretString>, source: String) -> Result<Self> {
        let bad = |reason: &str| Error::invalid(format!("minisign secret key {source}"), reason);
        let text = with_checksum(text).unwrap_or_else(|| text.to_owned());
        let sk_box =
            SecretKeyBox::from_string(&text).map_err(|_| bad("is not a minisign secret key"))?;
        let secret = match password {
            Some(p) => sk_box.into_secret_key(Some(p.expose().to_owned())),
            None => sk_box.into_unencrypted_secret_key(),
        }
        .map_err(|_| bad("cannot be opened: wrong password, or an encrypted key without one"))?;
        let public =
            PublicKey::from_secret_key(&secret).map_err(|_| bad("has no usable public half"))?;
        Ok(SigningKey {
            secret,
            public,
            source,
        })
    }

    /// The public key, as `minisign -G` writes it to the `.pub` file.
    pub fn public_key_file(&self) -> Result<String> {
        self.public
            .to_box()
            .map(|b| b.into_string())
            .map_err(|e| Error::invalid("minisign public key", e.to_string()))
    }

    /// The key id, in hex as minisign prints it.
    pub fn key_id(&self) -> String {
        let mut id = [0u8; 8];
        id.copy_from_slice(&self.public.keynum()[..8]);
        format!("{:016X}", u64::from_le_bytes(id))
    }

    /// Signs `path` into `path.minisig`, unless a signature there already verifies with this
    /// key. Returns the signature file and whether it was written now.
    pub fn sign_file(&self, path: &Path) -> Result<(PathBuf, bool)> {
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        let sig_path = path.with_file_name(format!("{name}{SIGNATURE_SUFFIX}"));
        let open = || std::fs::File::open(path).at("open", path, "localhost");
        if let Ok(existing) = std::fs::read_to_string(&sig_path) {
            if self.verifies(&existing, open()?) {
                return Ok((sig_path, false));
            }
        }
        let comment = format!(
            "timestamp:{}\tfile:{name}\thashed",
            hgauto_core::clock::unix_now()
        );
        let sig = minisign::sign(
            Some(&self.public),
            &self.secret,
            std::io::BufReader::new(open()?),
            Some(&comment),
            Some(&format!("signature from hgauto, key {}", self.key_id())),
        )
        .map_err(|e| Error::invalid(format!("signing {}", path.display()), e.to_string()))?;
        write_atomic(&sig_path, sig.into_string().as_bytes())?;
        Ok((sig_path, true))
    }

    /// Whether `signature` (a `.minisig` file's text) is this key's signature of what `data`
    /// holds.
    pub fn verifies(&self, signature: &str, data: impl Read + Seek) -> bool {
        SignatureBox::from_string(signature)
            .and_then(|b| minisign::verify(&self.public, &b, data, true, false, false))
            .is_ok()
    }
}

/// Byte offsets in a decoded secret key: algorithms (signature, KDF and checksum: 2 bytes
/// each), KDF salt and limits (32 + 8 + 8), then key number (8), secret key (64) and
/// checksum (32).
const KDF_ALG: std::ops::Range<usize> = 2..4;
const KEYNUM: std::ops::Range<usize> = 54..62;
const SECRET: std::ops::Range<usize> = 62..126;
const CHECKSUM: std::ops::Range<usize> = 126..158;

/// An unencrypted key as `minisign -G -W` 0.11 (Debian's) writes it, with its checksum left
/// zero, which the crate refuses as corrupted: the same key with the checksum minisign
/// defines (BLAKE2b-256 of the signature algorithm, key number and secret key). `None` for
/// any other key, which is parsed as it is.
fn with_checksum(text: &str) -> Option<String> {
    use base64::Engine;
    use blake2::digest::consts::U32;
    use blake2::{Blake2b, Digest};
    let engine = base64::engine::general_purpose::STANDARD;
    let mut lines: Vec<&str> = text.lines().collect();
    let mut raw = engine.decode(lines.get(1)?.trim()).ok()?;
    let zero_checksum = raw.len() == CHECKSUM.end
        && raw[KDF_ALG] == [0, 0]
        && raw[CHECKSUM].iter().all(|b| *b == 0);
    if !zero_checksum {
        return None;
    }
    let mut h = Blake2b::<U32>::new();
    h.update(&raw[0..2]);
    h.update(&raw[KEYNUM]);
    h.update(&raw[SECRET]);
    let sum = h.finalize();
    raw[CHECKSUM].copy_from_slice(&sum);
    let fixed = engine.encode(&raw);
    lines[1] = &fixed;
    Some(lines.join("\n") + "\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use minisign::KeyPair;

    fn key_text() -> String {
        let kp = KeyPair::generate_unencrypted_keypair().unwrap();
        kp.sk.to_box(None).unwrap().into_string()
    }

    #[test]
    fn signing_twice_keeps_the_first_signature() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("a.tar.gz");
        std::fs::write(&file, b"payload").unwrap();
        let key = SigningKey::from_text(&key_text(), None, "test".into()).unwrap();
        let (sig, fresh) = key.sign_file(&file).unwrap();
        assert!(fresh);
        let first = std::fs::read(&sig).unwrap();
        let (_, fresh) = key.sign_file(&file).unwrap();
        assert!(!fresh);
        assert_eq!(std::fs::read(&sig).unwrap(), first);
        // Other content: signed again.
        std::fs::write(&file, b"other payload").unwrap();
        assert!(key.sign_file(&file).unwrap().1);
        // Another key: signed again.
        let other = SigningKey::from_text(&key_text(), None, "other".into()).unwrap();
        assert!(other.sign_file(&file).unwrap().1);
    }

    #[test]
    fn a_key_others_can_read_is_refused_and_debug_shows_no_key() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("key");
        let text = key_text();
        std::fs::write(&p, &text).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o640)).unwrap();
        let e = SigningKey::from_file(&p, None).unwrap_err();
        assert!(e.to_string().contains("chmod 600"), "{e}");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        let key = SigningKey::from_file(&p, None).unwrap();
        let secret_line = text.lines().nth(1).unwrap();
        let shown = format!("{key:?}");
        assert!(!shown.contains(&secret_line[..20]), "{shown}");
    }

    /// Made by Debian's `minisign -G -W` (0.11), which leaves the checksum zero. A test key,
    /// used for nothing else.
    #[test]
    fn unencrypted_keys_from_debian_minisign_open() {
        let text = "untrusted comment: minisign encrypted secret key\nRWQAAEIyAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAescwvqKBoEqOknlGDl7qVsHJyNpyeb0XwoaTRgmQUEH2Y56j5YWzd1CDer9UckkEhvaxdfPzkfF0yHIgyr5OCqwtvd/GJc6TAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n";
        let key = SigningKey::from_text(text, None, "debian".into()).unwrap();
        assert!(key
            .public_key_file()
            .unwrap()
            .contains("RWR6xzC+ooGgSlCDer9UckkEhvaxdfPzkfF0yHIgyr5OCqwtvd/GJc6T"));
    }

    #[test]
    fn encrypted_keys_need_their_password() {
        let kp = KeyPair::generate_encrypted_keypair(Some("pw-123".into())).unwrap();
        let text = kp.sk.to_box(None).unwrap().into_string();
        assert!(SigningKey::from_text(&text, None, "k".into()).is_err());
        assert!(SigningKey::from_text(&text, Some("wrong".into()), "k".into()).is_err());
        SigningKey::from_text(&text, Some("pw-123".into()), "k".into()).unwrap();
    }
}
