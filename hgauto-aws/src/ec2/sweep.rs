//! `sweep`: remove what a crashed or forgotten run left behind.
//!
//! An instance goes when its `hgauto:deadline` tag has passed, or when the process that
//! created it (its `hgauto:created-by` session) is known to be gone (see
//! `hgauto_core::session`: another host or container is never "known gone") and the boot
//! grace period has passed, or when it is in our ledger, past the grace period and
//! unreachable (a machine that never booted, or lost its network, only costs money). Only
//! running machines are probed, each the way it is driven (SSH or SSM): never an image
//! build instance (it may be stopped on purpose, and a Windows builder has no sshd), nor one
//! that is pending, stopping or stopped. Ledger records are
//! resolved the same way; a `pending-<token>` record (written before `RunInstances`
//! answered) finds its instances by the `hgauto:token` tag.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use hgauto_core::clock::unix_now;
use hgauto_core::session::session_is_dead;
use hgauto_core::{PurgeReport, ResourceKind, ResourceProvider, Result};

use aws_sdk_ec2::types::{InstanceStateName, PlatformValues};

use super::images::IMAGE_BUILD_ROLE;
use super::{Ec2Provider, TAG_ACCESS, TAG_CREATED_BY, TAG_DEADLINE, TAG_ROLE, TAG_TOKEN};

/// What a reachability probe learns about one instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeTarget {
    /// The instance id.
    pub id: String,
    /// Its public address, else its private one.
    pub address: Option<String>,
    /// `true` when it is driven over SSM (its `hgauto:access` tag), else SSH.
    pub ssm: bool,
}

/// Decides whether an instance answers: `true` keeps it.
pub type Probe<'a> = &'a (dyn Fn(ProbeTarget) -> Pin<Box<dyn Future<Output = bool> + Send>> + Sync);

impl Ec2Provider {
    /// [`sweep_with`](Self::sweep_with) with the standard probe: a TCP connection to port 22
    /// within 5 s for SSH machines, SSM's ping status `Online` for SSM machines.
    pub async fn sweep(&self, grace: Duration) -> Result<PurgeReport> {
        let ssm = self.ssm.clone();
        let probe = move |t: ProbeTarget| -> Pin<Box<dyn Future<Output = bool> + Send>> {
            let ssm = ssm.clone();
            Box::pin(async move {
                if t.ssm {
                    // Unknown is not "unreachable": never terminate on an API error.
                    crate::ssm::agent_online(&ssm, &t.id).await.unwrap_or(true)
                } else if let Some(addr) = t.address {
                    let connect = tokio::net::TcpStream::connect((addr.as_str(), 22));
                    matches!(
                        tokio::time::timeout(Duration::from_secs(5), connect).await,
                        Ok(Ok(_))
                    )
                } else {
                    false
                }
            })
        };
        self.sweep_with(grace, &probe).await
    }

    /// Terminates instances past their deadline; instances whose creator is gone once
    /// `grace` has passed since launch; and instances in our ledger, past `grace`, that
    /// `probe` finds unreachable. Forgets ledger records whose resources are gone.
    pub async fn sweep_with(&self, grace: Duration, probe: Probe<'_>) -> Result<PurgeReport> {
        let now = unix_now();
        let instances = self.our_instances().await?;
        let tag = |i: &aws_sdk_ec2::types::Instance, k: &str| {
            i.tags()
                .iter()
                .find(|t| t.key() == Some(k))
                .and_then(|t| t.value())
                .map(str::to_owned)
        };
        let mut doomed: Vec<String> = Vec::new();
        for i in &instances {
            let id = i.instance_id().unwrap_or_default().to_owned();
            let expired = tag(i, TAG_DEADLINE)
                .and_then(|d| d.parse::<u64>().ok())
                .is_some_and(|d| d <= now);
            let launched = i.launch_time().map(|t| t.secs().max(0) as u64).unwrap_or(0);
            let orphaned = tag(i, TAG_CREATED_BY).is_some_and(|s| session_is_dead(&s))
                && launched + grace.as_secs() <= now;
            if expired || orphaned {
                tracing::info!(instance = %id, expired, orphaned, "sweeping");
                doomed.push(id);
            }
        }
        let live: Vec<String> = instances
            .iter()
            .filter_map(|i| i.instance_id().map(str::to_owned))
            .collect();
        let mut forget = Vec::new();
        for rec in self.ledger.records()? {
            if rec.kind != ResourceKind::Machine {
                continue;
            }
            let creator_gone =
                session_is_dead(&rec.session) && rec.created_at + grace.as_secs() <= now;
            if let Some(token) = rec
                .details
                .get("token")
                .filter(|_| rec.id.starts_with("pending-"))
            {
                // Instances launched under this token, whether or not the answer arrived.
                let matched: Vec<String> = instances
                    .iter()
                    .filter(|i| tag(i, TAG_TOKEN).as_deref() == Some(token.as_str()))
                    .filter_map(|i| i.instance_id().map(str::to_owned))
                    .collect();
                if creator_gone {
                    // Forgetting is safe: an instance of this launch that shows up later
                    // still carries the dead creator's tag, which the rule above sweeps.
                    forget.push(rec.id.clone());
                    doomed.extend(matched);
                }
            } else if !live.contains(&rec.id) {
                forget.push(rec.id.clone()); // already gone
            } else if creator_gone {
                doomed.push(rec.id.clone());
            } else if let Some(i) = instances
                .iter()
                .find(|i| i.instance_id() == Some(rec.id.as_str()))
            {
                let launched = i.launch_time().map(|t| t.secs().max(0) as u64).unwrap_or(0);
                if launched + grace.as_secs() > now || doomed.contains(&rec.id) {
                    continue;
                }
                let running = i.state().and_then(|s| s.name()) == Some(&InstanceStateName::Running);
                let builder = tag(i, TAG_ROLE).as_deref() == Some(IMAGE_BUILD_ROLE);
                if !running || builder {
                    continue;
                }
                let target = ProbeTarget {
                    id: rec.id.clone(),
                    address: i
                        .public_ip_address()
                        .or(i.private_ip_address())
                        .map(str::to_owned),
                    ssm: tag(i, TAG_ACCESS).as_deref() == Some("ssm")
                        || i.platform() == Some(&PlatformValues::Windows),
                };
                if !probe(target).await {
                    tracing::info!(instance = %rec.id, "sweeping: unreachable after the grace period");
                    doomed.push(rec.id.clone());
                }
            }
        }
        doomed.sort();
        doomed.dedup();
        self.terminate(&doomed).await?;
        for id in &forget {
            self.ledger.forget(id)?;
        }
        let mut report = PurgeReport::default();
        report.removed.extend(doomed);
        report.removed.extend(forget);
        Ok(report)
    }
}
