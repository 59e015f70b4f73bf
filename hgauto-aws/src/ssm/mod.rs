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
//! [`hgauto_core::background`] (the command killed and cancelled, staged objects and
//! output deleted). Call [`hgauto_core::background::drain`] before exiting to let it finish.

mod script;

use std::path::Path;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_s3::presigning::PresigningConfig;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_ssm::operation::get_command_invocation::GetCommandInvocationOutput;
use aws_sdk_ssm::types::{CommandInvocationStatus, InstanceInformationStringFilter, PingStatus};
use hgauto_core::{
    Command, Error, ExitStatus, LineSink, Output, Platform, RemoteMachine, Result, Stream,
    SyncOptions, SyncReport,
};
use tokio::io::AsyncWriteExt;
use tokio::time::Instant;

use crate::error::sdk_error;

/// SSM keeps this many characters of each stream in `GetCommandInvocation`.
pub const SSM_OUTPUT_LIMIT: usize = 24_000;

/// Stdin up to this size travels inside the command (base64); larger stdin needs a bucket.
pub const INLINE_STDIN_LIMIT: usize = 48 * 1024;

/// Scripts above this size are refused before sending (SSM rejects large parameters).
const SCRIPT_LIMIT: usize = 96 * 1024;

/// How an [`SsmMachine`] sends commands and moves files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SsmOptions {
    /// The directory commands start in and relative paths are relative to (`$HOME` on
    /// Linux). `None`: `/root` on Linux (the agent runs as root), `C:\hgauto` on Windows.
    pub home: Option<String>,
    /// S3 bucket for full command output and file transfer.
    pub bucket: Option<String>,
    /// Key prefix of everything this machine writes to the bucket.
    pub key_prefix: String,
    /// How long the agent may take to pick a command up (SSM's `TimeoutSeconds`, >= 30 s).
    pub delivery_timeout: Duration,
    /// The time limit of a command that sets none (SSM's default `executionTimeout`).
    pub default_timeout: Duration,
    /// First delay between status polls (doubles up to `poll_max`).
    pub poll_first: Duration,
    /// Longest delay between status polls.
    pub poll_max: Duration,
}

impl Default for SsmOptions {
    fn default() -> Self {
        SsmOptions {
            home: None,
            bucket: None,
            key_prefix: "hgauto-ssm".into(),
            delivery_timeout: Duration::from_secs(600),
            default_timeout: Duration::from_secs(3600),
            poll_first: Duration::from_millis(250),
            poll_max: Duration::from_secs(2),
        }
    }
}

impl SsmOptions {
    /// Sets the bucket for full output and file transfer.
    pub fn with_bucket(mut self, bucket: impl Into<String>) -> Self {
        self.bucket = Some(bucket.into());
        self
    }

    /// Sets the home directory on the machine.
    pub fn with_home(mut self, home: impl Into<String>) -> Self {
        self.home = Some(home.into());
        self
    }
}

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

/// How a command invocation ended, as far as SSM says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Terminal {
    /// The script ran and exited with this code.
    Exited(i32),
    /// The agent did not pick the command up within the delivery timeout.
    DeliveryTimedOut,
    /// SSM's own execution timeout stopped it.
    ExecutionTimedOut,
    /// Someone cancelled it.
    Cancelled,
    /// SSM could not run it (undeliverable, invalid platform, access denied, ...).
    NotRun(String),
}

/// Classifies a terminal invocation; `None` while it is still pending or running.
pub fn classify(inv: &GetCommandInvocationOutput) -> Option<Terminal> {
    let details = inv.status_details().unwrap_or_default();
    let code = inv.response_code();
    match inv.status()? {
        CommandInvocationStatus::Success => Some(Terminal::Exited(code.max(0))),
        CommandInvocationStatus::Failed if code >= 0 && matches!(details, "" | "Failed") => {
            Some(Terminal::Exited(code))
        }
        CommandInvocationStatus::Failed => Some(Terminal::NotRun(if details.is_empty() {
            "Failed".into()
        } else {
            details.to_owned()
        })),
        CommandInvocationStatus::TimedOut if details == "DeliveryTimedOut" => {
            Some(Terminal::DeliveryTimedOut)
        }
        CommandInvocationStatus::TimedOut => Some(Terminal::ExecutionTimedOut),
        CommandInvocationStatus::Cancelled => Some(Terminal::Cancelled),
        CommandInvocationStatus::Pending
        | CommandInvocationStatus::InProgress
        | CommandInvocationStatus::Delayed
        | CommandInvocationStatus::Cancelling => None,
        other => Some(Terminal::NotRun(format!(
            "unknown status {}",
            other.as_str()
        ))),
    }
}

/// The result of waiting for an invocation.
enum Waited {
    Done(Box<GetCommandInvocationOutput>, Terminal),
    /// Our deadline passed; the last status seen (if any).
    Deadline(Option<CommandInvocationStatus>),
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

    fn document(&self) -> &'static str {
        match self.platform {
            Platform::Linux => "AWS-RunShellScript",
            Platform::Windows => "AWS-RunPowerShellScript",
        }
    }

    /// The bucket and client for transfers, or `NotSupported` naming `what`.
    fn transfer(&self, what: &str) -> Result<(&str, &aws_sdk_s3::Client)> {
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

    fn transfer_key(&self) -> String {
        format!(
            "{}/transfer/{}/{:016x}",
            self.opts.key_prefix.trim_end_matches('/'),
            self.id,
            rand::random::<u64>()
        )
    }

    /// Sends `script`; returns the command id.
    async fn send(&self, script: String, timeout: Duration) -> Result<String> {
        if script.len() > SCRIPT_LIMIT {
            return Err(Error::invalid(
                format!("command for {}", self.id),
                format!(
                    "is {} bytes after rendering; SSM takes at most {SCRIPT_LIMIT} (move data with put)",
                    script.len()
                ),
            ));
        }
        let exec_secs = timeout.as_secs().max(1) + 30;
        let mut req = self
            .ssm
            .send_command()
            .instance_ids(&self.id)
            .document_name(self.document())
            .comment("hgauto")
            .parameters("commands", vec![script])
            .parameters("executionTimeout", vec![exec_secs.to_string()])
            .timeout_seconds(self.opts.delivery_timeout.as_secs().clamp(30, 2_592_000) as i32);
        if let Some(bucket) = &self.opts.bucket {
            req = req
                .output_s3_bucket_name(bucket)
                .output_s3_key_prefix(self.opts.key_prefix.trim_end_matches('/'));
        }
        let out = req.send().await.map_err(|e| {
            if e.as_service_error()
                .is_some_and(|s| s.is_invalid_instance_id())
            {
                Error::Connection {
                    machine: self.id.clone(),
                    may_have_run: false,
                    source: "SSM does not manage this instance, or its agent is offline".into(),
                }
            } else {
                sdk_error("ssm", "send command", &self.id, e)
            }
        })?;
        out.command()
            .and_then(|c| c.command_id())
            .map(str::to_owned)
            .ok_or_else(|| Error::Backend {
                backend: "ssm".into(),
                message: "SendCommand returned no command id".into(),
                retryable: false,
                source: None,
            })
    }

    /// Polls the invocation until it is terminal or `deadline` passes.
    async fn wait(&self, command_id: &str, deadline: Instant) -> Result<Waited> {
        let mut delay = self.opts.poll_first;
        let mut last = None;
        loop {
            let got = self
                .ssm
                .get_command_invocation()
                .command_id(command_id)
                .instance_id(&self.id)
                .send()
                .await;
            match got {
                Ok(inv) => {
                    if let Some(t) = classify(&inv) {
                        return Ok(Waited::Done(Box::new(inv), t));
                    }
                    last = inv.status().cloned();
                }
                // Eventual consistency: a just-sent command is briefly unknown.
                Err(e)
                    if e.as_service_error()
                        .is_some_and(|s| s.is_invocation_does_not_exist()) => {}
                Err(e) => {
                    let err = sdk_error("ssm", "get command invocation", command_id, e);
                    if !err.is_retryable() {
                        return Err(err);
                    }
                    tracing::warn!(command = command_id, error = %err, "polling SSM; will retry");
                }
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(Waited::Deadline(last));
            }
            tokio::time::sleep(delay.min(deadline - now)).await;
            delay = (delay * 2).min(self.opts.poll_max);
        }
    }

    /// Stops a command that ran past its deadline or was abandoned: sends a command that
    /// kills its process group and cancels it (both requests go out before any waiting, so
    /// an exiting program gets them out), then waits for the kill and removes the output.
    /// `command_id` is unknown when the caller left while `SendCommand` was in flight; then
    /// only the kill can be sent.
    async fn stop(&self, command_id: Option<&str>, token: &str) {
        let kill = if self.platform == Platform::Linux {
            let sent = self
                .send(script::kill_script(token), Duration::from_secs(30))
                .await;
            sent.map_err(|e| tracing::warn!(machine = %self.id, error = %e, "could not send kill"))
                .ok()
        } else {
            None
        };
        if let Some(command_id) = command_id {
            let cancelled = self
                .ssm
                .cancel_command()
                .command_id(command_id)
                .instance_ids(&self.id)
                .send()
                .await;
            if let Err(e) = cancelled {
                let e = sdk_error("ssm", "cancel", command_id, e);
                tracing::warn!(command = command_id, error = %e, "cancel failed");
            }
        }
        if let Some(kill_id) = kill {
            let deadline = Instant::now() + Duration::from_secs(60);
            if let Err(e) = self.wait(&kill_id, deadline).await {
                tracing::warn!(machine = %self.id, error = %e, "kill command failed");
            }
            self.discard_output(&kill_id).await;
        }
        // The agent uploads whatever output there was once the command ends; wait for that
        // (bounded) so nothing is left in the bucket.
        if let (Some(command_id), Some(_)) = (command_id, &self.opts.bucket) {
            let _ = self
                .wait(command_id, Instant::now() + Duration::from_secs(30))
                .await;
            self.discard_output(command_id).await;
        }
    }

    /// A record of what an operation has left on the instance or in the bucket; see
    /// [`Leftovers`].
    fn leftovers(&self) -> Leftovers {
        Leftovers {
            machine: self.clone(),
            objects: Vec::new(),
            command: None,
        }
    }

    fn output_prefix(&self, command_id: &str) -> String {
        format!(
            "{}/{command_id}/{}/",
            self.opts.key_prefix.trim_end_matches('/'),
            self.id
        )
    }

    /// Deletes a command's output objects (for commands whose output nobody reads).
    async fn discard_output(&self, command_id: &str) {
        let (Some(bucket), Some(s3)) = (&self.opts.bucket, &self.s3) else {
            return;
        };
        let prefix = self.output_prefix(command_id);
        match s3
            .list_objects_v2()
            .bucket(bucket)
            .prefix(&prefix)
            .send()
            .await
        {
            Ok(listed) => {
                for key in listed.contents().iter().filter_map(|o| o.key()) {
                    self.delete_object(bucket, key).await;
                }
            }
            Err(e) => {
                tracing::warn!(prefix, error = %sdk_error("s3", "list", &prefix, e), "could not clean up output")
            }
        }
    }

    /// Full output from the bucket when there is one, else what SSM kept.
    async fn collect_output(
        &self,
        command_id: &str,
        inv: &GetCommandInvocationOutput,
    ) -> Result<(Vec<u8>, Vec<u8>, bool)> {
        let inline_out = inv.standard_output_content().unwrap_or_default();
        let inline_err = inv.standard_error_content().unwrap_or_default();
        let cut = |s: &str| s.chars().count() >= SSM_OUTPUT_LIMIT;
        if let (Some(bucket), Some(s3)) = (&self.opts.bucket, &self.s3) {
            let prefix = self.output_prefix(command_id);
            let listed = s3
                .list_objects_v2()
                .bucket(bucket)
                .prefix(&prefix)
                .send()
                .await
                .map_err(|e| sdk_error("s3", "list command output", &prefix, e))?;
            let mut stdout = None;
            let mut stderr = None;
            for obj in listed.contents() {
                let Some(key) = obj.key() else { continue };
                let slot = if key.ends_with("/stdout") {
                    &mut stdout
                } else if key.ends_with("/stderr") {
                    &mut stderr
                } else {
                    continue;
                };
                let body = s3
                    .get_object()
                    .bucket(bucket)
                    .key(key)
                    .send()
                    .await
                    .map_err(|e| sdk_error("s3", "get command output", key, e))?
                    .body
                    .collect()
                    .await
                    .map_err(|e| Error::Backend {
                        backend: "s3".into(),
                        message: format!("reading {key}: {e}"),
                        retryable: true,
                        source: None,
                    })?;
                *slot = Some(body.into_bytes().to_vec());
                self.delete_object(bucket, key).await;
            }
            // The agent writes no object for an empty stream.
            let missing_out = stdout.is_none() && !inline_out.is_empty();
            let missing_err = stderr.is_none() && !inline_err.is_empty();
            let truncated = (missing_out && cut(inline_out)) || (missing_err && cut(inline_err));
            return Ok((
                stdout.unwrap_or_else(|| inline_out.as_bytes().to_vec()),
                stderr.unwrap_or_else(|| inline_err.as_bytes().to_vec()),
                truncated,
            ));
        }
        Ok((
            inline_out.as_bytes().to_vec(),
            inline_err.as_bytes().to_vec(),
            cut(inline_out) || cut(inline_err),
        ))
    }

    async fn delete_object(&self, bucket: &str, key: &str) {
        if let Some(s3) = &self.s3 {
            if let Err(e) = s3.delete_object().bucket(bucket).key(key).send().await {
                tracing::warn!(bucket, key, error = %sdk_error("s3", "delete", key, e), "could not delete");
            }
        }
    }

    /// Stages large stdin in the bucket (recording its key in `left`); returns how the
    /// script gets it and the key to delete.
    async fn stage_stdin(
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

    async fn presign_get(
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

    async fn presign_put(
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

    /// Runs `cmd`, recording in `left` what it starts (staged stdin, the command) until it
    /// has cleaned that up itself. Transfers pass their own record, so that an abandoned
    /// transfer's object is deleted only after its helper command has stopped.
    async fn exec_recorded(
        &self,
        cmd: &Command,
        sink: LineSink<'_>,
        left: &mut Leftovers,
    ) -> Result<Output> {
        let started = std::time::Instant::now();
        let timeout = cmd.get_timeout().unwrap_or(self.opts.default_timeout);
        let token = format!("{:016x}", rand::random::<u64>());
        let (stdin, staged) = match cmd.get_stdin() {
            Some(data) if self.platform == Platform::Windows => {
                return Err(Error::NotSupported {
                    backend: format!("ssm machine {}", self.id),
                    what: format!("stdin on Windows ({} bytes given)", data.len()),
                })
            }
            Some(data) => self.stage_stdin(data, left).await?,
            None => (script::Stdin::None, None),
        };
        let text = match self.platform {
            Platform::Linux => script::posix(cmd, &self.home, &token, &stdin)?,
            Platform::Windows => script::powershell(cmd, &self.home)?,
        };
        // Recorded before sending: a caller gone while SendCommand is in flight still gets
        // the kill (which is harmless if the command never started) and the cancel.
        left.command = Some(Started::Running {
            id: None,
            token: token.clone(),
        });
        let result = match self.send(text, timeout).await {
            Ok(command_id) => {
                left.command = Some(Started::Running {
                    id: Some(command_id.clone()),
                    token: token.clone(),
                });
                let waited = self.wait(&command_id, Instant::now() + timeout).await;
                match waited {
                    Ok(Waited::Done(inv, term)) => {
                        left.command = Some(Started::Ended {
                            id: command_id.clone(),
                        });
                        self.finish(&command_id, &inv, term, started, sink).await
                    }
                    Ok(Waited::Deadline(last)) => {
                        self.stop(Some(&command_id), &token).await;
                        Err(Error::Timeout {
                            machine: self.id.clone(),
                            what: format!(
                                "{} (SSM status at the deadline: {})",
                                cmd.display(),
                                last.as_ref().map_or("unknown", |s| s.as_str())
                            ),
                            after: timeout,
                        })
                    }
                    Err(e) => Err(e),
                }
            }
            Err(e) => Err(e),
        };
        left.command = None;
        if let Some(key) = staged {
            left.delete(&key).await;
        }
        result
    }

    /// Runs a helper script of this module (under the transfer's record `left`) and returns
    /// its output, failing on non-zero exit.
    async fn run_helper(
        &self,
        script: String,
        what: &str,
        path: &str,
        left: &mut Leftovers,
    ) -> Result<Output> {
        let cmd = Command::script(script).idempotent(true);
        let out = self.exec_recorded(&cmd, &|_, _| {}, left).await?;
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

/// How long an abandoned upload may take to land after its client hung up.
const UPLOAD_SETTLE: Duration = Duration::from_secs(2);

/// What an operation has left on the instance or in the bucket so far. Each entry is
/// recorded before the thing it names is created and cleared once the operation has
/// cleaned it up itself. Whatever is still recorded when the guard drops (the caller
/// stopped waiting mid-operation) is undone by a background task (see
/// [`hgauto_core::background`]): the command is killed and cancelled, its output and the
/// staged objects are deleted.
struct Leftovers {
    machine: SsmMachine,
    objects: Vec<String>,
    command: Option<Started>,
}

/// A command the instance was given.
enum Started {
    /// Sent (possibly still running) under this kill token; the id is unknown while
    /// `SendCommand` is in flight.
    Running { id: Option<String>, token: String },
    /// Ended; its output may still be in the bucket.
    Ended { id: String },
}

impl Leftovers {
    /// A new transfer key in the bucket, recorded before anything is written to it.
    fn new_object(&mut self) -> String {
        let key = self.machine.transfer_key();
        self.objects.push(key.clone());
        key
    }

    /// Deletes a recorded object now and forgets it.
    async fn delete(&mut self, key: &str) {
        if let Some(bucket) = &self.machine.opts.bucket {
            self.machine.delete_object(bucket, key).await;
        }
        self.objects.retain(|k| k != key);
    }
}

impl Drop for Leftovers {
    fn drop(&mut self) {
        if self.objects.is_empty() && self.command.is_none() {
            return;
        }
        let m = self.machine.clone();
        let objects = std::mem::take(&mut self.objects);
        let command = self.command.take();
        let what = match &command {
            Some(Started::Running { id, .. }) => format!(
                "stopping SSM command {} on {}",
                id.as_deref().unwrap_or("(being sent)"),
                m.id
            ),
            Some(Started::Ended { id }) => format!("removing output of SSM command {id}"),
            None => format!("removing {} staged object(s) of {}", objects.len(), m.id),
        };
        hgauto_core::background::spawn(what, async move {
            match command {
                Some(Started::Running { id, token }) => m.stop(id.as_deref(), &token).await,
                Some(Started::Ended { id }) => m.discard_output(&id).await,
                None => {}
            }
            if let (Some(bucket), false) = (&m.opts.bucket, objects.is_empty()) {
                for key in &objects {
                    m.delete_object(bucket, key).await;
                }
                // An upload whose client hung up after sending the body can still complete on
                // the server after the first delete (seen with S3-compatible servers):
                // delete again once such a request has had time to land.
                tokio::time::sleep(UPLOAD_SETTLE).await;
                for key in &objects {
                    m.delete_object(bucket, key).await;
                }
            }
        });
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

fn presigning() -> Result<PresigningConfig> {
    PresigningConfig::expires_in(Duration::from_secs(3600))
        .map_err(|e| Error::invalid("presigned URL lifetime", e.to_string()))
}

/// Passes `data` to `sink` line by line (without the `\n`).
fn emit_lines(sink: LineSink<'_>, stream: Stream, data: &[u8]) {
    if data.is_empty() {
        return;
    }
    let body = data.strip_suffix(b"\n").unwrap_or(data);
    for line in body.split(|&b| b == b'\n') {
        sink(stream, line);
    }
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
        hgauto_ssh::sync_over_exec(self, local_dir, remote_dir, options).await
    }

    async fn wait_ready(&self, timeout: Duration) -> Result<()> {
        hgauto_core::poll_until_capped(
            &self.id,
            "SSM agent to come online",
            timeout,
            self.opts.poll_first,
            Duration::from_secs(5),
            || async { Ok(agent_online(&self.ssm, &self.id).await?.then_some(())) },
        )
        .await
    }
}

impl SsmMachine {
    async fn finish(
        &self,
        command_id: &str,
        inv: &GetCommandInvocationOutput,
        term: Terminal,
        started: std::time::Instant,
        sink: LineSink<'_>,
    ) -> Result<Output> {
        if !matches!(term, Terminal::Exited(_)) {
            self.discard_output(command_id).await;
        }
        let code = match term {
            Terminal::Exited(code) => code,
            Terminal::DeliveryTimedOut => {
                return Err(Error::Connection {
                    machine: self.id.clone(),
                    may_have_run: false,
                    source: format!(
                        "the SSM agent did not pick up command {command_id} within {:?}",
                        self.opts.delivery_timeout
                    )
                    .into(),
                })
            }
            Terminal::ExecutionTimedOut => {
                return Err(Error::Timeout {
                    machine: self.id.clone(),
                    what: format!("SSM command {command_id} (SSM's execution timeout)"),
                    after: started.elapsed(),
                })
            }
            Terminal::Cancelled => {
                return Err(Error::Backend {
                    backend: "ssm".into(),
                    message: format!("command {command_id} on {} was cancelled", self.id),
                    retryable: false,
                    source: None,
                })
            }
            Terminal::NotRun(details) => {
                return Err(Error::Connection {
                    machine: self.id.clone(),
                    may_have_run: false,
                    source: format!("SSM could not run command {command_id}: {details}").into(),
                })
            }
        };
        let (stdout, stderr, truncated) = self.collect_output(command_id, inv).await?;
        if truncated {
            tracing::warn!(machine = %self.id, command = command_id, "SSM truncated the output; configure SsmOptions::bucket for all of it");
        }
        emit_lines(sink, Stream::Stdout, &stdout);
        emit_lines(sink, Stream::Stderr, &stderr);
        Ok(Output {
            status: ExitStatus::Code(code),
            stdout,
            stderr,
            duration: started.elapsed(),
            truncated,
        })
    }
}

fn file_mode(path: &Path) -> Result<u32> {
    use std::os::unix::fs::PermissionsExt;
    Ok(std::fs::metadata(path)
        .map_err(|e| Error::io("stat", path, "localhost", e))?
        .permissions()
        .mode()
        & hgauto_core::fsutil::MODE_MASK)
}

/// Streams `body` into a temp file next to `local`, checks its sha256 against `sha` (when
/// known), sets `mode` and renames it into place.
async fn download_to(
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
        std::fs::Permissions::from_mode(mode & hgauto_core::fsutil::MODE_MASK),
    )
    .map_err(|e| Error::io("chmod", tmp.path(), "localhost", e))?;
    tmp.persist(local)
        .map_err(|e| Error::io("rename into", local, "localhost", e.error))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emit_lines_splits_like_the_other_backends() {
        let got = std::sync::Mutex::new(Vec::new());
        let sink = |s: Stream, l: &[u8]| got.lock().unwrap().push((s, l.to_vec()));
        emit_lines(&sink, Stream::Stdout, b"a\n\nb");
        emit_lines(&sink, Stream::Stderr, b"c\n");
        emit_lines(&sink, Stream::Stderr, b"");
        let got = got.into_inner().unwrap();
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

    fn inv(
        status: CommandInvocationStatus,
        details: &str,
        code: i32,
    ) -> GetCommandInvocationOutput {
        GetCommandInvocationOutput::builder()
            .status(status)
            .status_details(details)
            .response_code(code)
            .build()
    }

    #[test]
    fn classify_maps_every_terminal_status() {
        use CommandInvocationStatus as S;
        assert_eq!(classify(&inv(S::Pending, "Pending", -1)), None);
        assert_eq!(classify(&inv(S::InProgress, "InProgress", -1)), None);
        assert_eq!(classify(&inv(S::Delayed, "Delayed", -1)), None);
        assert_eq!(
            classify(&inv(S::Success, "Success", 0)),
            Some(Terminal::Exited(0))
        );
        assert_eq!(
            classify(&inv(S::Failed, "Failed", 42)),
            Some(Terminal::Exited(42))
        );
        assert_eq!(
            classify(&inv(S::Failed, "Undeliverable", -1)),
            Some(Terminal::NotRun("Undeliverable".into()))
        );
        assert_eq!(
            classify(&inv(S::TimedOut, "DeliveryTimedOut", -1)),
            Some(Terminal::DeliveryTimedOut)
        );
        assert_eq!(
            classify(&inv(S::TimedOut, "ExecutionTimedOut", -1)),
            Some(Terminal::ExecutionTimedOut)
        );
        assert_eq!(
            classify(&inv(S::Cancelled, "Cancelled", -1)),
            Some(Terminal::Cancelled)
        );
    }
}
