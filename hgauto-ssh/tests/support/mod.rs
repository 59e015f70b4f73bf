//! Test support: real OpenSSH `sshd` instances on loopback with generated keys, and a TCP
//! proxy that cuts a connection after N bytes.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::Duration;

use hgauto_ssh::{Auth, HostKeyPolicy, SshConfig};
use hgauto_testkit::ports::{free_port, wait_own_listener};

const SSHD: &str = "/usr/sbin/sshd";

/// The login user: `HGAUTO_TEST_SSH_USER`, else `hgauto-test` when it exists (its login
/// shell is /bin/sh, so no shell start-up noise is measured), else the current user.
pub fn user() -> String {
    if let Ok(u) = std::env::var("HGAUTO_TEST_SSH_USER") {
        return u;
    }
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    if passwd.lines().any(|l| l.starts_with("hgauto-test:")) {
        return "hgauto-test".into();
    }
    std::env::var("USER").unwrap_or_else(|_| "root".into())
}

fn keygen(path: &Path) {
    keygen_type(path, "ed25519");
}

fn keygen_type(path: &Path, kind: &str) {
    let status = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", kind, "-N", "", "-f"])
        .arg(path)
        .status()
        .expect("ssh-keygen runs (install openssh-client)");
    assert!(status.success());
}

/// The raw blob of an OpenSSH public key file (`type base64 comment`).
pub fn public_blob(pub_file: &Path) -> Vec<u8> {
    use base64::Engine as _;
    let text = std::fs::read_to_string(pub_file).unwrap();
    let b64 = text.split_whitespace().nth(1).unwrap();
    base64::engine::general_purpose::STANDARD
        .decode(b64)
        .unwrap()
}

/// A user key pair and the authorized_keys file that trusts it.
pub struct UserKeys {
    pub dir: tempfile::TempDir,
}

impl UserKeys {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        keygen(&dir.path().join("id_ed25519"));
        std::fs::copy(
            dir.path().join("id_ed25519.pub"),
            dir.path().join("authorized_keys"),
        )
        .unwrap();
        // sshd runs as root but reads authorized_keys as the user.
        set_world_readable(dir.path());
        UserKeys { dir }
    }
    /// Key pairs of several types (`ed25519`, `rsa`, `ecdsa`), all authorized.
    pub fn with_types(kinds: &[&str]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut authorized = String::new();
        for kind in kinds {
            keygen_type(&dir.path().join(format!("id_{kind}")), kind);
            authorized.push_str(
                &std::fs::read_to_string(dir.path().join(format!("id_{kind}.pub"))).unwrap(),
            );
        }
        std::fs::write(dir.path().join("authorized_keys"), authorized).unwrap();
        set_world_readable(dir.path());
        UserKeys { dir }
    }
    pub fn private(&self) -> PathBuf {
        self.dir.path().join("id_ed25519")
    }
    pub fn private_of(&self, kind: &str) -> PathBuf {
        self.dir.path().join(format!("id_{kind}"))
    }
    pub fn authorized(&self) -> PathBuf {
        self.dir.path().join("authorized_keys")
    }
}

fn set_world_readable(dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let ak = dir.join("authorized_keys");
    if ak.exists() {
        std::fs::set_permissions(ak, std::fs::Permissions::from_mode(0o644)).unwrap();
    }
}

/// A running sshd on `ip:port`, killed on drop.
pub struct Sshd {
    pub ip: String,
    pub port: u16,
    pub dir: tempfile::TempDir,
    /// The host key's type (`ed25519`, `rsa`, `ecdsa`).
    pub host_key_type: String,
    child: Child,
}

impl Sshd {
    /// Starts sshd on `ip` (e.g. "127.0.0.2") trusting `keys`.
    pub fn start(ip: &str, keys: &UserKeys) -> Sshd {
        Self::start_with(ip, keys, None, "")
    }

    /// Starts sshd with a given host key directory (to keep or change the host key) and
    /// extra config lines.
    pub fn start_with(ip: &str, keys: &UserKeys, port: Option<u16>, extra: &str) -> Sshd {
        Self::start_typed(ip, keys, port, "ed25519")
            .with_extra(extra)
            .launch()
    }

    /// Starts sshd whose only host key is of type `kind` (`ed25519`, `rsa`, `ecdsa`).
    pub fn start_typed(ip: &str, keys: &UserKeys, port: Option<u16>, kind: &str) -> SshdPlan {
        let dir = tempfile::tempdir().unwrap();
        keygen_type(&dir.path().join(format!("host_{kind}")), kind);
        SshdPlan {
            ip: ip.to_owned(),
            authorized: keys.authorized(),
            dir,
            port,
            kind: kind.to_owned(),
            extra: String::new(),
        }
    }
}

/// An sshd about to start (see [`Sshd::start_typed`]).
pub struct SshdPlan {
    ip: String,
    authorized: PathBuf,
    dir: tempfile::TempDir,
    port: Option<u16>,
    kind: String,
    extra: String,
}

impl SshdPlan {
    pub fn with_extra(mut self, extra: &str) -> Self {
        self.extra = extra.to_owned();
        self
    }

    pub fn launch(self) -> Sshd {
        let SshdPlan {
            ip,
            authorized,
            dir,
            port,
            kind,
            extra,
        } = self;
        let ip = ip.as_str();
        let extra = extra.as_str();
        std::fs::create_dir_all("/run/sshd").ok(); // privilege separation directory
        let port_wanted = port;
        let addr: std::net::Ipv4Addr = ip.parse().expect("an IPv4 loopback address");
        // A port handed out as free may be handed to another test process too: then one
        // sshd cannot bind it, and its test would talk to the other's server. Start again
        // on another port, unless the port was asked for.
        for _ in 0..10 {
            let port = port.unwrap_or_else(|| free_port(addr));
            let config = format!(
                "Port {port}\nListenAddress {ip}\nHostKey {hk}\nPidFile {pid}\nAuthorizedKeysFile {ak}\n\
                 PasswordAuthentication no\nKbdInteractiveAuthentication no\nPubkeyAuthentication yes\n\
                 UsePAM no\nStrictModes no\nPermitRootLogin yes\nX11Forwarding no\nPrintMotd no\n\
                 MaxStartups 200:30:400\nLogLevel FATAL\nSubsystem sftp internal-sftp\n{extra}\n",
                hk = dir.path().join(format!("host_{kind}")).display(),
                pid = dir.path().join("sshd.pid").display(),
                ak = authorized.display(),
            );
            let cfg = dir.path().join("sshd_config");
            std::fs::write(&cfg, config).unwrap();
            let mut child = std::process::Command::new(SSHD)
                .arg("-D")
                .arg("-e")
                .arg("-f")
                .arg(&cfg)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::inherit())
                .spawn()
                .expect("sshd starts (install openssh-server)");
            if wait_own_listener(&mut child, addr, port, "sshd", Duration::from_secs(10)) {
                return Sshd {
                    ip: ip.to_owned(),
                    port,
                    dir,
                    host_key_type: kind,
                    child,
                };
            }
            let _ = child.kill();
            let _ = child.wait();
            assert!(port_wanted.is_none(), "sshd on {ip}:{port} did not start");
        }
        panic!("sshd on {ip} lost the race for a free port ten times");
    }
}

impl Sshd {
    /// Stops this sshd and starts a new one on the same address and port with a *new* host key.
    pub fn restart_with_new_host_key(self, keys: &UserKeys) -> Sshd {
        let (ip, port) = (self.ip.clone(), self.port);
        drop(self);
        std::thread::sleep(Duration::from_millis(100));
        Self::start_with(&ip, keys, Some(port), "")
    }

    /// The host's public key blob.
    pub fn host_key(&self) -> Vec<u8> {
        public_blob(
            &self
                .dir
                .path()
                .join(format!("host_{}.pub", self.host_key_type)),
        )
    }

    /// A client config for this server, trusting its key on first use.
    pub fn config(&self, keys: &UserKeys, state: &Path) -> SshConfig {
        SshConfig::new(
            self.ip.clone(),
            self.port,
            user(),
            Auth::KeyFile {
                path: keys.private(),
                passphrase: None,
            },
            state,
        )
        .with_host_keys(HostKeyPolicy::AcceptNew)
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[allow(unused_imports)]
pub use hgauto_testkit::fault_proxy::{FaultProxy, Faults};
