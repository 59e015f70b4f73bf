//! Installing requirements into a virtualenv with uv or pip, under a timeout and retries,
//! with credentials scrubbed from what the installer prints.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use super::interpreter::which;
use super::{Installer, VenvOptions, VenvReport};
use crate::progress::step;
use hgauto_core::error::{Error, Result};
use hgauto_core::redact::Secrets;

/// Installs the requirements; returns which installer ran.
pub(super) async fn install_requirements(
    report: &VenvReport,
    opts: &VenvOptions,
) -> Result<Option<String>> {
    if opts.requirements.is_empty() && opts.constraints.is_empty() {
        return Ok(None);
    }
    let uv = match &opts.installer {
        Installer::Uv(p) => Some(p.clone()),
        Installer::Auto => which("uv"),
        Installer::Pip => None,
    };
    let mut args: Vec<String> = Vec::new();
    for r in &opts.requirements {
        args.extend(["-r".into(), r.display().to_string()]);
    }
    for c in &opts.constraints {
        args.extend(["-c".into(), c.display().to_string()]);
    }
    for l in &opts.find_links {
        args.extend(["--find-links".into(), l.clone()]);
    }
    if let Some(i) = &opts.index_url {
        args.extend(["--index-url".into(), i.clone()]);
    }
    if opts.no_index {
        args.push("--no-index".into());
    }
    let (name, program, mut full): (&str, PathBuf, Vec<String>) = match &uv {
        Some(uv) => (
            "uv",
            uv.clone(),
            vec![
                "pip".into(),
                "install".into(),
                "--python".into(),
                report.python.display().to_string(),
            ],
        ),
        None => {
            let pip = report.path.join("bin/pip");
            if !pip.exists() {
                let py = report.python.clone();
                run_logged(
                    "pip",
                    &py,
                    &["-m".into(), "ensurepip".into(), "--default-pip".into()],
                    opts.timeout,
                    &Secrets::default(),
                )
                .await?;
            }
            (
                "pip",
                report.python.clone(),
                vec![
                    "-m".into(),
                    "pip".into(),
                    "install".into(),
                    "--disable-pip-version-check".into(),
                    "--quiet".into(),
                ],
            )
        }
    };
    full.extend(args);
    step(
        &opts.progress,
        &format!("installing requirements with {name}"),
    );
    let secrets = Secrets::of_urls(
        opts.index_url
            .iter()
            .chain(&opts.find_links)
            .map(String::as_str),
    );
    let mut attempt = 0;
    loop {
        match run_logged(name, &program, &full, opts.timeout, &secrets).await {
            Ok(()) => return Ok(Some(name.to_owned())),
            Err(e) if e.is_retryable() && attempt < opts.retry.max_retries => {
                let delay = opts.retry.delay(attempt, rand::random::<f64>());
                tracing::warn!(installer = name, retry = attempt + 1, error = %e, "install failed; retrying");
                tokio::time::sleep(delay).await;
                attempt += 1;
            }
            Err(e) => return Err(e),
        }
    }
}

/// Runs an installer under `timeout` (its process group is killed on expiry). Whatever it
/// prints, and its command line, reach logs and errors with `secrets` scrubbed.
async fn run_logged(
    name: &str,
    program: &Path,
    args: &[String],
    timeout: Duration,
    secrets: &Secrets,
) -> Result<()> {
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(args).stdin(Stdio::null()).env("PIP_NO_INPUT", "1");
    let shown = secrets
        .scrub(&format!("{} {}", program.display(), args.join(" ")))
        .into_owned();
    let out = hgauto_core::backend::process_group::output_in_group(
        cmd,
        &program.display().to_string(),
        timeout,
    )
    .await;
    match out {
        Ok(None) => Err(Error::Timeout {
            machine: "localhost".into(),
            what: shown,
            after: timeout,
        }),
        Err(e) => Err(e),
        Ok(Some(out)) if out.status.success() => {
            let said = String::from_utf8_lossy(&out.stderr);
            tracing::debug!(installer = name, "{}", secrets.scrub(&said));
            Ok(())
        }
        Ok(Some(out)) => {
            let stderr = secrets
                .scrub(&String::from_utf8_lossy(&out.stderr))
                .into_owned();
            let network = [
                "connection",
                "timed out",
                "temporary failure",
                "503",
                "502",
                "429",
            ]
            .iter()
            .any(|p| stderr.to_ascii_lowercase().contains(p));
            if network {
                Err(Error::Backend {
                    backend: name.to_owned(),
                    message: format!("`{shown}` failed (network): {}", stderr.trim()),
                    retryable: true,
                    source: None,
                })
            } else {
                Err(Error::CommandFailed {
                    machine: "localhost".into(),
                    command: shown,
                    status: hgauto_core::ExitStatus::Code(out.status.code().unwrap_or(-1)),
                    stderr_tail: stderr,
                })
            }
        }
    }
}
