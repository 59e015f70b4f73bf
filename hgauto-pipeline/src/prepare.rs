//! Every template of every selected task filled in before anything starts, so a bad
//! placeholder fails the run before a machine is provisioned.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use hgauto_core::command::{Command, Platform};
use hgauto_core::env::name_part;
use hgauto_core::error::{Error, Result};
use hgauto_core::publisher::Publisher;

use super::definition::Pipeline;
use super::plan::{fill, Task};
use super::results::Mode;
use super::step::{Body, ShouldRun, StepCommand};

/// The environment variable a command step may write `KEY=VALUE` lines to (a path on the
/// worker); they become the step's outputs.
pub const OUTPUT_ENV: &str = "HGAUTO_OUTPUT";

/// A task's filled-in command, ready to run on a worker.
#[derive(Debug, Clone)]
pub(crate) struct PreparedCommand {
    pub command: StepCommand,
    pub sync: Vec<(PathBuf, String)>,
    pub collect: Vec<String>,
    /// The stem of the file the command writes its outputs to, relative to its directory
    /// on the worker: unique to the run, and each attempt adds its number
    /// ([`Self::output_file`]), so no attempt reads what an earlier one left on a reused host.
    pub output_stem: String,
}

/// A task's filled-in skip check.
#[derive(Clone)]
pub(crate) enum PreparedCheck {
    None,
    Command(Vec<String>),
    Published(Arc<dyn Publisher>, Vec<String>),
    Function,
}

/// One task, filled in.
#[derive(Clone)]
pub(crate) struct Prepared {
    pub values: BTreeMap<String, String>,
    pub command: Option<PreparedCommand>,
    pub check: PreparedCheck,
}

/// Fills every task's templates from its cell, the inputs, `{step}` and `{task}`.
pub(crate) fn prepare(
    p: &Pipeline,
    tasks: &[Task],
    inputs: &BTreeMap<String, String>,
    mode: Mode,
) -> Result<Vec<Prepared>> {
    let run = hex::encode(rand::random::<[u8; 6]>());
    tasks
        .iter()
        .map(|t| {
            let step = &p.steps[t.step];
            let what = format!("pipeline {:?}, task {}", p.name, t.name);
            let mut values = inputs.clone();
            for (d, v) in t.cell.pairs() {
                values.insert(d.clone(), v.clone());
            }
            values.insert("step".into(), step.name.clone());
            values.insert("task".into(), t.name.clone());
            let fill_all = |xs: &[String]| -> Result<Vec<String>> {
                xs.iter().map(|x| fill(x, &values, &what)).collect()
            };
            let command = match &step.body {
                Body::Command {
                    command,
                    sync,
                    collect,
                } => Some(if let Some(bad) = bad_env_name(command) {
                    return Err(Error::invalid(
                        what,
                        format!("environment variable name {bad:?} must match [A-Za-z_][A-Za-z0-9_]*"),
                    ));
                } else if mode == Mode::Fake {
                    PreparedCommand {
                        command: StepCommand::argv(["true"]),
                        sync: Vec::new(),
                        collect: Vec::new(),
                        output_stem: format!(".hgauto-outputs-{}-{run}", t.name),
                    }
                } else {
                    let mut filled = command.clone();
                    filled.argv = fill_all(&command.argv)?;
                    filled.cwd = command
                        .cwd
                        .as_deref()
                        .map(|c| fill(c, &values, &what))
                        .transpose()?;
                    filled.env = command
                        .env
                        .iter()
                        .map(|(k, v)| Ok((k.clone(), fill(v, &values, &what)?)))
                        .collect::<Result<_>>()?;
                    PreparedCommand {
                        command: filled,
                        sync: sync
                            .iter()
                            .map(|s| {
                                Ok((
                                    PathBuf::from(fill(&s.local, &values, &what)?),
                                    fill(&s.remote, &values, &what)?,
                                ))
                            })
                            .collect::<Result<_>>()?,
                        collect: fill_all(collect)?,
                        output_stem: format!(".hgauto-outputs-{}-{run}", t.name),
                    }
                }),
                Body::Function(_) => None,
            };
            let check = match (&step.should_run, mode) {
                (_, Mode::Fake) | (ShouldRun::Always, _) => PreparedCheck::None,
                (ShouldRun::Command(argv), _) => PreparedCheck::Command(fill_all(argv)?),
                (
                    ShouldRun::Published {
                        publisher,
                        artifacts,
                    },
                    _,
                ) => PreparedCheck::Published(publisher.clone(), fill_all(artifacts)?),
                (ShouldRun::Function(_), _) => PreparedCheck::Function,
            };
            Ok(Prepared {
                values,
                command,
                check,
            })
        })
        .collect()
}

/// The first name in the command's environment that no shell can set.
fn bad_env_name(c: &StepCommand) -> Option<&str> {
    c.env
        .keys()
        .map(String::as_str)
        .find(|k| hgauto_core::backend::render::check_env_key(k).is_err())
}

impl PreparedCommand {
    /// The command to run: the step's own, with the task's environment, directory and
    /// timeout. Matrix values, inputs and dependencies' outputs (by step name) arrive as
    /// variables.
    pub(super) fn render(
        &self,
        platform: Platform,
        values: &BTreeMap<String, String>,
        cell_dims: &[(String, String)],
        dep_outputs: &[(String, super::step::Outputs)],
        timeout: std::time::Duration,
        attempt: u32,
    ) -> Command {
        let c = &self.command;
        let mut cmd = match &c.script {
            Some(script) => Command::script(script.clone()),
            None => {
                let program = c.argv.first().cloned().unwrap_or_else(|| match platform {
                    Platform::Windows => "cmd".into(),
                    Platform::Linux => "true".into(),
                });
                Command::new(program).args(c.argv.iter().skip(1))
            }
        };
        for (d, v) in cell_dims {
            cmd = cmd.env(format!("HGAUTO_MATRIX_{}", name_part(d)), v);
        }
        for (k, v) in values {
            if !cell_dims.iter().any(|(d, _)| d == k) && k != "step" && k != "task" {
                cmd = cmd.env(format!("HGAUTO_INPUT_{}", name_part(k)), v);
            }
        }
        for (step, outs) in dep_outputs {
            for (k, v) in outs {
                cmd = cmd.env(
                    format!("HGAUTO_OUT_{}_{}", name_part(step), name_part(k)),
                    v,
                );
            }
        }
        cmd = cmd
            .env(
                "HGAUTO_STEP",
                values.get("step").map(String::as_str).unwrap_or(""),
            )
            .env(
                "HGAUTO_TASK",
                values.get("task").map(String::as_str).unwrap_or(""),
            )
            .env(OUTPUT_ENV, self.output_file(attempt));
        for (k, v) in &c.env {
            cmd = cmd.env(k.clone(), v);
        }
        if let Some(cwd) = &c.cwd {
            cmd = cmd.current_dir(cwd);
        }
        cmd.timeout(timeout)
    }
}

impl PreparedCommand {
    /// The file attempt `attempt` writes its outputs to.
    pub(super) fn output_file(&self, attempt: u32) -> String {
        format!("{}-{attempt}", self.output_stem)
    }

    /// A path on the worker relative to its home: `rel` inside the command's directory.
    /// An absolute `rel` (`/x`, `C:\x`, `\\host\x`) stays as it is.
    pub(super) fn in_cwd(&self, rel: &str) -> String {
        let b = rel.as_bytes();
        let absolute = rel.starts_with(['/', '\\'])
            || (b.len() > 2
                && b[0].is_ascii_alphabetic()
                && b[1] == b':'
                && b"/\\".contains(&b[2]));
        match &self.command.cwd {
            Some(cwd) if !cwd.is_empty() && !absolute => {
                format!("{}/{rel}", cwd.trim_end_matches(['/', '\\']))
            }
            _ => rel.to_owned(),
        }
    }
}
