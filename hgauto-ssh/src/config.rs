//! How to reach and trust a host: [`SshConfig`].

use std::path::PathBuf;
use std::time::Duration;

use hgauto_core::{Platform, RetryPolicy};

/// How to authenticate.
#[derive(Clone)]
pub enum Auth {
    /// A private key file (ed25519, rsa or ecdsa), optionally with a passphrase.
    KeyFile {
        /// Path of the private key.
        path: PathBuf,
        /// Passphrase, if the key is encrypted. Never logged.
        passphrase: Option<String>,
    },
    /// A private key held in memory (PEM or OpenSSH format). Never logged.
    KeyMemory(String),
    /// The keys of the running ssh-agent (`SSH_AUTH_SOCK`).
    Agent,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Secrets never reach a log line.
        match self {
            Auth::KeyFile { path, .. } => write!(f, "KeyFile({})", path.display()),
            Auth::KeyMemory(_) => f.write_str("KeyMemory(<redacted>)"),
            Auth::Agent => f.write_str("Agent"),
        }
    }
}

/// Which host keys to trust.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostKeyPolicy {
    /// Only keys recorded in hgauto's known_hosts (the default). An unknown or changed key
    /// is an error naming the host and the fingerprints.
    Strict,
    /// Trust a host's key on first use and record it; a changed key is still an error.
    AcceptNew,
    /// Exactly this key (the raw key blob, as a provider learns it from instance metadata);
    /// known_hosts is not consulted.
    Pinned(Vec<u8>),
}

/// `strict` or `accept-new` (a pinned key is bytes, not text); anything else is
/// `InvalidInput` naming it.
impl std::str::FromStr for HostKeyPolicy {
    type Err = hgauto_core::Error;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let choices = [
            ("strict", HostKeyPolicy::Strict),
            ("accept-new", HostKeyPolicy::AcceptNew),
        ];
        hgauto_core::suggest::one_of("host key policy", s, &choices)
    }
}

/// Everything needed to connect to one host.
#[derive(Debug, Clone)]
pub struct SshConfig {
    /// Host name or address.
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// Login user.
    pub user: String,
    /// How to authenticate.
    pub auth: Auth,
    /// Which host keys to trust.
    pub host_keys: HostKeyPolicy,
    /// hgauto's own known_hosts file (never the user's `~/.ssh/known_hosts`).
    pub known_hosts: PathBuf,
    /// Limit for TCP connect plus handshake.
    pub connect_timeout: Duration,
    /// Interval of SSH keepalive messages.
    pub keepalive: Duration,
    /// Reconnect policy for operations that are safe to repeat.
    pub retry: RetryPolicy,
    /// Most simultaneous connections to this host (each carries one operation at a time).
    pub max_connections: usize,
    /// The remote platform.
    pub platform: Platform,
    /// Compress the transport (zlib). Helps on slow links, costs CPU on fast ones.
    pub compress: bool,
    /// Cipher preference list (OpenSSH names, comma-separated), both directions. `None`
    /// keeps libssh2's default order (chacha20-poly1305 first, as OpenSSH does).
    pub ciphers: Option<String>,
    /// The name the host's keys are recorded under in known_hosts, instead of its address
    /// (OpenSSH's `HostKeyAlias`). Cloud machines use their instance id: addresses are
    /// recycled, instance ids are not.
    pub host_key_alias: Option<String>,
}

impl SshConfig {
    /// A config for `user@host:port` with key-file auth and strict host keys, keeping its
    /// known_hosts under `state_dir/ssh/`.
    pub fn new(
        host: impl Into<String>,
        port: u16,
        user: impl Into<String>,
        auth: Auth,
        state_dir: impl Into<PathBuf>,
    ) -> Self {
        SshConfig {
            host: host.into(),
            port,
            user: user.into(),
            auth,
            host_keys: HostKeyPolicy::Strict,
            known_hosts: state_dir.into().join("ssh").join("known_hosts"),
            connect_timeout: Duration::from_secs(10),
            keepalive: Duration::from_secs(15),
            retry: RetryPolicy::network(),
            max_connections: 8,
            platform: Platform::Linux,
            compress: false,
            ciphers: None,
            host_key_alias: None,
        }
    }

    /// Records and checks the host's keys under `alias` instead of its address.
    pub fn with_host_key_alias(mut self, alias: impl Into<String>) -> Self {
        self.host_key_alias = Some(alias.into());
        self
    }

    /// Sets the cipher preference list, e.g. `"aes128-gcm@openssh.com,chacha20-poly1305@openssh.com"`.
    pub fn with_ciphers(mut self, ciphers: impl Into<String>) -> Self {
        self.ciphers = Some(ciphers.into());
        self
    }

    /// Sets the host key policy.
    pub fn with_host_keys(mut self, policy: HostKeyPolicy) -> Self {
        self.host_keys = policy;
        self
    }

    /// Sets the reconnect policy.
    pub fn with_retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// Sets the connect timeout.
    pub fn with_connect_timeout(mut self, t: Duration) -> Self {
        self.connect_timeout = t;
        self
    }

    /// Sets the remote platform.
    pub fn with_platform(mut self, platform: Platform) -> Self {
        self.platform = platform;
        self
    }

    /// Enables transport compression.
    pub fn with_compression(mut self, on: bool) -> Self {
        self.compress = on;
        self
    }

    /// The host's name in known_hosts: its alias when it has one, else `host`, or
    /// `[host]:port` when the port is not 22.
    pub fn known_hosts_name(&self) -> String {
        if let Some(alias) = &self.host_key_alias {
            alias.clone()
        } else if self.port == 22 {
            self.host.clone()
        } else {
            format!("[{}]:{}", self.host, self.port)
        }
    }

    /// `user@host:port`, for logs and errors.
    pub fn display(&self) -> String {
        format!("{}@{}:{}", self.user, self.host, self.port)
    }
}
