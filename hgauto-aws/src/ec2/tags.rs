//! Tags: the set every resource is created with (prefix, owner, creator, idempotency
//! token), finding this provider's instances, key pairs and groups by them, recording
//! supporting resources in the ledger, and the tags that change while a machine lives (its
//! `hgauto:deadline`, which the sweep reads, and its `Name`, a pipeline worker's state).

use aws_sdk_ec2::types::{Filter, ResourceType, Tag, TagSpecification};
use hgauto_core::{Error, Result};

use hgauto_core::ledger::LedgerRecord;
use hgauto_core::session::session_id;
use hgauto_core::ResourceKind;

use super::{Ec2Provider, TAG_CREATED_BY, TAG_DEADLINE, TAG_OWNER, TAG_PREFIX, TAG_TOKEN};
use crate::error::sdk_error;

impl Ec2Provider {
    pub(super) fn tags(
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

    /// Describes instances with our prefix tag that are not terminated.
    pub(super) async fn our_instances(&self) -> Result<Vec<aws_sdk_ec2::types::Instance>> {
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

    /// Names of key pairs with our prefix.
    pub(super) async fn our_key_pair_names(&self) -> Result<Vec<String>> {
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
    pub(super) async fn our_security_group_ids(&self) -> Result<Vec<String>> {
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
    pub(super) fn record_supporting(&self, name: &str, kind: ResourceKind) -> Result<()> {
        let mut record = LedgerRecord::new(name, kind);
        record
            .details
            .insert("region".into(), self.cfg.region.clone());
        self.ledger.record(&record)
    }

    /// Tags instances `ids` with the deadline `until` (Unix seconds) and records it.
    pub(super) async fn move_deadline(&self, ids: &[String], until: u64) -> Result<()> {
        self.tag_instances(ids, TAG_DEADLINE, &until.to_string())
            .await?;
        for id in ids {
            if let Some(mut rec) = self.ledger.get(id)? {
                rec.deadline = Some(until);
                self.ledger.record(&rec)?;
            }
        }
        Ok(())
    }

    /// Sets the `Name` tag of instance `id`, which the EC2 console shows.
    pub(super) async fn name_instance(&self, id: &str, label: &str) -> Result<()> {
        self.tag_instances(&[id.to_owned()], "Name", label).await
    }

    /// Sets tag `key` to `value` on instances `ids` (only instance ids are accepted).
    async fn tag_instances(&self, ids: &[String], key: &str, value: &str) -> Result<()> {
        if ids.is_empty() {
            return Ok(());
        }
        if let Some(bad) = ids.iter().find(|id| !id.starts_with("i-")) {
            return Err(Error::invalid(
                format!("instance id {bad:?}"),
                "is not an instance id",
            ));
        }
        self.ec2
            .create_tags()
            .set_resources(Some(ids.to_vec()))
            .tags(Tag::builder().key(key).value(value).build())
            .send()
            .await
            .map_err(|e| sdk_error("ec2", "tag", &ids.join(","), e))?;
        Ok(())
    }
}
