//! [`HostsProvider`]: a fixed inventory of SSH hosts as a
//! [`ResourceProvider`](hgauto_core::ResourceProvider), for teams whose build machines
//! already exist.
//!
//! "Provisioning" leases free hosts of the wanted platform: a lease is a file created
//! exclusively under the state directory (so two processes never share a host), recorded
//! in the ledger first, as every provider does. "Terminating" gives the lease back;
//! nothing is destroyed. `purge` releases every lease, including a crashed run's.
//!
//! The inventory is TOML:
//!
//! ```toml
//! host_keys = "strict"       # or "accept-new": record each host's key on first use
//! [[hosts]]
//! name = "build1"            # the machine id
//! address = "10.0.0.5"
//! port = 22                  # default 22
//! user = "ci"
//! key_file = "~/.ssh/ci"     # default: the ssh-agent
//! platform = "linux"         # or "windows"
//! ```

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::Deserialize;

use hgauto_core::ledger::{Ledger, LedgerRecord};
use hgauto_core::{
    Error, ImageRecipe, MachineSpec, ManagedResource, Platform, PurgeReport, RemoteMachine,
    ResourceKind, ResourceProvider, Result,
};

use crate::{Auth, HostKeyPolicy, SshConfig, SshMachine};

const PROVIDER: &str = "ssh";

/// One host of the inventory.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Host {
    /// The machine id: letters, digits, `-`, `_` and `.`.
    pub name: String,
    /// Host name or address.
    pub address: String,
    /// SSH port (default 22).
    #[serde(default = "default_port")]
    pub port: u16,
    /// Login user.
    pub user: String,
    /// Private key file; without one, the ssh-agent's keys.
    #[serde(default)]
    pub key_file: Option<PathBuf>,
    /// `linux` (default) or `windows`.
    #[serde(default)]
    pub platform: Option<String>,
}

fn default_port() -> u16 {
    22
}

/// An inventory file: `[[hosts]]` tables.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Inventory {
    /// `strict` (default: only keys already in hgauto's known_hosts) or `accept-new`
    /// (record a host's key the first time, refuse a changed one).
    #[serde(default)]
    pub host_keys: Option<String>,
    /// The hosts, in the order they are leased.
    pub hosts: Vec<Host>,
}

impl Inventory {
    /// Reads and checks an inventory file.
    pub fn read(path: &Path) -> Result<Inventory> {
        let what = format!("SSH inventory {}", path.display());
        let text =
            std::fs::read_to_string(path).map_err(|e| Error::invalid(&what, e.to_string()))?;
        let inv: Inventory =
            toml::from_str(&text).map_err(|e| Error::invalid(&what, e.message().to_owned()))?;
        let mut seen = std::collections::HashSet::new();
        for h in &inv.hosts {
            let ok = !h.name.is_empty()
                && h.name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
            if !ok {
                return Err(Error::invalid(
                    &what,
                    format!(
                        "host name {:?} must be letters, digits, '-', '_' or '.'",
                        h.name
                    ),
                ));
            }
            if !seen.insert(h.name.clone()) {
                return Err(Error::invalid(
                    &what,
                    format!("host {:?} is listed twice", h.name),
                ));
            }
            platform_of(&what, h)?;
        }
        inv.policy(&what)?;
        Ok(inv)
    }

    fn policy(&self, what: &str) -> Result<HostKeyPolicy> {
        self.host_keys
            .as_deref()
            .unwrap_or("strict")
            .parse()
            .map_err(|e: Error| Error::invalid(what, e.to_string()))
    }
}

fn platform_of(what: &str, h: &Host) -> Result<Platform> {
    h.platform
        .as_deref()
        .unwrap_or("linux")
        .parse()
        .map_err(|e: Error| Error::invalid(what, format!("host {:?}: {e}", h.name)))
}

/// Leases hosts of an [`Inventory`] (see the [module docs](self)).
#[derive(Debug)]
pub struct HostsProvider {
    hosts: Vec<Host>,
    state_dir: PathBuf,
    leases: PathBuf,
    ledger: Ledger,
    host_keys: HostKeyPolicy,
    ready_timeout: Duration,
}

impl HostsProvider {
    /// A provider over `inventory`, keeping leases and its ledger under `state_dir`. Host
    /// keys follow the inventory's `host_keys` (strict by default: hgauto's known_hosts
    /// must have them) unless [`with_host_keys`](Self::with_host_keys) says otherwise.
    pub fn new(inventory: Inventory, state_dir: impl AsRef<Path>) -> Result<Self> {
        let state_dir = state_dir.as_ref().to_owned();
        let leases = state_dir.join("ssh-hosts").join("leases");
        std::fs::create_dir_all(&leases)
            .map_err(|e| Error::io("create", &leases, "localhost", e))?;
        let host_keys = inventory.policy("SSH inventory")?;
        Ok(HostsProvider {
            hosts: inventory.hosts,
            ledger: Ledger::open(&state_dir, PROVIDER)?,
            state_dir,
            leases,
            host_keys,
            ready_timeout: Duration::from_secs(60),
        })
    }

    /// The host key policy for every host.
    pub fn with_host_keys(mut self, policy: HostKeyPolicy) -> Self {
        self.host_keys = policy;
        self
    }

    /// How long a leased host may take to accept commands (default 60 s).
    pub fn with_ready_timeout(mut self, timeout: Duration) -> Self {
        self.ready_timeout = timeout;
        self
    }

    fn machine(&self, h: &Host) -> Result<SshMachine> {
        let auth = match &h.key_file {
            Some(path) => Auth::KeyFile {
                path: path.clone(),
                passphrase: None,
            },
            None => Auth::Agent,
        };
        let mut cfg = SshConfig::new(&h.address, h.port, &h.user, auth, &self.state_dir)
            .with_host_keys(self.host_keys.clone())
            .with_host_key_alias(&h.name);
        cfg.platform = platform_of("SSH inventory", h)?;
        Ok(SshMachine::new(&h.name, cfg))
    }

    fn lease_path(&self, name: &str) -> PathBuf {
        self.leases.join(name)
    }

    /// Takes the lease of host `name`, or says it is taken.
    fn take(&self, name: &str) -> Result<bool> {
        let path = self.lease_path(name);
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
        {
            Ok(mut f) => {
                use std::io::Write;
                let _ = writeln!(f, "{}", hgauto_core::session::session_id());
                Ok(true)
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
            Err(e) => Err(Error::io("create", &path, "localhost", e)),
        }
    }

    fn give_back(&self, name: &str) -> Result<()> {
        let path = self.lease_path(name);
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io("remove", &path, "localhost", e)),
        }
        self.ledger.forget(name)
    }
}

#[async_trait]
impl ResourceProvider for HostsProvider {
    fn name(&self) -> &str {
        PROVIDER
    }

    async fn provision(
        &self,
        spec: &MachineSpec,
        count: usize,
    ) -> Result<Vec<Arc<dyn RemoteMachine>>> {
        if spec.user_data.is_some() {
            return Err(Error::NotSupported {
                backend: "ssh hosts".into(),
                what: "first-boot scripts (user data)".into(),
            });
        }
        let fitting: Vec<&Host> = self
            .hosts
            .iter()
            .filter(|h| platform_of("SSH inventory", h).ok() == Some(spec.platform))
            .collect();
        let mut taken: Vec<(String, SshMachine)> = Vec::new();
        let release = |taken: &[(String, SshMachine)]| {
            for (name, _) in taken {
                let _ = self.give_back(name);
            }
        };
        for h in fitting {
            if taken.len() == count {
                break;
            }
            // Recorded before the lease is taken, as every provider records before it creates.
            let mut rec = LedgerRecord::new(&h.name, ResourceKind::Machine);
            rec.deadline = Some(spec.deadline()?);
            rec.details.insert(
                "address".into(),
                format!("{}@{}:{}", h.user, h.address, h.port),
            );
            rec.details.extend(
                spec.labels
                    .iter()
                    .map(|(k, v)| (format!("label:{k}"), v.clone())),
            );
            if self.ledger.get(&h.name)?.is_none() {
                self.ledger.record(&rec)?;
            }
            match self.take(&h.name) {
                Ok(true) => match self.machine(h) {
                    Ok(m) => taken.push((h.name.clone(), m)),
                    Err(e) => {
                        let _ = self.give_back(&h.name);
                        release(&taken);
                        return Err(e);
                    }
                },
                Ok(false) => {}
                Err(e) => {
                    release(&taken);
                    return Err(e);
                }
            }
        }
        if taken.len() < count {
            let got = taken.len();
            release(&taken);
            return Err(Error::Provision {
                provider: PROVIDER.into(),
                action: "lease hosts",
                resource: format!("{count} {} host(s)", spec.platform),
                reason: format!(
                    "only {got} of the inventory's {} host(s) are free",
                    spec.platform
                ),
                retryable: true,
            });
        }
        for (name, m) in &taken {
            if let Err(e) = m.wait_ready(self.ready_timeout).await {
                tracing::warn!(host = %name, error = %e, "leased host is not reachable");
                release(&taken);
                return Err(e);
            }
        }
        Ok(taken
            .into_iter()
            .map(|(_, m)| Arc::new(m) as Arc<dyn RemoteMachine>)
            .collect())
    }

    /// Gives the hosts back; nothing is destroyed.
    async fn terminate(&self, ids: &[String]) -> Result<()> {
        for id in ids {
            if !self.hosts.iter().any(|h| &h.name == id) {
                return Err(Error::invalid(
                    format!("machine id {id:?}"),
                    "is not a host of the inventory",
                ));
            }
        }
        for id in ids {
            self.give_back(id)?;
        }
        Ok(())
    }

    async fn ensure_image(&self, _recipe: &ImageRecipe) -> Result<String> {
        Err(Error::NotSupported {
            backend: "ssh hosts".into(),
            what: "machine images".into(),
        })
    }

    async fn list_managed(&self) -> Result<Vec<ManagedResource>> {
        Ok(self
            .ledger
            .records()?
            .into_iter()
            .map(|r| ManagedResource {
                exists: self.lease_path(&r.id).exists(),
                id: r.id,
                kind: r.kind,
                created_at: r.created_at,
                deadline: r.deadline,
            })
            .collect())
    }

    /// Releases every lease, a crashed run's included.
    async fn purge(&self) -> Result<PurgeReport> {
        let mut report = PurgeReport::default();
        for r in self.ledger.records()? {
            self.give_back(&r.id)?;
            report.removed.push(r.id);
        }
        Ok(report)
    }

    async fn extend_deadline(&self, ids: &[String], until: u64) -> Result<()> {
        for id in ids {
            self.ledger
                .update(id, "host lease", |r| r.deadline = Some(until))?;
        }
        Ok(())
    }

    async fn set_label(&self, id: &str, label: &str) -> Result<()> {
        self.ledger.update(id, "host lease", |r| {
            r.details.insert("name".into(), label.to_owned());
        })
    }
}
