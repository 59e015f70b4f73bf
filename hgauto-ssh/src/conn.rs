//! One authenticated SSH connection: TCP (with `TCP_NODELAY`), handshake, host key
//! verification against hgauto's known_hosts, and authentication.

use std::net::{TcpStream, ToSocketAddrs};
use std::time::Instant;

use hgauto_core::{Error, Result};
use ssh2::Session;

use crate::config::{Auth, HostKeyPolicy, SshConfig};
use crate::known_hosts::{self, fingerprint, Verdict};

/// A connected, authenticated session and the socket it runs on.
pub(crate) struct Conn {
    pub sess: Session,
    /// A second handle on the session's socket, for `poll(2)`.
    pub tcp: TcpStream,
    pub last_keepalive: Instant,
}

/// libssh2 error codes we act on.
pub(crate) mod codes {
    pub(crate) const SOCKET_SEND: i32 = -7;
    pub(crate) const TIMEOUT: i32 = -9;
    pub(crate) const SOCKET_DISCONNECT: i32 = -13;
    pub(crate) const AUTHENTICATION_FAILED: i32 = -18;
    pub(crate) const PUBLICKEY_UNVERIFIED: i32 = -19;
    pub(crate) const EAGAIN: i32 = -37;
    pub(crate) const SOCKET_RECV: i32 = -43;
}

/// What a transport failure was doing, with the libssh2 or OS error that ended it as its
/// source.
#[derive(Debug)]
pub(crate) struct TransportError {
    what: String,
    source: Option<hgauto_core::error::BoxError>,
}

impl TransportError {
    /// `what` failed because of `source`.
    pub(crate) fn new(
        what: impl Into<String>,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        TransportError {
            what: what.into(),
            source: Some(Box::new(source)),
        }
    }

    /// `what` failed, with no lower error to tell.
    pub(crate) fn bare(what: impl Into<String>) -> Self {
        TransportError {
            what: what.into(),
            source: None,
        }
    }
}

impl std::fmt::Display for TransportError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.source {
            Some(e) => write!(f, "{}: {e}", self.what),
            None => f.write_str(&self.what),
        }
    }
}

impl std::error::Error for TransportError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source.as_deref().map(|e| e as _)
    }
}

/// A transport-level failure (the connection is unusable afterwards).
pub(crate) fn transport(cfg: &SshConfig, error: TransportError) -> Error {
    Error::Connection {
        machine: cfg.display(),
        may_have_run: false,
        source: Box::new(error),
    }
}

/// Opens a new connection to `cfg`'s host.
pub(crate) fn connect(cfg: &SshConfig) -> Result<Conn> {
    connect_with(cfg, true)
}

/// A key exchange that found no common algorithm (`LIBSSH2_ERROR_KEX_FAILURE`).
const KEX_FAILURE: i32 = -5;

fn connect_with(cfg: &SshConfig, restrict_host_keys: bool) -> Result<Conn> {
    let started = Instant::now();
    let addr = (cfg.host.as_str(), cfg.port)
        .to_socket_addrs()
        .map_err(|e| transport(cfg, TransportError::new("resolve address", e)))?
        .next()
        .ok_or_else(|| transport(cfg, TransportError::bare("resolve address: no address")))?;
    let tcp = TcpStream::connect_timeout(&addr, cfg.connect_timeout)
        .map_err(|e| transport(cfg, TransportError::new("connect", e)))?;
    // Without this, Nagle's algorithm plus delayed ACKs add ~40 ms to every channel request.
    tcp.set_nodelay(true)
        .map_err(|e| transport(cfg, TransportError::new("set TCP_NODELAY", e)))?;
    let remaining = cfg
        .connect_timeout
        .saturating_sub(started.elapsed())
        .max(std::time::Duration::from_millis(100));
    let mut sess =
        Session::new().map_err(|e| transport(cfg, TransportError::new("create session", e)))?;
    sess.set_compress(cfg.compress);
    let restricted = apply_ciphers(cfg, &sess, restrict_host_keys)?;
    sess.set_timeout(remaining.as_millis().min(u32::MAX as u128) as u32);
    let socket = tcp
        .try_clone()
        .map_err(|e| transport(cfg, TransportError::new("clone socket", e)))?;
    sess.set_tcp_stream(socket);
    if let Err(e) = sess.handshake() {
        if restricted && e.code() == ssh2::ErrorCode::Session(KEX_FAILURE) {
            // The host offers none of the key types we can check it with: connect once
            // more, unrestricted, only to learn what it presents, and refuse it.
            let presented = connect_with(cfg, false);
            return Err(match presented {
                Err(host_key @ Error::HostKey { .. }) => host_key,
                _ => transport(cfg, TransportError::new("SSH handshake", e)),
            });
        }
        return Err(transport(cfg, TransportError::new("SSH handshake", e)));
    }

    verify_host_key(cfg, &sess)?;
    authenticate(cfg, &sess)?;

    sess.set_keepalive(
        true,
        cfg.keepalive.as_secs().clamp(1, u32::MAX as u64) as u32,
    );
    // Later operations keep their own deadlines; blocking setup steps use 30 s.
    sess.set_timeout(30_000);
    tracing::debug!(host = %cfg.display(), elapsed = ?started.elapsed(), "connected");
    Ok(Conn {
        sess,
        tcp,
        last_keepalive: Instant::now(),
    })
}

/// Applies the configured cipher preference (the server still chooses from our list), and
/// with a pinned host key asks for that key's type, so a server with several host keys
/// presents the pinned one.
/// Returns whether the host key types were restricted to those we can check.
fn apply_ciphers(cfg: &SshConfig, sess: &Session, restrict_host_keys: bool) -> Result<bool> {
    // Ask for the key type we can check: the pinned one, or those known_hosts records for
    // this host (a host with several keys must not present one we would refuse).
    let kinds: Vec<String> = match &cfg.host_keys {
        _ if !restrict_host_keys => Vec::new(),
        HostKeyPolicy::Pinned(blob) => vec![crate::known_hosts::key_type(blob)
            .ok_or_else(|| Error::invalid("pinned host key", "is not an SSH public key blob"))?
            .to_owned()],
        _ => known_hosts::recorded_types(&cfg.known_hosts, &cfg.known_hosts_name())?,
    };
    let restricted = !kinds.is_empty();
    if restricted {
        let methods = kinds
            .iter()
            .map(|k| known_hosts::host_key_methods(k))
            .collect::<Vec<_>>()
            .join(",");
        sess.method_pref(ssh2::MethodType::HostKey, &methods)
            .map_err(|e| {
                Error::invalid(format!("host key type {methods:?}"), e.message().to_owned())
            })?;
    }
    if let Some(prefs) = &cfg.ciphers {
        for t in [ssh2::MethodType::CryptCs, ssh2::MethodType::CryptSc] {
            sess.method_pref(t, prefs).map_err(|e| {
                Error::invalid(format!("cipher list {prefs:?}"), e.message().to_owned())
            })?;
        }
    }
    Ok(restricted)
}

fn verify_host_key(cfg: &SshConfig, sess: &Session) -> Result<()> {
    let (blob, _) = sess
        .host_key()
        .ok_or_else(|| transport(cfg, TransportError::bare("host key: the server sent none")))?;
    let name = cfg.known_hosts_name();
    let actual = fingerprint(blob);
    match &cfg.host_keys {
        HostKeyPolicy::Pinned(pinned) => {
            if pinned.as_slice() == blob {
                Ok(())
            } else {
                Err(Error::HostKey {
                    host: name,
                    reason: "does not match the pinned key".into(),
                    expected: Some(fingerprint(pinned)),
                    actual,
                })
            }
        }
        policy => match known_hosts::check(&cfg.known_hosts, &name, blob)? {
            Verdict::Match => Ok(()),
            Verdict::Changed(expected) => Err(Error::HostKey {
                host: name,
                reason: format!("has changed (recorded in {})", cfg.known_hosts.display()),
                expected: Some(expected),
                actual,
            }),
            Verdict::OtherTypes(recorded) => Err(Error::HostKey {
                host: name,
                reason: format!(
                    "is recorded in {} with another key type ({}); a second key type is not \
                     trusted on first use",
                    cfg.known_hosts.display(),
                    recorded.join(", ")
                ),
                expected: None,
                actual,
            }),
            Verdict::Revoked => Err(Error::HostKey {
                host: name,
                reason: format!("is marked @revoked in {}", cfg.known_hosts.display()),
                expected: None,
                actual,
            }),
            Verdict::Unknown if *policy == HostKeyPolicy::AcceptNew => {
                tracing::info!(host = %name, fingerprint = %actual, "trusting new host key");
                known_hosts::add(&cfg.known_hosts, &name, blob)
            }
            Verdict::Unknown => Err(Error::HostKey {
                host: name,
                reason: format!(
                    "is unknown (not in {}; use accept-new or pin the key)",
                    cfg.known_hosts.display()
                ),
                expected: None,
                actual,
            }),
        },
    }
}

fn authenticate(cfg: &SshConfig, sess: &Session) -> Result<()> {
    let result = match &cfg.auth {
        Auth::KeyFile { path, passphrase } => {
            if !path.exists() {
                return Err(Error::invalid(
                    format!("private key {}", path.display()),
                    "does not exist",
                ));
            }
            sess.userauth_pubkey_file(&cfg.user, None, path, passphrase.as_deref())
        }
        Auth::KeyMemory(pem) => sess.userauth_pubkey_memory(&cfg.user, None, pem, None),
        Auth::Agent => sess.userauth_agent(&cfg.user),
    };
    match result {
        Ok(()) if sess.authenticated() => Ok(()),
        Ok(()) => Err(auth_error(cfg, "the server did not accept the key")),
        Err(e) => match e.code() {
            ssh2::ErrorCode::Session(
                codes::AUTHENTICATION_FAILED | codes::PUBLICKEY_UNVERIFIED,
            ) => Err(auth_error(cfg, e.message())),
            ssh2::ErrorCode::Session(c)
                if c == codes::SOCKET_RECV
                    || c == codes::SOCKET_SEND
                    || c == codes::SOCKET_DISCONNECT
                    || c == codes::TIMEOUT =>
            {
                Err(transport(cfg, TransportError::new("authenticate", e)))
            }
            _ => Err(auth_error(cfg, e.message())),
        },
    }
}

fn auth_error(cfg: &SshConfig, reason: &str) -> Error {
    Error::Auth {
        machine: format!("{}:{}", cfg.host, cfg.port),
        user: cfg.user.clone(),
        reason: reason.to_owned(),
    }
}

impl Conn {
    /// Sends a keepalive if one is due (non-blocking callers ignore `EAGAIN`).
    pub(crate) fn keepalive_if_due(&mut self, interval: std::time::Duration) {
        if self.last_keepalive.elapsed() >= interval {
            let _ = self.sess.keepalive_send();
            self.last_keepalive = Instant::now();
        }
    }

    /// Waits until the socket is ready in the directions libssh2 is blocked on, at most
    /// `timeout`.
    pub(crate) fn wait_socket(&self, timeout: std::time::Duration) {
        use std::os::unix::io::AsRawFd;
        let dirs = self.sess.block_directions();
        let mut events = 0;
        if matches!(
            dirs,
            ssh2::BlockDirections::Inbound | ssh2::BlockDirections::Both
        ) {
            events |= libc::POLLIN;
        }
        if matches!(
            dirs,
            ssh2::BlockDirections::Outbound | ssh2::BlockDirections::Both
        ) {
            events |= libc::POLLOUT;
        }
        if events == 0 {
            events = libc::POLLIN;
        }
        let mut fd = libc::pollfd {
            fd: self.tcp.as_raw_fd(),
            events,
            revents: 0,
        };
        let ms = timeout.as_millis().min(i32::MAX as u128) as i32;
        // SAFETY: one valid pollfd for the duration of the call.
        unsafe {
            libc::poll(&mut fd, 1, ms);
        }
    }
}
