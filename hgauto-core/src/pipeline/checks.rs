//! `should_run` checks: a function, a command on this host, or "already published".

use crate::error::{Error, Result};

use super::prepare::PreparedCheck;
use super::step::{ShouldRun, StepContext};

/// Runs a task's `should_run` check: `Some(reason)` means already done.
/// `should_run` is the step's own check (for function checks), `check` the task's filled-in
/// one.
pub(crate) async fn run_check(
    should_run: &ShouldRun,
    check: PreparedCheck,
    ctx: StepContext,
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
            let out = tokio::process::Command::new(program)
                .args(args)
                .stdin(std::process::Stdio::null())
                .kill_on_drop(true)
                .output()
                .await
                .map_err(|e| Error::invalid(&what, format!("cannot run {program:?}: {e}")))?;
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
                publisher.destination(),
                names.join(", ")
            )))
        }
    }
}
