//! One command through Run Command: send it, wait for a terminal status with backoff,
//! stop it (kill its process group, then cancel), classify how it ended, and read its
//! output (from the invocation, or all of it from the bucket).

use std::time::Duration;

use aws_sdk_ssm::operation::get_command_invocation::GetCommandInvocationOutput;
use aws_sdk_ssm::types::CommandInvocationStatus;
use hgauto_core::{Command, Error, ExitStatus, LineSink, Output, Platform, Result, Stream};
use tokio::time::Instant;

use super::leftovers::{Leftovers, Started};
use super::options::{SCRIPT_LIMIT, SSM_OUTPUT_LIMIT};
use super::{emit_lines, script, SsmMachine};
use crate::error::sdk_error;

/// How a command invocation ended, as far as SSM says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Terminal {
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
pub(crate) fn classify(inv: &GetCommandInvocationOutput) -> Option<Terminal> {
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
pub(super) enum Waited {
    Done(Box<GetCommandInvocationOutput>, Terminal),
    /// Our deadline passed; the last status seen (if any).
    Deadline(Option<CommandInvocationStatus>),
}

impl SsmMachine {
    pub(super) fn document(&self) -> &'static str {
        match self.platform {
            Platform::Linux => "AWS-RunShellScript",
            Platform::Windows => "AWS-RunPowerShellScript",
        }
    }

    /// Sends `script`; returns the command id.
    pub(super) async fn send(&self, script: String, timeout: Duration) -> Result<String> {
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
    pub(super) async fn wait(&self, command_id: &str, deadline: Instant) -> Result<Waited> {
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
    pub(super) async fn stop(&self, command_id: Option<&str>, token: &str) {
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

    pub(super) fn output_prefix(&self, command_id: &str) -> String {
        format!(
            "{}/{command_id}/{}/",
            self.opts.key_prefix.trim_end_matches('/'),
            self.id
        )
    }

    /// Deletes a command's output objects (for commands whose output nobody reads).
    pub(super) async fn discard_output(&self, command_id: &str) {
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
    pub(super) async fn collect_output(
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

    /// Runs `cmd`, recording in `left` what it starts (staged stdin, the command) until it
    /// has cleaned that up itself. Transfers pass their own record, so that an abandoned
    /// transfer's object is deleted only after its helper command has stopped.
    pub(super) async fn exec_recorded(
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

    pub(super) async fn finish(
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
        emit_lines(&mut *sink, Stream::Stdout, &stdout);
        emit_lines(&mut *sink, Stream::Stderr, &stderr);
        Ok(Output {
            status: ExitStatus::Code(code),
            stdout,
            stderr,
            duration: started.elapsed(),
            truncated,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
