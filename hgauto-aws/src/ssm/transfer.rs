//! Files and large stdin through the S3 bucket, with presigned URLs, so the instance needs
//! no AWS credentials of its own: staging, presigning, helper commands, and downloads that
//! land by rename after their digest is checked.

use std::path::Path;
use std::time::Duration;

use aws_sdk_s3::presigning::PresigningConfig;
use aws_sdk_s3::primitives::ByteStream;
use hgauto_core::{Command, Error, ExitStatus, Output, Result};
use tokio::io::AsyncWriteExt;

use super::leftovers::Leftovers;
use super::options::INLINE_STDIN_LIMIT;
use super::{script, SsmMachine};
use crate::error::sdk_error;

impl SsmMachine {
    /// The bucket and client for transfers, or `NotSupported` naming `what`.
    pub(super) fn transfer(&self, what: &str) -> Result<(&str, &aws_sdk_s3::Client)> {
        match (&self.opts.bucket, &self.s3) {
            (Some(b), Some(c)) => Ok((b, c)),
            _ => Err(Error::NotSupported {
                backend: format!("ssm machine {}", self.id),
                what: format!(
                    "{what} without an S3 bucket (set ssm_bucket in the AWS config or \
                     HGAUTO_SSM_BUCKET; SsmOptions::bucket in Rust)"
                ),
            }),
        }
    }

    pub(super) fn transfer_key(&self) -> String {
        format!(
            "{}/transfer/{}/{:016x}",
            self.opts.key_prefix.trim_end_matches('/'),
            self.id,
            rand::random::<u64>()
        )
    }

    pub(super) async fn delete_object(&self, bucket: &str, key: &str) {
        if let Some(s3) = &self.s3 {
            if let Err(e) = s3.delete_object().bucket(bucket).key(key).send().await {
                tracing::warn!(bucket, key, error = %sdk_error("s3", "delete", key, e), "could not delete");
            }
        }
    }

    /// Stages large stdin in the bucket (recording its key in `left`); returns how the
    /// script gets it and the key to delete.
    pub(super) async fn stage_stdin(
        &self,
        data: &[u8],
        left: &mut Leftovers,
    ) -> Result<(script::Stdin, Option<String>)> {
        if data.len() <= INLINE_STDIN_LIMIT {
            return Ok((script::Stdin::Inline(data.to_vec()), None));
        }
        let (bucket, s3) = self.transfer(&format!("{} bytes of stdin", data.len()))?;
        let key = left.new_object();
        s3.put_object()
            .bucket(bucket)
            .key(&key)
            .body(ByteStream::from(data.to_vec()))
            .send()
            .await
            .map_err(|e| sdk_error("s3", "upload stdin", &key, e))?;
        let url = self.presign_get(s3, bucket, &key).await?;
        Ok((script::Stdin::Url(url), Some(key)))
    }

    pub(super) async fn presign_get(
        &self,
        s3: &aws_sdk_s3::Client,
        bucket: &str,
        key: &str,
    ) -> Result<String> {
        let req = s3
            .get_object()
            .bucket(bucket)
            .key(key)
            .presigned(presigning()?)
            .await
            .map_err(|e| sdk_error("s3", "presign download", key, e))?;
        Ok(req.uri().to_owned())
    }

    pub(super) async fn presign_put(
        &self,
        s3: &aws_sdk_s3::Client,
        bucket: &str,
        key: &str,
    ) -> Result<String> {
        let req = s3
            .put_object()
            .bucket(bucket)
            .key(key)
            .presigned(presigning()?)
            .await
            .map_err(|e| sdk_error("s3", "presign upload", key, e))?;
        Ok(req.uri().to_owned())
    }

    /// Runs a helper script of this module (under the transfer's record `left`) and returns
    /// its output, failing on non-zero exit.
    pub(super) async fn run_helper(
        &self,
        script: String,
        what: &str,
        path: &str,
        left: &mut Leftovers,
    ) -> Result<Output> {
        let cmd = Command::script(script).idempotent(true);
        let out = self.exec_recorded(&cmd, &mut |_, _| {}, left).await?;
        match out.status {
            ExitStatus::Code(0) => Ok(out),
            ExitStatus::Code(3) => Err(Error::NotFound {
                what: format!("{path} on {}", self.id),
            }),
            ExitStatus::Code(4) => Err(Error::Integrity {
                what: format!("{path} on {} after {what}", self.id),
                expected: "the sha256 sent".into(),
                actual: out.stderr_str().trim().to_owned(),
            }),
            status => Err(Error::CommandFailed {
                machine: self.id.clone(),
                command: format!("{what} {path}"),
                status,
                stderr_tail: out.stderr_str(),
            }),
        }
    }
}

pub(super) fn presigning() -> Result<PresigningConfig> {
    PresigningConfig::expires_in(Duration::from_secs(3600))
        .map_err(|e| Error::invalid("presigned URL lifetime", e.to_string()))
}

pub(super) fn file_mode(path: &Path) -> Result<u32> {
    use std::os::unix::fs::PermissionsExt;
    Ok(std::fs::metadata(path)
        .map_err(|e| Error::io("stat", path, "localhost", e))?
        .permissions()
        .mode()
        & hgauto_core::backend::fs::MODE_MASK)
}

/// Streams `body` into a temp file next to `local`, checks its sha256 against `sha` (when
/// known), sets `mode` and renames it into place.
pub(super) async fn download_to(
    mut body: ByteStream,
    local: &Path,
    sha: &str,
    mode: u32,
    what: &str,
) -> Result<()> {
    use sha2::{Digest, Sha256};
    use std::os::unix::fs::PermissionsExt;
    let dir = local.parent().unwrap_or(Path::new("."));
    tokio::fs::create_dir_all(dir)
        .await
        .map_err(|e| Error::io("create", dir, "localhost", e))?;
    let tmp = tempfile::Builder::new()
        .prefix(".hgauto-get")
        .tempfile_in(dir)
        .map_err(|e| Error::io("create", dir, "localhost", e))?;
    let mut file = tokio::fs::File::from_std(
        tmp.reopen()
            .map_err(|e| Error::io("open", tmp.path(), "localhost", e))?,
    );
    let mut hasher = Sha256::new();
    while let Some(chunk) = body.try_next().await.map_err(|e| Error::Backend {
        backend: "s3".into(),
        message: format!("downloading {what}: {e}"),
        retryable: true,
        source: None,
    })? {
        hasher.update(&chunk);
        file.write_all(&chunk)
            .await
            .map_err(|e| Error::io("write", tmp.path(), "localhost", e))?;
    }
    file.flush()
        .await
        .map_err(|e| Error::io("write", tmp.path(), "localhost", e))?;
    let actual = hex::encode(hasher.finalize());
    if !sha.is_empty() && actual != sha {
        return Err(Error::Integrity {
            what: what.to_owned(),
            expected: sha.to_owned(),
            actual,
        });
    }
    // The temp file was 0600 while it filled (tempfile creates it so); only the
    // permission bits of the remote mode land.
    std::fs::set_permissions(
        tmp.path(),
        std::fs::Permissions::from_mode(mode & hgauto_core::backend::fs::MODE_MASK),
    )
    .map_err(|e| Error::io("chmod", tmp.path(), "localhost", e))?;
    tmp.persist(local)
        .map_err(|e| Error::io("rename into", local, "localhost", e.error))?;
    Ok(())
}
