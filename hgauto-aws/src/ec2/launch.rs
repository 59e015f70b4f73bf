//! Launching instances: the ledger record before `RunInstances`, the tags, waiting for them
//! to run, the machines that drive them, and [`LaunchGuard`], which terminates what a launch
//! made when the caller stops waiting halfway (a dropped future).

use std::sync::Arc;
use std::time::Duration;

use aws_sdk_ec2::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_ec2::operation::run_instances::RunInstancesError;
use aws_sdk_ec2::types::{
    Filter, InstanceStateName, InstanceType, ResourceType, ShutdownBehavior, Tag,
};
use hgauto_core::ledger::{Ledger, LedgerRecord};
use hgauto_core::{Error, Platform, RemoteMachine, ResourceKind, Result, WaitFor};
use hgauto_ssh::{Auth, HostKeyPolicy, SshConfig, SshMachine};

use super::host_keys::host_keys_from_console;
use super::{Ec2Provider, TAG_ACCESS, TAG_PREFIX, TAG_ROLE, TAG_TOKEN};
use crate::error::sdk_error;
use crate::ssm::{SsmMachine, SsmOptions};

/// What to launch.
pub(crate) struct Launch<'a> {
    pub platform: Platform,
    pub count: usize,
    pub image: &'a str,
    pub instance_type: &'a str,
    pub lifetime: Duration,
    pub name: String,
    pub shutdown: ShutdownBehavior,
    /// Base64 user data.
    pub user_data: Option<String>,
    /// Value of the `hgauto:role` tag.
    pub role: Option<&'static str>,
    /// IAM instance profile (for SSM machines).
    pub instance_profile: Option<String>,
    /// The spec's labels, as tags.
    pub labels: &'a std::collections::BTreeMap<String, String>,
}

/// How long `provision` waits for instances to run and get an address.
pub(crate) const READY_TIMEOUT: Duration = Duration::from_secs(600);

/// Terminates the instances of one launch (found by its idempotency token, so even those
/// whose `RunInstances` answer never arrived) unless [`disarm`](Self::disarm)ed first. The
/// work runs in the background (`hgauto_core::backend::background`), since `Drop` cannot await.
pub(crate) struct LaunchGuard {
    ec2: aws_sdk_ec2::Client,
    ledger: Ledger,
    prefix: String,
    token: String,
    armed: bool,
}

impl LaunchGuard {
    /// The launch succeeded and its caller owns the instances now.
    pub(crate) fn disarm(mut self) {
        self.armed = false;
    }
}

impl Drop for LaunchGuard {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let (ec2, ledger) = (self.ec2.clone(), self.ledger.clone());
        let (prefix, token) = (self.prefix.clone(), self.token.clone());
        let what = format!("terminating the instances of abandoned launch {token}");
        hgauto_core::backend::background::spawn(what, async move {
            if let Err(e) = undo_launch(&ec2, &ledger, &prefix, &token).await {
                tracing::error!(token = %token, error = %e, "could not undo an abandoned launch; run purge or sweep");
            }
        });
    }
}

/// Terminates every live instance tagged with `token` and forgets its ledger records.
async fn undo_launch(
    ec2: &aws_sdk_ec2::Client,
    ledger: &Ledger,
    prefix: &str,
    token: &str,
) -> Result<()> {
    // An in-flight RunInstances may still land: look twice.
    for round in 0..2 {
        let out = ec2
            .describe_instances()
            .filters(
                Filter::builder()
                    .name(format!("tag:{TAG_PREFIX}"))
                    .values(prefix)
                    .build(),
            )
            .filters(
                Filter::builder()
                    .name(format!("tag:{TAG_TOKEN}"))
                    .values(token)
                    .build(),
            )
            .send()
            .await
            .map_err(|e| sdk_error("ec2", "describe instances", token, e))?;
        // Instances already going (a terminate cut short before it forgot them) only leave
        // ledger records behind; the others are terminated.
        let (gone, live): (Vec<_>, Vec<_>) = out
            .reservations()
            .iter()
            .flat_map(|r| r.instances())
            .partition(|i| {
                matches!(
                    i.state().and_then(|s| s.name()),
                    Some(InstanceStateName::Terminated | InstanceStateName::ShuttingDown)
                )
            });
        for id in gone.iter().filter_map(|i| i.instance_id()) {
            ledger.forget(id)?;
        }
        let ids: Vec<String> = live
            .iter()
            .filter_map(|i| i.instance_id().map(str::to_owned))
            .collect();
        if !ids.is_empty() {
            ec2.terminate_instances()
                .set_instance_ids(Some(ids.clone()))
                .send()
                .await
                .map_err(|e| sdk_error("ec2", "terminate", &ids.join(","), e))?;
            for id in &ids {
                ledger.forget(id)?;
            }
            tracing::info!(ids = ?ids, "terminated the instances of an abandoned launch");
        }
        if round == 0 {
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
    }
    ledger.forget(&format!("pending-{token}"))
}

impl Ec2Provider {
    /// Launches instances; returns their ids and the guard that terminates them unless the
    /// caller disarms it.
    pub(crate) async fn run_instances(
        &self,
        launch: Launch<'_>,
    ) -> Result<(Vec<String>, LaunchGuard)> {
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
            labels,
        } = launch;
        let (key_name, group) = {
            let _one_at_a_time = self.supporting.lock().await;
            (
                self.ensure_key_pair().await?,
                self.ensure_security_group(platform).await?,
            )
        };
        let token = format!("{}{:016x}", self.cfg.prefix, rand::random::<u64>());
        let deadline = hgauto_core::spec::deadline_after(lifetime)?;
        // Recorded before the call: if we die before the answer, the token and tags find it.
        let pending = format!("pending-{token}");
        let mut record = LedgerRecord::new(&pending, ResourceKind::Machine);
        record.deadline = Some(deadline);
        record.details.insert("token".into(), token.clone());
        record.details.insert("count".into(), count.to_string());
        self.ledger.record(&record)?;
        let guard = LaunchGuard {
            ec2: self.ec2.clone(),
            ledger: self.ledger.clone(),
            prefix: self.cfg.prefix.clone(),
            token: token.clone(),
            armed: true,
        };
        let mut tags = self.tags(ResourceType::Instance, &name, Some(deadline), Some(&token));
        let access = if instance_profile.is_some() {
            "ssm"
        } else {
            "ssh"
        };
        let list = tags.tags.get_or_insert_with(Vec::new);
        list.push(Tag::builder().key(TAG_ACCESS).value(access).build());
        if let Some(role) = role {
            list.push(Tag::builder().key(TAG_ROLE).value(role).build());
        }
        for (k, v) in labels {
            list.push(Tag::builder().key(k).value(v).build());
        }
        let profile = instance_profile.map(|name| {
            aws_sdk_ec2::types::IamInstanceProfileSpecification::builder()
                .name(name)
                .build()
        });
        // A new instance profile takes seconds to become visible to EC2 (IAM is eventually
        // consistent); the same token makes the retries safe.
        let profile_wait = hgauto_core::RetryPolicy {
            max_retries: 6,
            base_delay: Duration::from_secs(5),
            factor: 1.0,
            max_delay: Duration::from_secs(5),
            jitter: hgauto_core::Jitter::None,
        };
        let profile_not_ready = |e: &SdkError<RunInstancesError, _>| {
            e.as_service_error()
                .and_then(|s| s.message())
                .is_some_and(|m| m.contains("Instance Profile"))
        };
        let result = profile_wait
            .run_if(
                "run instances (instance profile)",
                profile_not_ready,
                |_| {
                    self.ec2
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
                },
            )
            .await;
        let out = match result {
            Ok(out) => out,
            Err(e) => {
                let err = sdk_error("ec2", "run instances", &name, e);
                // A definite refusal created nothing; anything ambiguous stays recorded (and
                // the guard looks for what the token launched).
                if !err.is_retryable() {
                    guard.disarm();
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
        Ok((ids, guard))
    }

    /// Waits until every instance runs and has an address; returns (id, address) pairs.
    pub(crate) async fn wait_running(&self, ids: &[String]) -> Result<Vec<(String, String)>> {
        let resource = ids.join(",");
        WaitFor::new(&resource, "waiting for instances to run")
            .within(READY_TIMEOUT)
            .first_delay(Duration::from_millis(500))
            .until(|| async {
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
            })
            .await
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

    /// The instance's SSH host keys from its console output (cloud-init prints them), when
    /// the console already has them.
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

    /// The host key of instance `id` from its console, polled for at most
    /// [`AwsConfig::host_key_wait`](crate::AwsConfig::host_key_wait) (cloud-init prints the
    /// keys late in the first boot).
    async fn wait_console_host_key(&self, id: &str) -> Option<Vec<u8>> {
        let limit = Duration::from_secs(self.cfg.host_key_wait);
        let found = WaitFor::new(id, "waiting for the host keys on the console")
            .within(limit)
            .first_delay(Duration::from_secs(2))
            .until(|| async { Ok::<_, Error>(self.console_host_key(id).await) })
            .await;
        found.ok()
    }

    /// How to reach instance `id` at `address` over SSH: this state directory's key, and
    /// host keys recorded under the instance id (never the address, which EC2 recycles),
    /// pinned to `host_key` when the console gave one.
    pub fn ssh_config(
        &self,
        id: &str,
        address: &str,
        host_key: Option<Vec<u8>>,
    ) -> Result<SshConfig> {
        let policy = match host_key {
            Some(blob) => HostKeyPolicy::Pinned(blob),
            None => HostKeyPolicy::AcceptNew,
        };
        Ok(SshConfig::new(
            address,
            22,
            &self.cfg.ssh_user,
            Auth::KeyFile {
                path: self.private_key_path()?,
                passphrase: None,
            },
            &self.cfg.state_dir,
        )
        .with_host_key_alias(id)
        .with_host_keys(policy))
    }

    pub(crate) async fn ssh_machine(
        &self,
        id: &str,
        address: &str,
    ) -> Result<Arc<dyn RemoteMachine>> {
        let key = self.wait_console_host_key(id).await;
        Ok(Arc::new(SshMachine::new(
            id,
            self.ssh_config(id, address, key)?,
        )))
    }
}
