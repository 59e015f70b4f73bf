//! [`Ec2Provider`]: EC2 instances as hgauto machines.
//!
//! Safety first, in this order: validate everything (region, CIDR, credentials, instance
//! type, image) before creating anything; write a ledger record *before* `RunInstances`
//! (with the idempotency token); tag every instance with owner, creator and deadline; make
//! instances terminate on shutdown. Every wait has a deadline and backs off.

use std::sync::Arc;

use async_trait::async_trait;
use aws_sdk_ec2::error::ProvideErrorMetadata;
use aws_sdk_ec2::types::ShutdownBehavior;
use hgauto_core::ledger::Ledger;
use hgauto_core::{
    Error, ImageRecipe, MachineSpec, ManagedResource, Platform, PurgeReport, RemoteMachine,
    ResourceKind, ResourceProvider, Result,
};

use crate::config::{Access, AwsConfig};
use crate::error::sdk_error;

const TAG_PREFIX: &str = "hgauto:prefix";
const TAG_OWNER: &str = "hgauto:owner";
const TAG_CREATED_BY: &str = "hgauto:created-by";
const TAG_DEADLINE: &str = "hgauto:deadline";
const TAG_TOKEN: &str = "hgauto:token";
const TAG_ROLE: &str = "hgauto:role";
const TAG_ACCESS: &str = "hgauto:access";

mod access;
mod host_keys;
mod iam;
mod images;
mod launch;
mod preflight;
mod sweep;
mod tags;

pub use host_keys::host_keys_from_console;
pub(crate) use launch::Launch;
pub use sweep::{Probe, ProbeTarget};

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
}

/// Labels become instance tags as they are; refuses those EC2 would refuse or that would
/// overwrite hgauto's own tags, before anything is created.
fn check_labels(labels: &std::collections::BTreeMap<String, String>) -> Result<()> {
    for (k, v) in labels {
        let reserved =
            k == "Name" || k.starts_with("hgauto:") || k.to_ascii_lowercase().starts_with("aws:");
        if k.is_empty() || k.chars().count() > 128 || reserved {
            return Err(Error::invalid(
                format!("label {k:?}"),
                "must be 1-128 characters and not Name, hgauto:* or aws:* (used as an EC2 tag key)",
            ));
        }
        if v.chars().count() > 256 {
            return Err(Error::invalid(
                format!("value of label {k:?}"),
                "must be at most 256 characters (used as an EC2 tag value)",
            ));
        }
    }
    Ok(())
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
        check_labels(&spec.labels)?;
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
                signal: hgauto_core::cleanup::interrupt_signal(),
            });
        }
        // From here, a caller that stops waiting (a dropped future) leaves nothing behind:
        // the guard terminates what the launch made.
        let (ids, guard) = self
            .run_instances(Launch {
                platform: spec.platform,
                count,
                image: &image,
                instance_type: &instance_type,
                lifetime: spec.lifetime,
                name: format!("{}machine", self.cfg.prefix),
                shutdown: ShutdownBehavior::Terminate,
                user_data: spec.user_data.as_ref().map(|script| {
                    use base64::Engine as _;
                    base64::engine::general_purpose::STANDARD.encode(script)
                }),
                role: None,
                instance_profile,
                labels: &spec.labels,
            })
            .await?;
        // Ctrl-C while waiting: terminate what this call launched before the signal
        // handler gives up waiting for provisions in flight.
        let made = async {
            let ready = self.wait_running(&ids).await?;
            tracing::info!(ids = ?ids, "instances running");
            let mut machines: Vec<Arc<dyn RemoteMachine>> = Vec::with_capacity(ready.len());
            for (id, addr) in &ready {
                machines.push(if ssm {
                    Arc::new(self.ssm_machine(id, spec.platform))
                } else {
                    self.ssh_machine(id, addr).await?
                });
            }
            Ok(machines)
        };
        let made = tokio::select! {
            r = made => r,
            () = hgauto_core::cleanup::interrupted() => Err(Error::Interrupted {
                signal: hgauto_core::cleanup::interrupt_signal(),
            }),
        };
        let made = match made {
            Ok(_) if hgauto_core::cleanup::is_interrupted() => Err(Error::Interrupted {
                signal: hgauto_core::cleanup::interrupt_signal(),
            }),
            other => other,
        };
        match made {
            Ok(machines) => {
                guard.disarm();
                Ok(machines)
            }
            Err(e) => {
                match self.terminate(&ids).await {
                    Ok(()) => guard.disarm(),
                    Err(t) => {
                        tracing::error!(error = %t, "terminating after a failed start failed; retrying in the background")
                    }
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
        let known_hosts = self.cfg.state_dir.join("ssh").join("known_hosts");
        for id in ids {
            self.ledger.forget(id)?;
            // Host keys were recorded under the instance id; the id is never reused.
            hgauto_ssh::known_hosts::remove(&known_hosts, id)?;
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

    /// Re-tags the instances' `hgauto:deadline`, which the sweep reads.
    async fn extend_deadline(&self, ids: &[String], until: u64) -> Result<()> {
        self.move_deadline(ids, until).await
    }

    /// Sets the instance's `Name` tag (CreateTags).
    async fn set_label(&self, id: &str, label: &str) -> Result<()> {
        self.name_instance(id, label).await
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
            self.delete_key_pair(&name).await?;
            report.removed.push(name);
        }
        for path in [self.private_key_path()?, self.fingerprint_path()?] {
            let _ = std::fs::remove_file(path);
        }
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
