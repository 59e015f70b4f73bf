//! EC2 helpers for tests on moto_server (feature `aws`): a client with moto's test
//! credentials, the image-build instances hgauto launched, and stopping them as their
//! bootstrap's power-off would (moto runs no user data).

use aws_sdk_ec2::types::{Filter, Instance};

/// A client of the EC2 endpoint `endpoint` with moto's test credentials, in us-east-1.
pub fn client(endpoint: &str) -> aws_sdk_ec2::Client {
    let conf = aws_sdk_ec2::Config::builder()
        .behavior_version(aws_sdk_ec2::config::BehaviorVersion::latest())
        .region(aws_sdk_ec2::config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_ec2::config::Credentials::new(
            "testing", "testing", None, None, "test",
        ))
        .endpoint_url(endpoint)
        .http_client(aws_smithy_http_client::Builder::new().build_http())
        .build();
    aws_sdk_ec2::Client::from_conf(conf)
}

/// Image-build instances (tag `hgauto:role=image-build`), only the running ones with
/// `running_only`.
pub async fn build_instances(
    client: &aws_sdk_ec2::Client,
    running_only: bool,
) -> Result<Vec<Instance>, aws_sdk_ec2::Error> {
    let role = Filter::builder()
        .name("tag:hgauto:role")
        .values("image-build")
        .build();
    let mut req = client.describe_instances().filters(role);
    if running_only {
        let running = Filter::builder()
            .name("instance-state-name")
            .values("running")
            .build();
        req = req.filters(running);
    }
    let out = req.send().await?;
    Ok(out
        .reservations()
        .iter()
        .flat_map(|r| r.instances())
        .cloned()
        .collect())
}

/// The ids of `instances`.
pub fn ids(instances: &[Instance]) -> Vec<String> {
    instances
        .iter()
        .filter_map(|i| i.instance_id().map(str::to_owned))
        .collect()
}

/// Stops the instances `ids` (none: nothing is sent).
pub async fn stop(
    client: &aws_sdk_ec2::Client,
    ids: Vec<String>,
) -> Result<(), aws_sdk_ec2::Error> {
    if !ids.is_empty() {
        client
            .stop_instances()
            .set_instance_ids(Some(ids))
            .send()
            .await?;
    }
    Ok(())
}
