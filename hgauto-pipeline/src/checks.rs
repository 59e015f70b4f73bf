//! `should_run` checks: a function, a command on this host, or "already published".

use std::time::Duration;

use hgauto_core::error::{Error, Result};

use super::prepare::PreparedCheck;
use super::step::{ShouldRun, StepContext};

/// How long a `should_run` check may take unless the runner says otherwise.
pub(crate) const DEFAULT_CHECK_TIMEOUT: Duration = Duration::from_secs(600);

/// Runs a task's `should_run` check: `Some(reason)` means already done.
/// `should_run` is the step's own check (for function checks), `check` the task's filled-in
/// one. A check past `timeout` is an error (a command's whole process group is killed).
pub(crate) async fn run_check(
    should_run: &ShouldRun,
    check: PreparedCheck,
    ctx: StepContext,
    timeout: Duration,
) -> Result<Option<String>> {
    let what = format!("should_run check of {}", ctx.task);
    match tokio::time::timeout(timeout, check_once(should_run, check, ctx, timeout)).await {
        Ok(r) => r,
        Err(_) => Err(Error::invalid(
            what,
            format!("did not end within {timeout:?}"),
        )),
    }
}

async fn check_once(
    should_run: &ShouldRun,
    check: PreparedCheck,
    ctx: StepContext,
    timeout: Duration,
) -> Result<Option<String>> {
    match check {
        PreparedCheck::None => Ok(None),
        PreparedCheck::Function => match should_run {
            ShouldRun::Function(f) => f(ctx).await,
            _ => Ok(None),
        },
        PreparedCheck::Command(argv) => {
            let what = format!("should_run check of {}", ctx.task);
            let Some((program, args)) = argv.split_first() else {
                return Err(Error::invalid(what, "is an empty command"));
            };
            let mut cmd = tokio::process::Command::new(program);
            cmd.args(args).stdin(std::process::Stdio::null());
            let out = hgauto_core::backend::process_group::output_in_group(cmd, program, timeout)
                .await
                .map_err(|e| Error::invalid(&what, format!("cannot run {program:?}: {e}")))?
                .ok_or_else(|| {
                    Error::invalid(&what, format!("{program:?} did not end within {timeout:?}"))
                })?;
            match out.status.code() {
                Some(0) => Ok(None),
                Some(1) => {
                    let text = String::from_utf8_lossy(&out.stdout);
                    let first = text.lines().next().unwrap_or("").trim();
                    Ok(Some(if first.is_empty() {
                        "already done".to_owned()
                    } else {
                        first.to_owned()
                    }))
                }
                _ => Err(Error::invalid(
                    what,
                    format!("{program:?} ended with {}", out.status),
                )),
            }
        }
        PreparedCheck::Published(publisher, names) => {
            for name in &names {
                if !publisher.name_taken(name).await? {
                    return Ok(None);
                }
            }
            Ok(Some(format!(
                "already published to {}: {}",
                publisher.name(),
                names.join(", ")
            )))
        }
    }
}
