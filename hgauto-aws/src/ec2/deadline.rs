//! Instance tags that change while a machine lives: its deadline (the `hgauto:deadline` tag
//! the sweep reads, and the ledger record, so a long-lived agent machine is not swept while
//! in use) and its `Name` (a pipeline worker's state).

use aws_sdk_ec2::types::Tag;
use hgauto_core::{Error, Result};

use super::{Ec2Provider, TAG_DEADLINE};
use crate::error::sdk_error;

impl Ec2Provider {
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
