//! [`S3Publisher`]: publishes artifacts to an S3 bucket, idempotently.

use async_trait::async_trait;
use aws_sdk_s3::error::ProvideErrorMetadata;
use aws_sdk_s3::primitives::ByteStream;
use base64::Engine as _;
use hgauto_core::artifact::{sha256_file, validate_name};
use hgauto_core::backend::publish::publish_async;
use hgauto_core::{Artifact, Error, PublishReport, Publisher, Result};

use crate::error::sdk_error;

/// The object metadata key holding an artifact's sha256 (hex).
pub const SHA256_METADATA: &str = "hgauto-sha256";

/// An S3 client with path-style addressing, which works with every endpoint (moto, MinIO,
/// VPC endpoints). Uploads of large artifacts may take long: instead of a limit on the
/// whole call, a call fails when no byte moves for the read timeout.
pub(crate) fn client(sdk: &aws_config::SdkConfig) -> aws_sdk_s3::Client {
    let mut timeouts = aws_config::timeout::TimeoutConfig::builder()
        .disable_operation_timeout()
        .disable_operation_attempt_timeout();
    if let Some(base) = sdk.timeout_config() {
        if let Some(t) = base.connect_timeout() {
            timeouts = timeouts.connect_timeout(t);
        }
        if let Some(t) = base.read_timeout() {
            timeouts = timeouts.read_timeout(t);
        }
    }
    aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(sdk)
            .force_path_style(true)
            .timeout_config(timeouts.build())
            .build(),
    )
}

/// How a conditional upload went.
enum Upload {
    /// The object is ours.
    Done,
    /// Another write of the same name won or is in progress.
    Raced,
}

/// Uploads artifacts as `s3://bucket/prefix/name`, each with its sha256 recorded in object
/// metadata and sent as S3's own `x-amz-checksum-sha256`, so S3 rejects a body that does
/// not match. An object whose recorded sha256 differs is a conflict, never overwritten;
/// uploads use `If-None-Match: *`, so a concurrent publisher cannot overwrite either.
#[derive(Debug, Clone)]
pub struct S3Publisher {
    client: aws_sdk_s3::Client,
    bucket: String,
    prefix: String,
    name: String,
}

impl S3Publisher {
    /// A publisher into `bucket` under `prefix` (may be empty).
    pub fn new(
        client: aws_sdk_s3::Client,
        bucket: impl Into<String>,
        prefix: impl Into<String>,
    ) -> Self {
        let prefix = prefix.into().trim_matches('/').to_owned();
        let bucket = bucket.into();
        let name = format!("s3://{bucket}/{prefix}");
        S3Publisher {
            client,
            bucket,
            prefix,
            name,
        }
    }

    /// A publisher built from an [`AwsConfig`](crate::AwsConfig).
    pub async fn from_config(
        cfg: &crate::AwsConfig,
        bucket: impl Into<String>,
        prefix: impl Into<String>,
    ) -> Result<Self> {
        cfg.validate()?;
        let sdk = cfg.sdk_config().await;
        crate::AwsConfig::check_credentials(&sdk).await?;
        Ok(Self::new(client(&sdk), bucket, prefix))
    }

    fn key(&self, name: &str) -> String {
        if self.prefix.is_empty() {
            name.to_owned()
        } else {
            format!("{}/{name}", self.prefix)
        }
    }

    /// `Ok(true)` identical, `Ok(false)` absent, `Conflict` when other content is there.
    async fn check_existing(&self, artifact: &Artifact) -> Result<bool> {
        let key = self.key(&artifact.name);
        match self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(&key)
            .send()
            .await
        {
            Ok(head) => {
                let recorded = head
                    .metadata()
                    .and_then(|m| m.get(SHA256_METADATA))
                    .cloned();
                match recorded {
                    Some(sha) if sha == artifact.sha256 => Ok(true),
                    Some(sha) => Err(Error::Conflict {
                        what: format!("s3://{}/{key}", self.bucket),
                        reason: format!(
                            "already published with sha256 {sha}, not {}",
                            artifact.sha256
                        ),
                    }),
                    None => Err(Error::Conflict {
                        what: format!("s3://{}/{key}", self.bucket),
                        reason: "exists without a recorded sha256 (not published by hgauto)".into(),
                    }),
                }
            }
            Err(e) if e.as_service_error().is_some_and(|s| s.is_not_found()) => Ok(false),
            Err(e) => Err(sdk_error(
                "s3",
                "head object",
                &format!("s3://{}/{key}", self.bucket),
                e,
            )),
        }
    }

    async fn upload(&self, a: &Artifact) -> Result<Upload> {
        // The file must still be what was described: S3 checks the body against this.
        let (actual, _) = sha256_file(&a.path)?;
        if actual != a.sha256 {
            return Err(Error::Integrity {
                what: format!("{} (changed since it was described)", a.path.display()),
                expected: a.sha256.clone(),
                actual,
            });
        }
        let digest = hex::decode(&a.sha256)
            .map_err(|e| Error::invalid(format!("sha256 of {}", a.name), e.to_string()))?;
        let body = ByteStream::from_path(&a.path).await.map_err(|e| {
            Error::io(
                "read",
                &a.path,
                "localhost",
                std::io::Error::other(e.to_string()),
            )
        })?;
        let key = self.key(&a.name);
        let result = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(&key)
            .body(body)
            .content_length(a.size as i64)
            .checksum_sha256(base64::engine::general_purpose::STANDARD.encode(digest))
            .metadata(SHA256_METADATA, &a.sha256)
            .if_none_match("*")
            .send()
            .await;
        match result {
            Ok(_) => Ok(Upload::Done),
            // Someone published the same name meanwhile (412), or is publishing it right
            // now (409 ConditionalRequestConflict: S3 lost the race between two
            // conditional writes): what is there decides.
            Err(e)
                if matches!(
                    e.as_service_error().and_then(|s| s.code()),
                    Some("PreconditionFailed" | "ConditionalRequestConflict")
                ) =>
            {
                Ok(Upload::Raced)
            }
            Err(e) => Err(sdk_error(
                "s3",
                "put object",
                &format!("s3://{}/{key}", self.bucket),
                e,
            )),
        }
    }

    /// Uploads `a` unless it is there; `Ok(true)` when this call published it. A
    /// concurrent publisher of the same name is waited out (up to 3 tries): the same
    /// content is already present, other content is a conflict.
    async fn publish_one(&self, a: &Artifact) -> Result<bool> {
        for attempt in 0..3u32 {
            if self.check_existing(a).await? {
                return Ok(false);
            }
            match self.upload(a).await? {
                Upload::Done => return Ok(true),
                Upload::Raced => {
                    tokio::time::sleep(std::time::Duration::from_millis(200 << attempt)).await
                }
            }
        }
        if self.check_existing(a).await? {
            return Ok(false);
        }
        Err(Error::Conflict {
            what: format!("s3://{}/{}", self.bucket, self.key(&a.name)),
            reason: "another publisher kept writing this name; try again".into(),
        })
    }
}

#[async_trait]
impl Publisher for S3Publisher {
    fn name(&self) -> &str {
        &self.name
    }

    async fn exists(&self, artifact: &Artifact) -> Result<bool> {
        validate_name(&artifact.name)?;
        self.check_existing(artifact).await
    }

    async fn publish(&self, artifacts: &[Artifact]) -> Result<PublishReport> {
        publish_async(
            self.name(),
            artifacts,
            1,
            |a| self.check_existing(a),
            |a| self.publish_one(a),
        )
        .await
    }
}
