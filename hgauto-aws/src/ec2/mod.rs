//! [`Ec2Provider`]: EC2 instances as hgauto machines.
//!
//! Safety first, in this order: validate everything (region, CIDR, credentials, instance
//! type, image) before creating anything; write a ledger record *before* `RunInstances`
//! (with the idempotency token); tag every instance with owner, creator and deadline; make
//! instances terminate on shutdown. Every wait has a deadline and backs off.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_ec2::error::ProvideErrorMetadata;
use aws_sdk_ec2::types::{
    Filter, InstanceStateName, InstanceType, IpPermission, IpRange, ResourceType, ShutdownBehavior,
    Tag, TagSpecification,
};
use hgauto_core::ledger::{session_id, unix_now, Ledger, LedgerRecord};
use hgauto_core::{
    poll_until, Error, ImageRecipe, MachineSpec, ManagedResource, Platform, PurgeReport,
    RemoteMachine, ResourceKind, ResourceProvider, Result,
};
use hgauto_ssh::{Auth, HostKeyPolicy, SshConfig, SshMachine};

use crate::config::{Access, AwsConfig};
use crate::error::sdk_error;
use crate::ssm::{SsmMachine, SsmOptions};

const TAG_PREFIX: &str = "hgauto:prefix";
const TAG_OWNER: &str = "hgauto:owner";
const TAG_CREATED_BY: &str = "hgauto:created-by";
const TAG_DEADLINE: &str = "hgauto:deadline";
const TAG_TOKEN: &str = "hgauto:token";
const TAG_ROLE: &str = "hgauto:role";
const TAG_ACCESS: &str = "hgauto:access";

mod host_keys;
mod iam;
mod images;
mod sweep;

pub use host_keys::host_keys_from_console;
pub use sweep::{Probe, ProbeTarget};

/// What to launch.
struct Launch<'a> {
    platform: Platform,
    count: usize,
    image: &'a str,
    instance_type: &'a str,
    lifetime: Duration,
    name: String,
    shutdown: ShutdownBehavior,
    /// Base64 user data.
    user_data: Option<String>,
    /// Value of the `hgauto:role` tag.
    role: Option<&'static str>,
    /// IAM instance profile (for SSM machines).
    instance_profile: Option<String>,
}

/// How long `provision` waits for instances to run and get an address.
const READY_TIMEOUT: Duration = Duration::from_secs(600);

/// Creates and removes EC2 instances and what they need (key pair, security groups).
pub struct Ec2Provider {
    cfg: AwsConfig,
    ec2: aws_sdk_ec2::Client,
    iam: aws_sdk_iam::Client,
    ssm: aws_sdk_ssm::Client,
    s3: aws_sdk_s3::Client,
    ledger: Ledger,
    /// One lock per image fingerprint: concurrent calls for one recipe build it once.
    image_locks: std::sync::Mutex<std::collections::HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// Serialises reconciling key pair, security groups and IAM: concurrent provisions
    /// would otherwise both see "missing" and both create.
    supporting: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for Ec2Provider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ec2Provider")
            .field("region", &self.cfg.region)
            .field("prefix", &self.cfg.prefix)
            .finish()
    }
}

impl Ec2Provider {
    /// A provider for `cfg`, after validating it and checking that credentials exist.
    pub async fn new(cfg: AwsConfig) -> Result<Self> {
        cfg.validate()?;
        let sdk = cfg.sdk_config().await;
        AwsConfig::check_credentials(&sdk).await?;
        let ledger = Ledger::open(&cfg.state_dir, &format!("ec2-{}", cfg.region))?;
        Ok(Ec2Provider {
            ec2: aws_sdk_ec2::Client::new(&sdk),
            iam: aws_sdk_iam::Client::new(&sdk),
            ssm: aws_sdk_ssm::Client::new(&sdk),
            s3: crate::s3::client(&sdk),
            cfg,
            ledger,
            image_locks: Default::default(),
            supporting: Default::default(),
        })
    }

    /// The EC2 client (for callers that need more than the provider offers).
    pub fn client(&self) -> &aws_sdk_ec2::Client {
        &self.ec2
    }

    /// The ledger of this provider.
    pub fn ledger(&self) -> &Ledger {
        &self.ledger
    }

    fn key_pair_name(&self) -> String {
        format!("{}automation", self.cfg.prefix)
    }

    /// Where the automation key pair's private key lives (mode 0600).
    pub fn private_key_path(&self) -> PathBuf {
        self.cfg
            .state_dir
            .join("aws")
            .join(&self.cfg.region)
            .join(format!("{}.pem", self.key_pair_name()))
    }

    fn fingerprint_path(&self) -> PathBuf {
        self.private_key_path().with_extension("fingerprint")
    }

    /// Makes sure the automation key pair exists on both sides with the same fingerprint;
    /// otherwise deletes both and creates a new one (the private key is written 0600).
    pub async fn ensure_key_pair(&self) -> Result<String> {
        let name = self.key_pair_name();
        let remote = match self.ec2.describe_key_pairs().key_names(&name).send().await {
            Ok(out) => out
                .key_pairs()
                .first()
                .and_then(|k| k.key_fingerprint().map(str::to_owned)),
            Err(e)
                if e.as_service_error().and_then(|s| s.code())
                    == Some("InvalidKeyPair.NotFound") =>
            {
                None
            }
            Err(e) => return Err(sdk_error("ec2", "describe key pair", &name, e)),
        };
        let local = std::fs::read_to_string(self.fingerprint_path())
            .ok()
            .map(|s| s.trim().to_owned());
        if remote.is_some() && remote == local && self.private_key_path().exists() {
            return Ok(name);
        }
        if remote.is_some() {
            tracing::info!(key_pair = %name, "key pair fingerprints differ; re-creating");
            self.ec2
                .delete_key_pair()
                .key_name(&name)
                .send()
                .await
                .map_err(|e| sdk_error("ec2", "delete key pair", &name, e))?;
        }
        let _ = std::fs::remove_file(self.private_key_path());
        self.record_supporting(&name, ResourceKind::KeyPair)?;
        let created = self
            .ec2
            .create_key_pair()
            .key_name(&name)
            .key_type(aws_sdk_ec2::types::KeyType::Ed25519)
            .send()
            .await
            .map_err(|e| sdk_error("ec2", "create key pair", &name, e))?;
        let material = created.key_material().ok_or_else(|| Error::Provision {
            provider: "ec2".into(),
            action: "create",
            resource: name.clone(),
            reason: "the key pair came back without key material".into(),
            retryable: false,
        })?;
        hgauto_core::keys::write_private_key(&self.private_key_path(), material.as_bytes())?;
        hgauto_core::ledger::write_atomic(
            &self.fingerprint_path(),
            created.key_fingerprint().unwrap_or("").as_bytes(),
        )?;
        Ok(name)
    }

    /// Makes sure the security group for `platform` exists with exactly the declared ports
    /// open to the allowed CIDR. Returns its id.
    pub async fn ensure_security_group(&self, platform: Platform) -> Result<String> {
        match self.reconcile_security_group(platform).await {
            // Another process created it between our look and our create: use theirs.
            Err(Error::Provision { reason, .. })
                if reason.starts_with("InvalidGroup.Duplicate") =>
            {
                self.reconcile_security_group(platform).await
            }
            other => other,
        }
    }

    async fn reconcile_security_group(&self, platform: Platform) -> Result<String> {
        let cidr = self.cfg.require_cidr()?.to_owned();
        let name = format!("{}{}", self.cfg.prefix, platform);
        let ports: &[(i32, i32)] = match platform {
            Platform::Linux => &[(22, 22)],
            Platform::Windows => &[(22, 22), (3389, 3389), (5985, 5986)],
        };
        let found = self
            .ec2
            .describe_security_groups()
            .filters(Filter::builder().name("group-name").values(&name).build())
            .send()
            .await
            .map_err(|e| sdk_error("ec2", "describe security group", &name, e))?;
        if let Some(group) = found.security_groups().first() {
            let id = group.group_id().unwrap_or_default().to_owned();
            let matches = ports.iter().all(|(from, to)| {
                group.ip_permissions().iter().any(|p| {
                    p.from_port() == Some(*from)
                        && p.to_port() == Some(*to)
                        && p.ip_ranges()
                            .iter()
                            .any(|r| r.cidr_ip() == Some(cidr.as_str()))
                })
            }) && group.ip_permissions().len() == ports.len();
            if matches {
                return Ok(id);
            }
            // Declared in code: anything else is drift. Replace the rules.
            if !group.ip_permissions().is_empty() {
                self.ec2
                    .revoke_security_group_ingress()
                    .group_id(&id)
                    .set_ip_permissions(Some(group.ip_permissions().to_vec()))
                    .send()
                    .await
                    .map_err(|e| sdk_error("ec2", "revoke ingress", &id, e))?;
            }
            self.authorize(&id, ports, &cidr).await?;
            return Ok(id);
        }
        self.record_supporting(&name, ResourceKind::SecurityGroup)?;
        let created = self
            .ec2
            .create_security_group()
            .group_name(&name)
            .description(format!("hgauto {platform} machines"))
            .tag_specifications(self.tags(ResourceType::SecurityGroup, &name, None, None))
            .send()
            .await
            .map_err(|e| sdk_error("ec2", "create security group", &name, e))?;
        let id = created.group_id().unwrap_or_default().to_owned();
        self.authorize(&id, ports, &cidr).await?;
        Ok(id)
    }

    async fn authorize(&self, id: &str, ports: &[(i32, i32)], cidr: &str) -> Result<()> {
        let perms: Vec<IpPermission> = ports
            .iter()
            .map(|(from, to)| {
                IpPermission::builder()
                    .ip_protocol("tcp")
                    .from_port(*from)
                    .to_port(*to)
                    .ip_ranges(IpRange::builder().cidr_ip(cidr).build())
                    .build()
            })
            .collect();
        self.ec2
            .authorize_security_group_ingress()
            .group_id(id)
            .set_ip_permissions(Some(perms))
            .send()
            .await
            .map_err(|e| sdk_error("ec2", "authorize ingress", id, e))
            .map(drop)
    }

    fn tags(
        &self,
        kind: ResourceType,
        name: &str,
        deadline: Option<u64>,
        token: Option<&str>,
    ) -> TagSpecification {
        let mut b = TagSpecification::builder()
            .resource_type(kind)
            .tags(Tag::builder().key("Name").value(name).build())
            .tags(
                Tag::builder()
                    .key(TAG_PREFIX)
                    .value(&self.cfg.prefix)
                    .build(),
            )
            .tags(Tag::builder().key(TAG_OWNER).value(&self.cfg.owner).build())
            .tags(
                Tag::builder()
                    .key(TAG_CREATED_BY)
                    .value(session_id())
                    .build(),
            );
        if let Some(d) = deadline {
            b = b.tags(
                Tag::builder()
                    .key(TAG_DEADLINE)
                    .value(d.to_string())
                    .build(),
            );
        }
        if let Some(t) = token {
            b = b.tags(Tag::builder().key(TAG_TOKEN).value(t).build());
        }
        b.build()
    }

    /// Checks the instance type exists (catches a typo before money is spent).
    async fn preflight_instance_type(&self, instance_type: &str) -> Result<()> {
        let found = self
            .ec2
            .describe_instance_types()
            .instance_types(InstanceType::from(instance_type))
            .send()
            .await;
        match found {
            Ok(out) if !out.instance_types().is_empty() => Ok(()),
            Ok(_) => Err(Error::invalid(
                format!("instance type {instance_type:?}"),
                "does not exist in this region",
            )),
            Err(e)
                if e.as_service_error()
                    .and_then(|s| s.code())
                    .is_some_and(|c| c.starts_with("InvalidInstanceType")) =>
            {
                Err(Error::invalid(
                    format!("instance type {instance_type:?}"),
                    "does not exist in this region",
                ))
            }
            Err(e) => Err(sdk_error("ec2", "describe instance type", instance_type, e)),
        }
    }

    /// Resolves an image id (`ami-...`) or a name pattern to one image id, newest first.
    async fn preflight_image(&self, image: &str) -> Result<String> {
        let req = self.ec2.describe_images();
        let req = if image.starts_with("ami-") {
            req.image_ids(image)
        } else {
            if image.is_empty() || image.len() > 128 || image.contains(['\n', '\0']) {
                return Err(Error::invalid(
                    format!("image name pattern {image:?}"),
                    "must be 1-128 printable characters",
                ));
            }
            req.filters(Filter::builder().name("name").values(image).build())
        };
        let out = match req.send().await {
            Ok(out) => out,
            Err(e)
                if e.as_service_error()
                    .and_then(|s| s.code())
                    .is_some_and(|c| c.starts_with("InvalidAMIID")) =>
            {
                return Err(Error::invalid(format!("image {image:?}"), "does not exist"));
            }
            Err(e) => return Err(sdk_error("ec2", "describe images", image, e)),
        };
        let mut images = out.images().to_vec();
        images.sort_by(|a, b| b.creation_date().cmp(&a.creation_date()));
        images
            .first()
            .and_then(|i| i.image_id().map(str::to_owned))
            .ok_or_else(|| Error::invalid(format!("image {image:?}"), "matches no image"))
    }

    /// Describes instances with our prefix tag that are not terminated.
    async fn our_instances(&self) -> Result<Vec<aws_sdk_ec2::types::Instance>> {
        let out = self
            .ec2
            .describe_instances()
            .filters(
                Filter::builder()
                    .name(format!("tag:{TAG_PREFIX}"))
                    .values(&self.cfg.prefix)
                    .build(),
            )
            .filters(
                Filter::builder()
                    .name("instance-state-name")
                    .values("pending")
                    .values("running")
                    .values("stopping")
                    .values("stopped")
                    .build(),
            )
            .send()
            .await
            .map_err(|e| sdk_error("ec2", "describe instances", &self.cfg.prefix, e))?;
        Ok(out
            .reservations()
            .iter()
            .flat_map(|r| r.instances().to_vec())
            .collect())
    }

    /// Waits until every instance runs and has an address; returns (id, address) pairs.
    async fn wait_running(&self, ids: &[String]) -> Result<Vec<(String, String)>> {
        let resource = ids.join(",");
        poll_until(
            &resource,
            "waiting for instances to run",
            READY_TIMEOUT,
            Duration::from_millis(500),
            || async {
                let out = self
                    .ec2
                    .describe_instances()
                    .set_instance_ids(Some(ids.to_vec()))
                    .send()
                    .await
                    .map_err(|e| sdk_error("ec2", "describe instances", &resource, e))?;
                let instances: Vec<_> = out
                    .reservations()
                    .iter()
                    .flat_map(|r| r.instances())
                    .collect();
                if let Some(dead) = instances.iter().find(|i| {
                    matches!(
                        i.state().and_then(|s| s.name()),
                        Some(InstanceStateName::Terminated | InstanceStateName::ShuttingDown)
                    )
                }) {
                    return Err(Error::Provision {
                        provider: "ec2".into(),
                        action: "start",
                        resource: dead.instance_id().unwrap_or_default().to_owned(),
                        reason: "the instance terminated while starting".into(),
                        retryable: true,
                    });
                }
                let ready: Vec<(String, String)> = instances
                    .iter()
                    .filter(|i| {
                        i.state().and_then(|s| s.name()) == Some(&InstanceStateName::Running)
                    })
                    .filter_map(|i| {
                        let addr = i.public_ip_address().or(i.private_ip_address())?;
                        Some((i.instance_id()?.to_owned(), addr.to_owned()))
                    })
                    .collect();
                Ok((ready.len() == ids.len()).then_some(ready))
            },
        )
        .await
    }

    /// Names of key pairs with our prefix.
    async fn our_key_pair_names(&self) -> Result<Vec<String>> {
        let keys = self
            .ec2
            .describe_key_pairs()
            .send()
            .await
            .map_err(|e| sdk_error("ec2", "describe key pairs", "*", e))?;
        Ok(keys
            .key_pairs()
            .iter()
            .filter_map(|k| k.key_name())
            .filter(|n| n.starts_with(&self.cfg.prefix))
            .map(str::to_owned)
            .collect())
    }

    /// Ids of security groups whose name has our prefix.
    async fn our_security_group_ids(&self) -> Result<Vec<String>> {
        let groups = self
            .ec2
            .describe_security_groups()
            .send()
            .await
            .map_err(|e| sdk_error("ec2", "describe security groups", "*", e))?;
        Ok(groups
            .security_groups()
            .iter()
            .filter(|g| {
                g.group_name()
                    .is_some_and(|n| n.starts_with(&self.cfg.prefix))
            })
            .filter_map(|g| g.group_id().map(str::to_owned))
            .collect())
    }

    /// Records a supporting resource (key pair, security group) before creating it.
    fn record_supporting(&self, name: &str, kind: ResourceKind) -> Result<()> {
        let mut record = LedgerRecord::new(name, kind);
        record
            .details
            .insert("region".into(), self.cfg.region.clone());
        self.ledger.record(&record)
    }

    /// An SSM machine for instance `id`, using the configured output/transfer bucket.
    pub fn ssm_machine(&self, id: &str, platform: Platform) -> SsmMachine {
        let opts = SsmOptions {
            bucket: self.cfg.ssm_bucket.clone(),
            key_prefix: self.cfg.ssm_key_prefix(),
            ..SsmOptions::default()
        };
        let s3 = self.cfg.ssm_bucket.as_ref().map(|_| self.s3.clone());
        SsmMachine::new(id, platform, self.ssm.clone(), s3, opts)
    }

    /// The instance's SSH host key from its console output (cloud-init prints them), when
    /// the console already has it.
    async fn console_host_key(&self, id: &str) -> Option<Vec<u8>> {
        let out = self
            .ec2
            .get_console_output()
            .instance_id(id)
            .latest(true)
            .send()
            .await
            .ok()?;
        let text = base64::Engine::decode(
            &base64::engine::general_purpose::STANDARD,
            out.output()?.trim(),
        )
        .ok()?;
        host_keys_from_console(&String::from_utf8_lossy(&text))
            .into_iter()
            .next()
    }

    async fn ssh_machine(&self, id: &str, address: &str) -> Arc<dyn RemoteMachine> {
        let policy = match self.console_host_key(id).await {
            Some(blob) => HostKeyPolicy::Pinned(blob),
            None => HostKeyPolicy::AcceptNew,
        };
        let cfg = SshConfig::new(
            address,
            22,
            &self.cfg.ssh_user,
            Auth::KeyFile {
                path: self.private_key_path(),
                passphrase: None,
            },
            &self.cfg.state_dir,
        )
        .with_host_keys(policy);
        Arc::new(SshMachine::new(id, cfg))
    }

    async fn run_instances(&self, launch: Launch<'_>) -> Result<Vec<String>> {
        let Launch {
            platform,
            count,
            image,
            instance_type,
            lifetime,
            name,
            shutdown,
            user_data,
            role,
            instance_profile,
        } = launch;
        let (key_name, group) = {
            let _one_at_a_time = self.supporting.lock().await;
            (
                self.ensure_key_pair().await?,
                self.ensure_security_group(platform).await?,
            )
        };
        let token = format!("{}{:016x}", self.cfg.prefix, rand::random::<u64>());
        let deadline = unix_now() + lifetime.as_secs();
        // Recorded before the call: if we die before the answer, the token and tags find it.
        let pending = format!("pending-{token}");
        let mut record = LedgerRecord::new(&pending, ResourceKind::Machine);
        record.deadline = Some(deadline);
        record.details.insert("token".into(), token.clone());
        record.details.insert("count".into(), count.to_string());
        self.ledger.record(&record)?;
        let mut tags = self.tags(ResourceType::Instance, &name, Some(deadline), Some(&token));
        let access = if instance_profile.is_some() {
            "ssm"
        } else {
            "ssh"
        };
        tags.tags
            .get_or_insert_with(Vec::new)
            .push(Tag::builder().key(TAG_ACCESS).value(access).build());
        if let Some(role) = role {
            tags.tags
                .get_or_insert_with(Vec::new)
                .push(Tag::builder().key(TAG_ROLE).value(role).build());
        }
        let profile = instance_profile.map(|name| {
            aws_sdk_ec2::types::IamInstanceProfileSpecification::builder()
                .name(name)
                .build()
        });
        let mut attempt = 0;
        let result = loop {
            let result = self
                .ec2
                .run_instances()
                .image_id(image)
                .instance_type(InstanceType::from(instance_type))
                .min_count(count as i32)
                .max_count(count as i32)
                .key_name(&key_name)
                .security_group_ids(&group)
                .client_token(&token)
                .instance_initiated_shutdown_behavior(shutdown.clone())
                .set_user_data(user_data.clone())
                .set_iam_instance_profile(profile.clone())
                .tag_specifications(tags.clone())
                .send()
                .await;
            // A new instance profile takes seconds to become visible to EC2 (IAM is
            // eventually consistent); the same token makes the retry safe.
            let profile_not_ready = matches!(&result, Err(e) if e
                .as_service_error()
                .and_then(|s| s.message())
                .is_some_and(|m| m.contains("Instance Profile")));
            if profile_not_ready && attempt < 6 {
                attempt += 1;
                tokio::time::sleep(Duration::from_secs(5)).await;
                continue;
            }
            break result;
        };
        let out = match result {
            Ok(out) => out,
            Err(e) => {
                let err = sdk_error("ec2", "run instances", &name, e);
                // A definite refusal created nothing; anything ambiguous stays recorded.
                if !err.is_retryable() {
                    self.ledger.forget(&pending)?;
                }
                return Err(err);
            }
        };
        let ids: Vec<String> = out
            .instances()
            .iter()
            .filter_map(|i| i.instance_id().map(str::to_owned))
            .collect();
        for id in &ids {
            let mut r = LedgerRecord::new(id, ResourceKind::Machine);
            r.deadline = Some(deadline);
            r.details.insert("token".into(), token.clone());
            self.ledger.record(&r)?;
        }
        self.ledger.forget(&pending)?;
        Ok(ids)
    }
}

#[async_trait]
impl ResourceProvider for Ec2Provider {
    fn name(&self) -> &str {
        "ec2"
    }

    async fn provision(
        &self,
        spec: &MachineSpec,
        count: usize,
    ) -> Result<Vec<Arc<dyn RemoteMachine>>> {
        if count == 0 {
            return Ok(Vec::new());
        }
        // Validate everything before anything is created.
        self.cfg.require_cidr()?;
        let instance_type = spec
            .instance_type
            .clone()
            .unwrap_or_else(|| self.cfg.instance_type.clone());
        self.preflight_instance_type(&instance_type).await?;
        let default_image = match spec.platform {
            Platform::Linux => self.cfg.linux_image.clone(),
            Platform::Windows => self.cfg.windows_image.clone(),
        };
        let image_ref = spec.image.clone().or(default_image).ok_or_else(|| {
            Error::invalid(
                "image",
                format!(
                    "no image in the spec and no {}_image in the config",
                    spec.platform
                ),
            )
        })?;
        let image = self.preflight_image(&image_ref).await?;
        let ssm = spec.platform == Platform::Windows || self.cfg.linux_access == Access::Ssm;
        let instance_profile = if ssm {
            let _one_at_a_time = self.supporting.lock().await;
            Some(self.ensure_instance_profile().await?)
        } else {
            None
        };

        if hgauto_core::cleanup::is_interrupted() {
            return Err(Error::Interrupted {
                signal: libc::SIGINT,
            });
        }
        let ids = self
            .run_instances(Launch {
                platform: spec.platform,
                count,
                image: &image,
                instance_type: &instance_type,
                lifetime: spec.lifetime,
                name: format!("{}machine", self.cfg.prefix),
                shutdown: ShutdownBehavior::Terminate,
                user_data: None,
                role: None,
                instance_profile,
            })
            .await?;
        // Ctrl-C while waiting: terminate what this call launched before the signal
        // handler gives up waiting for provisions in flight.
        let interrupted = async {
            while !hgauto_core::cleanup::is_interrupted() {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Error::Interrupted {
                signal: libc::SIGINT,
            }
        };
        let waited = tokio::select! {
            r = self.wait_running(&ids) => r,
            e = interrupted => Err(e),
        };
        match waited {
            Ok(_) if hgauto_core::cleanup::is_interrupted() => {
                self.terminate(&ids).await?;
                Err(Error::Interrupted {
                    signal: libc::SIGINT,
                })
            }
            Ok(ready) => {
                tracing::info!(ids = ?ids, "instances running");
                let mut machines: Vec<Arc<dyn RemoteMachine>> = Vec::with_capacity(ready.len());
                for (id, addr) in &ready {
                    machines.push(if ssm {
                        Arc::new(self.ssm_machine(id, spec.platform))
                    } else {
                        self.ssh_machine(id, addr).await
                    });
                }
                Ok(machines)
            }
            Err(e) => {
                if let Err(t) = self.terminate(&ids).await {
                    tracing::error!(error = %t, "terminating after a failed start failed; run purge");
                }
                Err(e)
            }
        }
    }

    async fn terminate(&self, ids: &[String]) -> Result<()> {
        if ids.is_empty() {
            return Ok(());
        }
        let result = self
            .ec2
            .terminate_instances()
            .set_instance_ids(Some(ids.to_vec()))
            .send()
            .await;
        match result {
            Ok(_) => {}
            Err(e)
                if e.as_service_error().and_then(|s| s.code())
                    == Some("InvalidInstanceID.NotFound") => {}
            Err(e) => return Err(sdk_error("ec2", "terminate", &ids.join(","), e)),
        }
        for id in ids {
            self.ledger.forget(id)?;
        }
        tracing::info!(ids = ?ids, "terminated");
        Ok(())
    }

    async fn ensure_image(&self, recipe: &ImageRecipe) -> Result<String> {
        self.build_or_reuse_image(recipe).await
    }

    async fn list_managed(&self) -> Result<Vec<ManagedResource>> {
        let mut out = Vec::new();
        for i in self.our_instances().await? {
            let tag = |k: &str| {
                i.tags()
                    .iter()
                    .find(|t| t.key() == Some(k))
                    .and_then(|t| t.value())
                    .map(str::to_owned)
            };
            out.push(ManagedResource {
                id: i.instance_id().unwrap_or_default().to_owned(),
                kind: ResourceKind::Machine,
                created_at: i.launch_time().map(|t| t.secs().max(0) as u64).unwrap_or(0),
                deadline: tag(TAG_DEADLINE).and_then(|d| d.parse().ok()),
                exists: true,
            });
        }
        for image in self.our_images(None).await? {
            out.push(ManagedResource {
                id: image.image_id().unwrap_or_default().to_owned(),
                kind: ResourceKind::Image,
                created_at: 0,
                deadline: None,
                exists: true,
            });
        }
        for name in self.our_key_pair_names().await? {
            out.push(ManagedResource {
                id: name,
                kind: ResourceKind::KeyPair,
                created_at: 0,
                deadline: None,
                exists: true,
            });
        }
        for id in self.our_security_group_ids().await? {
            out.push(ManagedResource {
                id,
                kind: ResourceKind::SecurityGroup,
                created_at: 0,
                deadline: None,
                exists: true,
            });
        }
        out.extend(self.our_iam().await?);
        // Ledger entries whose resource the API no longer shows.
        for rec in self.ledger.records()? {
            if !out.iter().any(|r| r.id == rec.id) && rec.kind == ResourceKind::Machine {
                out.push(ManagedResource {
                    id: rec.id,
                    kind: rec.kind,
                    created_at: rec.created_at,
                    deadline: rec.deadline,
                    exists: false,
                });
            }
        }
        Ok(out)
    }

    async fn purge(&self) -> Result<PurgeReport> {
        let mut report = PurgeReport::default();
        let ids: Vec<String> = self
            .our_instances()
            .await?
            .iter()
            .filter_map(|i| i.instance_id().map(str::to_owned))
            .collect();
        self.terminate(&ids).await?;
        report.removed.extend(ids);
        for image in self.our_images(None).await? {
            report.removed.extend(self.delete_image(&image).await?);
        }
        for name in self.our_key_pair_names().await? {
            self.ec2
                .delete_key_pair()
                .key_name(&name)
                .send()
                .await
                .map_err(|e| sdk_error("ec2", "delete key pair", &name, e))?;
            report.removed.push(name);
        }
        let _ = std::fs::remove_file(self.private_key_path());
        let _ = std::fs::remove_file(self.fingerprint_path());
        for id in self.our_security_group_ids().await? {
            let id = id.as_str();

            self.ec2
                .delete_security_group()
                .group_id(id)
                .send()
                .await
                .map_err(|e| sdk_error("ec2", "delete security group", id, e))?;
            report.removed.push(id.to_owned());
        }
        report.removed.extend(self.purge_iam().await?);
        report.removed.extend(self.purge_ssm_objects().await?);
        for rec in self.ledger.records()? {
            self.ledger.forget(&rec.id)?;
        }
        tracing::info!(removed = report.removed.len(), "purged ec2 resources");
        Ok(report)
    }
}
