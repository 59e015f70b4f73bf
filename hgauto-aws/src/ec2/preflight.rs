//! Checks before a launch: the instance type exists in the region, and the image is there
//! (an id, or the newest image whose name matches a pattern), so a bad spec creates nothing.

use aws_sdk_ec2::error::ProvideErrorMetadata;
use aws_sdk_ec2::types::{Filter, InstanceType};
use hgauto_core::{Error, Result};

use super::Ec2Provider;
use crate::error::sdk_error;

impl Ec2Provider {
    /// Checks the instance type exists (catches a typo before money is spent).
    pub(super) async fn preflight_instance_type(&self, instance_type: &str) -> Result<()> {
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
    pub(super) async fn preflight_image(&self, image: &str) -> Result<String> {
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
}
