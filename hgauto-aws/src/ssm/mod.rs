//! [`SsmMachine`]: an instance driven through AWS Systems Manager Run Command, for
//! machines with no inbound network path (Windows without SSH, private subnets).
//!
//! A command is one `SendCommand` (`AWS-RunShellScript` or `AWS-RunPowerShellScript`) whose
//! script is rendered by core's quoting, then `GetCommandInvocation` polled with backoff to
//! a terminal status. Run Command has no streams: output arrives when the command ends
//! (lines are passed to the sink then), and SSM keeps 24,000 characters per stream. With an
//! S3 bucket configured, the agent also writes full output there and this machine reads
//! it back (and deletes it); without one, long output is marked [`Output::truncated`].
//!
//! Files travel through the same bucket with presigned URLs, so the instance needs `curl`
//! (or `wget`) on Linux and no AWS credentials of its own. Without a bucket, `put`, `get`,
//! `sync_tree` and stdin larger than [`INLINE_STDIN_LIMIT`] are [`Error::NotSupported`].
//!
//! On Linux the command runs in its own session whose id is written to a pid file; a
//! timeout sends a second command that kills that whole process group, then cancels the
//! first. (Cancelling alone stops only the agent's direct child.)
//!
//! A caller that stops waiting (drops the future of `exec`, `put` or `get`) leaves nothing
//! behind either: the operation records what it started before starting it, and what is
//! still recorded when the future drops is undone in the background through
//! [`hgauto_core::backend::background`] (the command killed and cancelled, staged objects and
//! output deleted). Call [`hgauto_core::backend::background::drain`] before exiting to let it finish.

mod invocation;
mod leftovers;
mod options;
mod script;
mod transfer;

pub use options::{SsmOptions, INLINE_STDIN_LIMIT, SSM_OUTPUT_LIMIT};
use transfer::{download_to, file_mode};

use std::path::Path;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_ssm::types::{InstanceInformationStringFilter, PingStatus};
use hgauto_core::{
    Command, Error, LineSink, Output, Platform, RemoteMachine, Result, Stream, SyncOptions,
    SyncReport,
};

use crate::error::sdk_error;

/// One instance managed by SSM.
#[derive(Clone)]
pub struct SsmMachine {
    id: String,
    platform: Platform,
    home: String,
    ssm: aws_sdk_ssm::Client,
    s3: Option<aws_sdk_s3::Client>,
    opts: SsmOptions,
}

impl std::fmt::Debug for SsmMachine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SsmMachine")
            .field("id", &self.id)
            .field("platform", &self.platform)
            .field("bucket", &self.opts.bucket)
            .finish()
    }
}

impl SsmMachine {
    /// A machine for instance `id`. `s3` is needed only when `opts.bucket` is set.
    pub fn new(
        id: impl Into<String>,
        platform: Platform,
        ssm: aws_sdk_ssm::Client,
        s3: Option<aws_sdk_s3::Client>,
        opts: SsmOptions,
    ) -> Self {
        let home = opts.home.clone().unwrap_or_else(|| match platform {
            Platform::Linux => "/root".into(),
            Platform::Windows => "C:\\hgauto".into(),
        });
        SsmMachine {
            id: id.into(),
            platform,
            home,
            ssm,
            s3,
            opts,
        }
    }

    /// A machine for instance `id` with clients built from `cfg` (credentials checked),
    /// using `cfg.ssm_bucket` for full output and file transfer, as
    /// [`Ec2Provider::ssm_machine`](crate::Ec2Provider::ssm_machine) does.
    pub async fn from_config(
        cfg: &crate::AwsConfig,
        id: impl Into<String>,
        platform: Platform,
    ) -> hgauto_core::Result<Self> {
        cfg.validate()?;
        let sdk = cfg.sdk_config().await;
        crate::AwsConfig::check_credentials(&sdk).await?;
        let s3 = cfg.ssm_bucket.as_ref().map(|_| crate::s3::client(&sdk));
        let opts = SsmOptions {
            bucket: cfg.ssm_bucket.clone(),
            key_prefix: cfg.ssm_key_prefix(),
            ..SsmOptions::default()
        };
        Ok(Self::new(
            id,
            platform,
            aws_sdk_ssm::Client::new(&sdk),
            s3,
            opts,
        ))
    }

    /// The options this machine uses.
    pub fn options(&self) -> &SsmOptions {
        &self.opts
    }
}

/// Whether SSM reports the agent on instance `id` as online (ping status `Online`).
pub(crate) async fn agent_online(ssm: &aws_sdk_ssm::Client, id: &str) -> Result<bool> {
    let filter = InstanceInformationStringFilter::builder()
        .key("InstanceIds")
        .values(id)
        .build()
        .map_err(|e| Error::invalid("SSM filter", e.to_string()))?;
    let out = ssm
        .describe_instance_information()
        .filters(filter)
        .send()
        .await
        .map_err(|e| sdk_error("ssm", "describe instance information", id, e))?;
    Ok(out
        .instance_information_list()
        .iter()
        .any(|i| i.ping_status() == Some(&PingStatus::Online)))
}

/// Passes `data` to `sink` line by line (see [`hgauto_core::LineSplitter`]).
fn emit_lines(sink: LineSink<'_>, stream: Stream, data: &[u8]) {
    hgauto_core::LineSplitter::split_all(data, |line| sink(stream, line));
}

#[async_trait]
impl RemoteMachine for SsmMachine {
    fn id(&self) -> &str {
        &self.id
    }

    fn platform(&self) -> Platform {
        self.platform
    }

    async fn exec_streaming(&self, cmd: &Command, sink: LineSink<'_>) -> Result<Output> {
        self.exec_recorded(cmd, sink, &mut self.leftovers()).await
    }

    async fn put(&self, local: &Path, remote: &str) -> Result<()> {
        let (bucket, s3) = self.transfer("put")?;
        let (sha, _size) = hgauto_core::artifact::sha256_file(local)?;
        let mode = file_mode(local)?;
        let mut left = self.leftovers();
        let key = left.new_object();
        let body = ByteStream::from_path(local)
            .await
            .map_err(|e| Error::io("read", local, "localhost", std::io::Error::other(e)))?;
        s3.put_object()
            .bucket(bucket)
            .key(&key)
            .body(body)
            .send()
            .await
            .map_err(|e| sdk_error("s3", "upload", &key, e))?;
        let result = async {
            let url = self.presign_get(s3, bucket, &key).await?;
            let text = match self.platform {
                Platform::Linux => script::put_posix(remote, &url, &sha, mode)?,
                Platform::Windows => script::put_powershell(remote, &url, &sha)?,
            };
            self.run_helper(text, "put", remote, &mut left)
                .await
                .map(drop)
        }
        .await;
        left.delete(&key).await;
        result
    }

    async fn get(&self, remote: &str, local: &Path) -> Result<()> {
        let (bucket, s3) = self.transfer("get")?;
        // The instance uploads to this key.
        let mut left = self.leftovers();
        let key = left.new_object();
        let result = async {
            let url = self.presign_put(s3, bucket, &key).await?;
            let text = match self.platform {
                Platform::Linux => script::get_posix(remote, &url)?,
                Platform::Windows => script::get_powershell(remote, &url)?,
            };
            let out = self.run_helper(text, "get", remote, &mut left).await?;
            let report = out.stdout_str();
            let mut lines = report.lines();
            let mode = lines
                .next()
                .and_then(|m| u32::from_str_radix(m.trim(), 8).ok())
                .unwrap_or(0o644);
            let sha = lines.next().unwrap_or_default().trim().to_owned();
            let obj = s3
                .get_object()
                .bucket(bucket)
                .key(&key)
                .send()
                .await
                .map_err(|e| sdk_error("s3", "download", &key, e))?;
            download_to(
                obj.body,
                local,
                &sha,
                mode,
                &format!("{remote} on {}", self.id),
            )
            .await
        }
        .await;
        left.delete(&key).await;
        result
    }

    async fn sync_tree(
        &self,
        local_dir: &Path,
        remote_dir: &str,
        options: &SyncOptions,
    ) -> Result<SyncReport> {
        if self.platform != Platform::Linux {
            return Err(Error::NotSupported {
                backend: format!("ssm machine {}", self.id),
                what: "sync_tree on Windows".into(),
            });
        }
        self.transfer("sync_tree")?;
        hgauto_core::backend::tree_sync::sync_over_exec(self, local_dir, remote_dir, options).await
    }

    async fn wait_ready(&self, timeout: Duration) -> Result<()> {
        hgauto_core::WaitFor::new(&self.id, "SSM agent to come online")
            .within(timeout)
            .first_delay(self.opts.poll_first)
            .max_delay(Duration::from_secs(5))
            .until(|| async { Ok(agent_online(&self.ssm, &self.id).await?.then_some(())) })
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emit_lines_splits_like_the_other_backends() {
        let mut got = Vec::new();
        let mut sink = |s: Stream, l: &[u8]| got.push((s, l.to_vec()));
        emit_lines(&mut sink, Stream::Stdout, b"a\n\nb");
        emit_lines(&mut sink, Stream::Stderr, b"c\n");
        emit_lines(&mut sink, Stream::Stderr, b"");
        assert_eq!(
            got,
            vec![
                (Stream::Stdout, b"a".to_vec()),
                (Stream::Stdout, b"".to_vec()),
                (Stream::Stdout, b"b".to_vec()),
                (Stream::Stderr, b"c".to_vec()),
            ]
        );
    }
}
