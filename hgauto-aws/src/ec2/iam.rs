//! The IAM role and instance profile that let instances register with SSM (and, when an
//! output bucket is configured, write command output to it). Reconciled idempotently,
//! recorded in the ledger before creation, removed by `purge`.

use aws_sdk_iam::types::Tag;
use hgauto_core::{ManagedResource, ResourceKind, Result};

use super::{Ec2Provider, TAG_CREATED_BY, TAG_OWNER, TAG_PREFIX};
use crate::error::sdk_error;

/// IAM path of everything hgauto creates (names still carry the prefix).
const IAM_PATH: &str = "/hgauto/";

/// The managed policy that lets the SSM agent work.
const SSM_CORE_POLICY: &str = "policy/AmazonSSMManagedInstanceCore";

/// The inline policy name for writing command output.
const OUTPUT_POLICY: &str = "hgauto-ssm-output";

const ASSUME_ROLE: &str = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"ec2.amazonaws.com"},"Action":"sts:AssumeRole"}]}"#;

/// The ARN partition of a region (`aws`, `aws-cn`, `aws-us-gov`).
pub(crate) fn partition(region: &str) -> &'static str {
    if region.starts_with("cn-") {
        "aws-cn"
    } else if region.starts_with("us-gov-") {
        "aws-us-gov"
    } else {
        "aws"
    }
}

fn is_missing<E: aws_sdk_iam::error::ProvideErrorMetadata>(e: &E) -> bool {
    e.code() == Some("NoSuchEntity")
}

impl Ec2Provider {
    /// The name of the SSM role and of its instance profile.
    pub fn instance_profile_name(&self) -> String {
        format!("{}ssm", self.cfg.prefix)
    }

    fn iam_tags(&self) -> Vec<Tag> {
        [
            (TAG_PREFIX, self.cfg.prefix.as_str()),
            (TAG_OWNER, self.cfg.owner.as_str()),
            (TAG_CREATED_BY, hgauto_core::session::session_id()),
        ]
        .into_iter()
        .filter_map(|(k, v)| Tag::builder().key(k).value(v).build().ok())
        .collect()
    }

    /// Makes sure the SSM role (trusting EC2, with `AmazonSSMManagedInstanceCore` and, with
    /// an output bucket, `s3:PutObject` under the SSM key prefix) and its instance profile
    /// exist. Returns the instance profile name.
    pub async fn ensure_instance_profile(&self) -> Result<String> {
        let name = self.instance_profile_name();
        let iam = &self.iam;
        match iam.get_role().role_name(&name).send().await {
            Ok(_) => {}
            Err(e) if e.as_service_error().is_some_and(is_missing) => {
                self.record_supporting(&format!("role/{name}"), ResourceKind::Role)?;
                iam.create_role()
                    .role_name(&name)
                    .path(IAM_PATH)
                    .assume_role_policy_document(ASSUME_ROLE)
                    .description("hgauto: lets instances use SSM")
                    .set_tags(Some(self.iam_tags()))
                    .send()
                    .await
                    .map_err(|e| sdk_error("iam", "create role", &name, e))?;
            }
            Err(e) => return Err(sdk_error("iam", "get role", &name, e)),
        }
        let policy = format!(
            "arn:{}:iam::aws:{SSM_CORE_POLICY}",
            partition(&self.cfg.region)
        );
        iam.attach_role_policy()
            .role_name(&name)
            .policy_arn(&policy)
            .send()
            .await
            .map_err(|e| sdk_error("iam", "attach role policy", &name, e))?;
        if let Some(bucket) = &self.cfg.ssm_bucket {
            let doc = serde_json::json!({
                "Version": "2012-10-17",
                "Statement": [{
                    "Effect": "Allow",
                    "Action": ["s3:PutObject"],
                    "Resource": format!("arn:{}:s3:::{bucket}/{}/*", partition(&self.cfg.region), self.cfg.ssm_key_prefix()),
                }]
            });
            iam.put_role_policy()
                .role_name(&name)
                .policy_name(OUTPUT_POLICY)
                .policy_document(doc.to_string())
                .send()
                .await
                .map_err(|e| sdk_error("iam", "put role policy", &name, e))?;
        }
        let has_role = match iam
            .get_instance_profile()
            .instance_profile_name(&name)
            .send()
            .await
        {
            Ok(out) => out
                .instance_profile()
                .is_some_and(|p| p.roles().iter().any(|r| r.role_name() == name)),
            Err(e) if e.as_service_error().is_some_and(is_missing) => {
                self.record_supporting(
                    &format!("instance-profile/{name}"),
                    ResourceKind::InstanceProfile,
                )?;
                iam.create_instance_profile()
                    .instance_profile_name(&name)
                    .path(IAM_PATH)
                    .set_tags(Some(self.iam_tags()))
                    .send()
                    .await
                    .map_err(|e| sdk_error("iam", "create instance profile", &name, e))?;
                false
            }
            Err(e) => return Err(sdk_error("iam", "get instance profile", &name, e)),
        };
        if !has_role {
            iam.add_role_to_instance_profile()
                .instance_profile_name(&name)
                .role_name(&name)
                .send()
                .await
                .map_err(|e| sdk_error("iam", "add role to instance profile", &name, e))?;
        }
        Ok(name)
    }

    /// Deletes what SSM machines left in the bucket (output and transfers of commands whose
    /// caller died before cleaning up). Returns the removed `s3://` URLs.
    pub(crate) async fn purge_ssm_objects(&self) -> Result<Vec<String>> {
        let Some(bucket) = &self.cfg.ssm_bucket else {
            return Ok(Vec::new());
        };
        let prefix = format!("{}/", self.cfg.ssm_key_prefix());
        let mut removed = Vec::new();
        let mut token = None;
        loop {
            let page = self
                .s3
                .list_objects_v2()
                .bucket(bucket)
                .prefix(&prefix)
                .set_continuation_token(token.take())
                .send()
                .await
                .map_err(|e| sdk_error("s3", "list SSM objects", &prefix, e))?;
            for key in page.contents().iter().filter_map(|o| o.key()) {
                self.s3
                    .delete_object()
                    .bucket(bucket)
                    .key(key)
                    .send()
                    .await
                    .map_err(|e| sdk_error("s3", "delete SSM object", key, e))?;
                removed.push(format!("s3://{bucket}/{key}"));
            }
            match page.next_continuation_token() {
                Some(t) if page.is_truncated() == Some(true) => token = Some(t.to_owned()),
                _ => return Ok(removed),
            }
        }
    }

    /// Our roles and instance profiles (by IAM path and name prefix).
    pub(crate) async fn our_iam(&self) -> Result<Vec<ManagedResource>> {
        let mut out = Vec::new();
        let profiles = self
            .iam
            .list_instance_profiles()
            .path_prefix(IAM_PATH)
            .send()
            .await
            .map_err(|e| sdk_error("iam", "list instance profiles", IAM_PATH, e))?;
        for p in profiles.instance_profiles() {
            if p.instance_profile_name().starts_with(&self.cfg.prefix) {
                out.push(iam_resource(
                    p.instance_profile_name(),
                    ResourceKind::InstanceProfile,
                ));
            }
        }
        let roles = self
            .iam
            .list_roles()
            .path_prefix(IAM_PATH)
            .send()
            .await
            .map_err(|e| sdk_error("iam", "list roles", IAM_PATH, e))?;
        for r in roles.roles() {
            if r.role_name().starts_with(&self.cfg.prefix) {
                out.push(iam_resource(r.role_name(), ResourceKind::Role));
            }
        }
        Ok(out)
    }

    /// Deletes our instance profiles (after removing their roles), then our roles (after
    /// detaching and deleting their policies). Returns what was removed.
    pub(crate) async fn purge_iam(&self) -> Result<Vec<String>> {
        let mut removed = Vec::new();
        let iam = &self.iam;
        for r in self.our_iam().await? {
            let name = r.id.as_str();
            match r.kind {
                ResourceKind::InstanceProfile => {
                    let p = iam
                        .get_instance_profile()
                        .instance_profile_name(name)
                        .send()
                        .await
                        .map_err(|e| sdk_error("iam", "get instance profile", name, e))?;
                    let roles: Vec<String> = p
                        .instance_profile()
                        .map(|p| p.roles().iter().map(|r| r.role_name().to_owned()).collect())
                        .unwrap_or_default();
                    for role in roles {
                        iam.remove_role_from_instance_profile()
                            .instance_profile_name(name)
                            .role_name(&role)
                            .send()
                            .await
                            .map_err(|e| sdk_error("iam", "remove role from profile", name, e))?;
                    }
                    iam.delete_instance_profile()
                        .instance_profile_name(name)
                        .send()
                        .await
                        .map_err(|e| sdk_error("iam", "delete instance profile", name, e))?;
                    removed.push(format!("instance-profile/{name}"));
                }
                ResourceKind::Role => {
                    let attached = iam
                        .list_attached_role_policies()
                        .role_name(name)
                        .send()
                        .await
                        .map_err(|e| sdk_error("iam", "list attached policies", name, e))?;
                    for p in attached.attached_policies() {
                        if let Some(arn) = p.policy_arn() {
                            iam.detach_role_policy()
                                .role_name(name)
                                .policy_arn(arn)
                                .send()
                                .await
                                .map_err(|e| sdk_error("iam", "detach role policy", name, e))?;
                        }
                    }
                    let inline = iam
                        .list_role_policies()
                        .role_name(name)
                        .send()
                        .await
                        .map_err(|e| sdk_error("iam", "list role policies", name, e))?;
                    for p in inline.policy_names() {
                        iam.delete_role_policy()
                            .role_name(name)
                            .policy_name(p)
                            .send()
                            .await
                            .map_err(|e| sdk_error("iam", "delete role policy", name, e))?;
                    }
                    iam.delete_role()
                        .role_name(name)
                        .send()
                        .await
                        .map_err(|e| sdk_error("iam", "delete role", name, e))?;
                    removed.push(format!("role/{name}"));
                }
                _ => {}
            }
        }
        Ok(removed)
    }
}

fn iam_resource(name: &str, kind: ResourceKind) -> ManagedResource {
    ManagedResource {
        id: name.to_owned(),
        kind,
        created_at: 0,
        deadline: None,
        exists: true,
    }
}
