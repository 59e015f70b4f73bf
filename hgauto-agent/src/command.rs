//! [`CommandBuild`]: a build that runs a command template on a machine from a
//! [`ResourceProvider`], with the job's fields as environment variables.
//!
//! The machine is provisioned at the first job, under a [`TemporaryMachines`] guard (so a
//! stop, an interrupt or the end of the agent terminates it), and kept for the following
//! jobs. Before each job its deadline is moved on by the spec's lifetime
//! ([`ResourceProvider::extend_deadline`]), so a sweep never takes a live agent's machine.
//!
//! The template is a program and arguments; `{id}`, `{check}` and `{revision}` in an
//! argument are replaced by the job's values, as data: nothing goes through a shell. The
//! replacement is one pass (a value holding `{revision}` is not expanded again), and a
//! value that begins with `-` is refused where it would begin an argument, since there it
//! would be read as an option (`git fetch origin {revision}` with `--upload-pack=...`). The
//! environment carries `HGAUTO_JOB_ID`, `HGAUTO_JOB_CHECK`, `HGAUTO_JOB_REVISION`,
//! `HGAUTO_JOB_ATTEMPT`, `HGAUTO_JOB_PRIORITY` and each attribute as
//! `HGAUTO_JOB_ATTR_<NAME>` (upper case, other characters as `_`). Output lines go to the
//! job's log as they come. Exit 0 is success; anything else a failure naming the exit and
//! the last line of stderr.

use std::io::Write;
use std::sync::Arc;

use futures::future::BoxFuture;

use super::{AgentContext, Build};
use hgauto_core::cleanup::TemporaryMachines;
use hgauto_core::command::{Command, Stream};
use hgauto_core::error::{Error, Result};
use hgauto_core::job::{Job, JobOutcome};
use hgauto_core::provider::ResourceProvider;
use hgauto_core::spec::MachineSpec;

/// A build running a command on a kept machine (see the [module docs](self)).
#[derive(Clone)]
pub struct CommandBuild {
    inner: Arc<Inner>,
}

struct Inner {
    provider: Arc<dyn ResourceProvider>,
    spec: MachineSpec,
    program: String,
    args: Vec<String>,
    machine: tokio::sync::Mutex<Option<TemporaryMachines>>,
}

impl std::fmt::Debug for CommandBuild {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CommandBuild")
            .field("provider", &self.inner.provider.name())
            .field("program", &self.inner.program)
            .field("args", &self.inner.args)
            .finish_non_exhaustive()
    }
}

/// What a build's output keeps in memory per stream: every line goes to the job's log as
/// it comes, so only a tail is needed (for the failure summary).
const BUILD_CAPTURE: usize = 64 * 1024;

/// `template` with each `{name}` of `fields` replaced by its value, in one pass: a value is
/// never scanned again. A value starting with `-` at the start of the argument is refused.
fn fill_template(template: &str, fields: &[(&str, &str)]) -> Result<String> {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open..];
        let hit = fields.iter().find(|(name, _)| {
            after[1..]
                .strip_prefix(name)
                .is_some_and(|r| r.starts_with('}'))
        });
        match hit {
            Some((name, value)) => {
                if out.is_empty() && value.starts_with('-') {
                    return Err(Error::invalid(
                        format!("job field {name} {value:?}"),
                        format!("begins with '-', so in the argument {template:?} it would be read as an option"),
                    ));
                }
                out.push_str(value);
                rest = &after[name.len() + 2..];
            }
            None => {
                out.push('{');
                rest = &after[1..];
            }
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// `HGAUTO_JOB_ATTR_` plus `key` in upper case, other characters as `_`.
fn attr_var(key: &str) -> String {
    format!("HGAUTO_JOB_ATTR_{}", hgauto_core::env::name_part(key))
}

impl CommandBuild {
    /// Runs `program` with `args` on a machine of `spec` from `provider`.
    pub fn new(
        provider: Arc<dyn ResourceProvider>,
        spec: MachineSpec,
        program: impl Into<String>,
        args: impl IntoIterator<Item = impl Into<String>>,
    ) -> Result<Self> {
        let program = program.into();
        if program.is_empty() {
            return Err(Error::invalid("command build", "needs a program"));
        }
        Ok(CommandBuild {
            inner: Arc::new(Inner {
                provider,
                spec,
                program,
                args: args.into_iter().map(Into::into).collect(),
                machine: tokio::sync::Mutex::new(None),
            }),
        })
    }

    /// The command for `job`; [`Error::InvalidInput`] when a job field would become an
    /// option (see the [module docs](self)).
    pub fn command_for(&self, job: &Job) -> Result<Command> {
        let revision = job.revision.as_deref().unwrap_or("");
        let fields = [
            ("id", job.id.as_str()),
            ("check", job.check.as_str()),
            ("revision", revision),
        ];
        let args = self
            .inner
            .args
            .iter()
            .map(|a| fill_template(a, &fields))
            .collect::<Result<Vec<_>>>()?;
        let mut cmd = Command::new(&self.inner.program)
            .args(args)
            .env("HGAUTO_JOB_ID", &job.id)
            .env("HGAUTO_JOB_CHECK", &job.check)
            .env("HGAUTO_JOB_REVISION", revision)
            .env("HGAUTO_JOB_ATTEMPT", job.attempt.to_string())
            .env("HGAUTO_JOB_PRIORITY", job.priority.to_string())
            .capture_limit(BUILD_CAPTURE);
        for (k, v) in &job.attributes {
            cmd = cmd.env(attr_var(k), v);
        }
        Ok(cmd)
    }

    /// The ids of the machine kept for builds, if one is up.
    pub async fn machine_ids(&self) -> Vec<String> {
        self.inner
            .machine
            .lock()
            .await
            .as_ref()
            .map(TemporaryMachines::ids)
            .unwrap_or_default()
    }

    /// Terminates the kept machine now (the agent is done with it).
    pub async fn shutdown(&self) -> Result<()> {
        match self.inner.machine.lock().await.take() {
            Some(m) => m.terminate().await,
            None => Ok(()),
        }
    }

    async fn run(self, job: Job, ctx: AgentContext) -> Result<JobOutcome> {
        let inner = &self.inner;
        let mut held = inner.machine.lock().await;
        if held.is_none() {
            *held =
                Some(TemporaryMachines::provision(inner.provider.clone(), &inner.spec, 1).await?);
        }
        let guard = held.as_ref().expect("provisioned above");
        let until = inner.spec.deadline()?;
        if let Err(e) = inner.provider.extend_deadline(&guard.ids(), until).await {
            tracing::warn!(provider = inner.provider.name(), error = %e, "could not move the machine's deadline on");
        }
        let machine = guard.machines()[0].clone();
        drop(held);
        let cmd = self.command_for(&job)?;
        let mut log = super::open_job_log(&ctx.log).ok();
        let mut last_err = String::new();
        let mut sink = |stream: Stream, line: &[u8]| {
            let text = String::from_utf8_lossy(line);
            let text = text.trim_end_matches(['\n', '\r']);
            if let Some(f) = log.as_mut() {
                let tag = if stream == Stream::Stderr {
                    "err"
                } else {
                    "out"
                };
                let _ = writeln!(f, "{tag} {text}");
            }
            if stream == Stream::Stderr && !text.trim().is_empty() {
                // The summary's line, bounded like the rest of what is kept.
                last_err.clear();
                last_err.push_str(hgauto_core::text::clip(text, 1024));
            }
        };
        let out = machine.exec_streaming(&cmd, &mut sink).await?;
        let code = out.status.code();
        if out.status.success() {
            return Ok(JobOutcome::Succeeded {
                summary: format!("{} exited 0", inner.program),
            });
        }
        let last = last_err;
        let how = code.map_or_else(|| "was killed".to_owned(), |c| format!("exited {c}"));
        Ok(JobOutcome::Failed {
            summary: if last.is_empty() {
                format!("{} {how}", inner.program)
            } else {
                format!("{} {how}: {last}", inner.program)
            },
            retryable: false,
        })
    }
}

impl Build for CommandBuild {
    fn build(&self, job: Job, ctx: AgentContext) -> BoxFuture<'static, Result<JobOutcome>> {
        Box::pin(self.clone().run(job, ctx))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_substituted_once_and_never_become_options() {
        let f = [("id", "x{revision}"), ("check", "c"), ("revision", "abc")];
        assert_eq!(fill_template("{id}-{check}", &f).unwrap(), "x{revision}-c");
        assert_eq!(fill_template("--rev={revision}", &f).unwrap(), "--rev=abc");
        assert_eq!(fill_template("{nope}{", &f).unwrap(), "{nope}{");
        let bad = [
            ("id", "1"),
            ("check", "c"),
            ("revision", "--upload-pack=touch /tmp/x"),
        ];
        let e = fill_template("{revision}", &bad).unwrap_err().to_string();
        assert!(e.contains("revision") && e.contains("option"), "{e}");
        // Inside an argument it is data.
        assert_eq!(
            fill_template("refs/{revision}", &bad).unwrap(),
            "refs/--upload-pack=touch /tmp/x"
        );
    }

    #[test]
    fn attribute_names_become_environment_names() {
        assert_eq!(attr_var("pr-number"), "HGAUTO_JOB_ATTR_PR_NUMBER");
        assert_eq!(attr_var("héllo"), "HGAUTO_JOB_ATTR_H_LLO");
    }
}
