//! The resources that let this state directory reach its machines: its own key pair, and
//! the shared security groups it adds its CIDR to.
//!
//! Several state directories (CI hosts, users) may use one prefix in one account. None of
//! them may take another's access away:
//! - Each state directory has an id (a random word stored in it) and its own key pair,
//!   `{prefix}automation-{id}`, so no host deletes or rewrites another's key.
//! - Security groups are shared per prefix and platform; a host only adds its CIDR to the
//!   declared ports, and never revokes another's.
//! - Processes sharing a state directory take a file lock around the key pair, and a
//!   `Duplicate` answer from EC2 (another creator won) means "read it again".

use std::os::unix::io::AsRawFd;
use std::path::PathBuf;

use aws_sdk_ec2::error::ProvideErrorMetadata;
use aws_sdk_ec2::types::{Filter, IpPermission, IpRange, ResourceType};
use hgauto_core::{ApiErrorClass, Error, Platform, ResourceKind, Result};

use super::Ec2Provider;
use crate::error::sdk_error;

/// An exclusive `flock` on a file, held while alive.
struct FileLock(#[allow(dead_code)] std::fs::File);

impl FileLock {
    /// Waits (on a blocking thread) for the lock at `path`.
    async fn acquire(path: PathBuf) -> Result<FileLock> {
        hgauto_core::backend::task::run_blocking("ec2", move || {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)
                    .map_err(|e| Error::io("create directory", dir, "localhost", e))?;
            }
            let f = std::fs::OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&path)
                .map_err(|e| Error::io("open lock", &path, "localhost", e))?;
            // SAFETY: flock on a descriptor we own.
            if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) } != 0 {
                let e = std::io::Error::last_os_error();
                return Err(Error::io("lock", &path, "localhost", e));
            }
            Ok(FileLock(f))
        })
        .await
    }
}

impl Ec2Provider {
    /// This provider's directory of region-specific state.
    fn region_dir(&self) -> PathBuf {
        self.cfg.state_dir.join("aws").join(&self.cfg.region)
    }

    /// This state directory's id: 8 random hex digits, created once (the first writer wins).
    pub(crate) fn state_id(&self) -> Result<String> {
        let path = self.region_dir().join("state-id");
        if let Ok(id) = std::fs::read_to_string(&path) {
            let id = id.trim();
            if id.len() == 8 && id.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Ok(id.to_owned());
            }
        }
        let dir = self.region_dir();
        std::fs::create_dir_all(&dir).map_err(|e| Error::io("create", &dir, "localhost", e))?;
        let mine = format!("{:08x}", rand::random::<u32>());
        let tmp = dir.join(format!(".state-id-{mine}"));
        std::fs::write(&tmp, &mine).map_err(|e| Error::io("write", &tmp, "localhost", e))?;
        // link(2) never replaces: if another process got there first, its id stands.
        let _ = std::fs::hard_link(&tmp, &path);
        let _ = std::fs::remove_file(&tmp);
        let id =
            std::fs::read_to_string(&path).map_err(|e| Error::io("read", &path, "localhost", e))?;
        Ok(id.trim().to_owned())
    }

    /// The name of this state directory's key pair: `{prefix}automation-{state id}`.
    pub fn key_pair_name(&self) -> Result<String> {
        Ok(format!(
            "{}automation-{}",
            self.cfg.prefix,
            self.state_id()?
        ))
    }

    /// Where this state directory's private key lives (mode 0600).
    pub fn private_key_path(&self) -> Result<PathBuf> {
        Ok(self
            .region_dir()
            .join(format!("{}.pem", self.key_pair_name()?)))
    }

    pub(crate) fn fingerprint_path(&self) -> Result<PathBuf> {
        Ok(self.private_key_path()?.with_extension("fingerprint"))
    }

    /// The fingerprint EC2 records for key pair `name`, if it exists.
    async fn remote_fingerprint(&self, name: &str) -> Result<Option<String>> {
        match self.ec2.describe_key_pairs().key_names(name).send().await {
            Ok(out) => Ok(out
                .key_pairs()
                .first()
                .and_then(|k| k.key_fingerprint().map(str::to_owned))),
            Err(e)
                if e.as_service_error().and_then(|s| s.code())
                    == Some("InvalidKeyPair.NotFound") =>
            {
                Ok(None)
            }
            Err(e) => Err(sdk_error("ec2", "describe key pair", name, e)),
        }
    }

    /// Makes sure this state directory's key pair exists on both sides with the same
    /// fingerprint; otherwise replaces it (the private key is written 0600). Only this
    /// state directory's key pair is ever touched. Returns its name.
    pub async fn ensure_key_pair(&self) -> Result<String> {
        let name = self.key_pair_name()?;
        let _lock = FileLock::acquire(self.region_dir().join("key-pair.lock")).await?;
        let (pem, fp_path) = (self.private_key_path()?, self.fingerprint_path()?);
        for _ in 0..3 {
            let remote = self.remote_fingerprint(&name).await?;
            let local = std::fs::read_to_string(&fp_path)
                .ok()
                .map(|s| s.trim().to_owned());
            if remote.is_some() && remote == local && pem.exists() {
                return Ok(name);
            }
            if remote.is_some() {
                // Ours by name, but its private key is lost here: replace it.
                tracing::info!(key_pair = %name, "key pair fingerprints differ; re-creating");
                self.delete_key_pair(&name).await?;
            }
            let _ = std::fs::remove_file(&pem);
            self.record_supporting(&name, ResourceKind::KeyPair)?;
            let created = match self
                .ec2
                .create_key_pair()
                .key_name(&name)
                .key_type(aws_sdk_ec2::types::KeyType::Ed25519)
                .tag_specifications(self.tags(ResourceType::KeyPair, &name, None, None))
                .send()
                .await
            {
                Ok(c) => c,
                // Another creator won the race: read it again.
                Err(e)
                    if e.as_service_error().and_then(|s| s.code())
                        == Some("InvalidKeyPair.Duplicate") =>
                {
                    continue
                }
                Err(e) => return Err(sdk_error("ec2", "create key pair", &name, e)),
            };
            let material = created.key_material().ok_or_else(|| Error::Provision {
                provider: "ec2".into(),
                action: "create",
                resource: name.clone(),
                reason: "the key pair came back without key material".into(),
                retryable: false,
            })?;
            hgauto_core::keys::write_private_key(&pem, material.as_bytes())?;
            hgauto_core::backend::fs::write_atomic(
                &fp_path,
                created.key_fingerprint().unwrap_or("").as_bytes(),
            )?;
            return Ok(name);
        }
        Err(Error::Provision {
            provider: "ec2".into(),
            action: "create",
            resource: name,
            reason: "the key pair kept changing while it was being created".into(),
            retryable: true,
        })
    }

    /// Deletes key pair `name` in EC2.
    pub(crate) async fn delete_key_pair(&self, name: &str) -> Result<()> {
        self.ec2
            .delete_key_pair()
            .key_name(name)
            .send()
            .await
            .map(drop)
            .map_err(|e| sdk_error("ec2", "delete key pair", name, e))
    }

    /// Makes sure the shared security group for `platform` exists and opens the declared
    /// ports to this host's CIDR, adding to what other hosts opened and never revoking it.
    /// Returns its id.
    pub async fn ensure_security_group(&self, platform: Platform) -> Result<String> {
        let cidr = self.cfg.require_cidr()?.to_owned();
        let name = format!("{}{}", self.cfg.prefix, platform);
        let ports: &[(i32, i32)] = match platform {
            Platform::Linux => &[(22, 22)],
            Platform::Windows => &[(22, 22), (3389, 3389), (5985, 5986)],
        };
        for _ in 0..3 {
            let found = self
                .ec2
                .describe_security_groups()
                .filters(Filter::builder().name("group-name").values(&name).build())
                .send()
                .await
                .map_err(|e| sdk_error("ec2", "describe security group", &name, e))?;
            let (id, missing) = match found.security_groups().first() {
                Some(group) => {
                    let id = group.group_id().unwrap_or_default().to_owned();
                    let missing: Vec<(i32, i32)> = ports
                        .iter()
                        .copied()
                        .filter(|(from, to)| {
                            !group.ip_permissions().iter().any(|p| {
                                p.from_port() == Some(*from)
                                    && p.to_port() == Some(*to)
                                    && p.ip_ranges()
                                        .iter()
                                        .any(|r| r.cidr_ip() == Some(cidr.as_str()))
                            })
                        })
                        .collect();
                    (id, missing)
                }
                None => {
                    self.record_supporting(&name, ResourceKind::SecurityGroup)?;
                    let created = self
                        .ec2
                        .create_security_group()
                        .group_name(&name)
                        .description(format!("hgauto {platform} machines"))
                        .tag_specifications(self.tags(
                            ResourceType::SecurityGroup,
                            &name,
                            None,
                            None,
                        ))
                        .send()
                        .await;
                    match created {
                        Ok(c) => (c.group_id().unwrap_or_default().to_owned(), ports.to_vec()),
                        // Another host created it between our look and our create.
                        Err(e)
                            if e.as_service_error().and_then(|s| s.code())
                                == Some("InvalidGroup.Duplicate") =>
                        {
                            continue
                        }
                        Err(e) => return Err(sdk_error("ec2", "create security group", &name, e)),
                    }
                }
            };
            for (from, to) in missing {
                self.authorize(&id, from, to, &cidr).await?;
            }
            return Ok(id);
        }
        Err(Error::Provision {
            provider: "ec2".into(),
            action: "create",
            resource: name,
            reason: "the security group kept changing while it was being created".into(),
            retryable: true,
        })
    }

    /// Opens `from..=to` to `cidr` (already open counts as done).
    async fn authorize(&self, id: &str, from: i32, to: i32, cidr: &str) -> Result<()> {
        let perm = IpPermission::builder()
            .ip_protocol("tcp")
            .from_port(from)
            .to_port(to)
            .ip_ranges(IpRange::builder().cidr_ip(cidr).build())
            .build();
        match self
            .ec2
            .authorize_security_group_ingress()
            .group_id(id)
            .ip_permissions(perm)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) => match sdk_error("ec2", "authorize ingress", id, e) {
                // Another process of this host added the same rule meanwhile.
                Error::Api {
                    class: ApiErrorClass::Conflict,
                    ..
                } => Ok(()),
                other => Err(other),
            },
        }
    }
}
