//! Moving a machine's deadline: the `hgauto:deadline` tag the sweep reads, and the ledger
//! record, so that a long-lived machine (a builder agent's) is not swept while in use.

use aws_sdk_ec2::types::Tag;
use hgauto_core::{Error, Result};

use super::{Ec2Provider, TAG_DEADLINE};
use crate::error::sdk_error;

impl Ec2Provider {
    /// Tags instances `ids` with the deadline `until` (Unix seconds) and records it.
    pub(super) async fn move_deadline(&self, ids: &[String], until: u64) -> Result<()> {
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
            .tags(
                Tag::builder()
                    .key(TAG_DEADLINE)
                    .value(until.to_string())
                    .build(),
            )
            .send()
            .await
            .map_err(|e| sdk_error("ec2", "tag", &ids.join(","), e))?;
        for id in ids {
            if let Some(mut rec) = self.ledger.get(id)? {
                rec.deadline = Some(until);
                self.ledger.record(&rec)?;
            }
        }
        Ok(())
    }
}
