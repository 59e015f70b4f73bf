//! The [`ResourceProvider`] trait: creates and destroys machines.

use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::machine::RemoteMachine;
use crate::spec::{ImageRecipe, MachineSpec};

/// Creates machines and everything they need, and removes all of it again.
///
/// # Contract
/// - Every resource is recorded (in a local ledger, and as tags where the platform has
///   them: owner/prefix, creator, deadline) *before* the call that creates it, so a crash at
///   any point leaves a trace that [`purge`](Self::purge) or a sweep can act on.
/// - `provision` either returns all `count` machines or, on failure, removes what it had
///   created before returning the error. A `provision` future that is dropped before it
///   completes (an interrupt, a caller's timeout) leaves nothing either: what it had made
///   is undone through [`backend::background`](crate::backend::background), which a
///   program about to exit drains.
/// - `terminate` is idempotent: terminating a machine that is already gone succeeds.
/// - `ensure_image` returns an image id for the recipe's fingerprint, building the image
///   only when no image with that fingerprint exists.
/// - Use [`TemporaryMachines`](crate::TemporaryMachines) or
///   [`with_machines`](crate::with_machines) rather than `provision` directly: they
///   terminate on every exit path.
#[cfg_attr(feature = "mocks", mockall::automock)]
#[async_trait]
pub trait ResourceProvider: Send + Sync {
    /// A short name for logs and errors ("local", "ec2").
    fn name(&self) -> &str;

    /// Creates `count` machines matching `spec` and waits until they are ready.
    async fn provision(
        &self,
        spec: &MachineSpec,
        count: usize,
    ) -> Result<Vec<Arc<dyn RemoteMachine>>>;

    /// Destroys the machines with these ids (and anything they alone used).
    async fn terminate(&self, ids: &[String]) -> Result<()>;

    /// Returns the id of an image built from `recipe`, building it if needed.
    async fn ensure_image(&self, recipe: &ImageRecipe) -> Result<String>;

    /// Everything this provider manages right now.
    async fn list_managed(&self) -> Result<Vec<ManagedResource>>;

    /// Removes everything this provider manages: machines, images, and supporting resources.
    async fn purge(&self) -> Result<PurgeReport>;

    /// Moves the deadline of the machines `ids` to `until` (seconds since the Unix epoch),
    /// so that a sweep leaves a long-lived machine (an agent's) alone while it is in use.
    /// The default: not supported.
    async fn extend_deadline(&self, ids: &[String], until: u64) -> Result<()> {
        let _ = (ids, until);
        Err(crate::Error::NotSupported {
            backend: self.name().to_owned(),
            what: "extending machine deadlines".into(),
        })
    }

    /// Shows `label` as the machine's name where the provider has names (an EC2 `Name`
    /// tag; the local ledger's `name`), so a console or `list` shows what each machine is
    /// doing, e.g. a pipeline worker's `wa-2-build-3.1-debian`. Best effort for callers:
    /// a label is not worth retrying. The default: not supported.
    async fn set_label(&self, id: &str, label: &str) -> Result<()> {
        let _ = (id, label);
        Err(crate::Error::NotSupported {
            backend: self.name().to_owned(),
            what: "machine labels".into(),
        })
    }
}

/// The kind of a managed resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum ResourceKind {
    /// A machine (sandbox, instance).
    Machine,
    /// A machine image.
    Image,
    /// A disk snapshot behind an image.
    Snapshot,
    /// An SSH key pair.
    KeyPair,
    /// A firewall / security group.
    SecurityGroup,
    /// An IAM role.
    Role,
    /// An IAM instance profile.
    InstanceProfile,
}

impl ResourceKind {
    /// Its name, as in JSON (`machine`).
    pub fn as_str(self) -> &'static str {
        match self {
            ResourceKind::Machine => "machine",
            ResourceKind::Image => "image",
            ResourceKind::Snapshot => "snapshot",
            ResourceKind::KeyPair => "key-pair",
            ResourceKind::SecurityGroup => "security-group",
            ResourceKind::Role => "role",
            ResourceKind::InstanceProfile => "instance-profile",
        }
    }
}

impl std::fmt::Display for ResourceKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One resource a provider manages.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManagedResource {
    /// The provider's id for it.
    pub id: String,
    /// What it is.
    pub kind: ResourceKind,
    /// Seconds since the Unix epoch when it was recorded.
    pub created_at: u64,
    /// Seconds since the Unix epoch after which a sweep may remove it.
    pub deadline: Option<u64>,
    /// Whether it exists now (false: only the ledger remembers it).
    pub exists: bool,
}

/// What a purge removed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PurgeReport {
    /// Ids of the removed resources.
    pub removed: Vec<String>,
}

#[cfg(test)]
mod name_tests {
    use super::*;

    #[test]
    fn as_str_is_the_json_name() {
        for v in [
            ResourceKind::Machine,
            ResourceKind::Image,
            ResourceKind::Snapshot,
            ResourceKind::KeyPair,
            ResourceKind::SecurityGroup,
            ResourceKind::Role,
            ResourceKind::InstanceProfile,
        ] {
            assert_eq!(serde_json::to_value(v).unwrap(), v.as_str(), "{v:?}");
            assert_eq!(v.to_string(), v.as_str());
        }
    }
}
