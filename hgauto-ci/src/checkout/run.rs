//! Running git and hg for [`checkout`](super::checkout): in their own process group,
//! under a deadline. (`checkout` scrubs the URL's secrets from every error it returns.)

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Stdio;
use std::sync::mpsc;
use std::time::Duration;

use hgauto_core::error::{Error, Result};

/// What every VCS process of one checkout shares.
#[derive(Debug, Clone)]
pub(crate) struct Ctx {
    /// The longest one process may run.
    pub timeout: Duration,
    /// The URL as it may be shown.
    pub shown: String,
    /// A git lock younger than this is never removed.
    pub stale_lock_age: Duration,
}

/// Runs a VCS command and returns its trimmed stdout; `Err` carries its stderr.
/// Past `cx.timeout` the process group is killed and the error is [`Error::Timeout`].
pub(crate) fn run(cx: &Ctx, program: &str, args: &[&str], cwd: Option<&Path>) -> Result<String> {
    run_with_env(cx, program, args, cwd, &[])
}

/// [`run`] with extra environment variables (how credentials reach git: never argv).
pub(crate) fn run_with_env(
    cx: &Ctx,
    program: &str,
    args: &[&str],
    cwd: Option<&Path>,
    env: &[(&str, String)],
) -> Result<String> {
    let mut cmd = std::process::Command::new(program);
    cmd.envs(env.iter().map(|(k, v)| (k, v)));
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .env("HGPLAIN", "1")
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("LC_ALL", "C")
        .process_group(0);
    if let Some(d) = cwd {
        cmd.current_dir(d);
    }
    let shown = || format!("{program} {}", args.join(" "));
    let mut child = cmd.spawn().map_err(|source| Error::Spawn {
        machine: "localhost".into(),
        program: program.into(),
        source,
    })?;
    let pid = child.id() as i32;
    let drain = |r: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut r) = r {
                let _ = r.read_to_end(&mut buf);
            }
            buf
        })
    };
    let stdout = drain(child.stdout.take().map(|s| Box::new(s) as _));
    let stderr = drain(child.stderr.take().map(|s| Box::new(s) as _));
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait());
    });
    let status = match rx.recv_timeout(cx.timeout) {
        Ok(status) => status.map_err(|e| Error::io("wait for", program, "localhost", e))?,
        Err(_) => {
            // SAFETY: signalling the process group this call created.
            unsafe { libc::kill(-pid, libc::SIGKILL) };
            let _ = rx.recv();
            return Err(Error::Timeout {
                machine: "localhost".into(),
                what: format!("`{}`", shown()),
                after: cx.timeout,
            });
        }
    };
    let out = stdout.join().unwrap_or_default();
    let err = stderr.join().unwrap_or_default();
    if status.success() {
        Ok(String::from_utf8_lossy(&out).trim().to_owned())
    } else {
        Err(Error::CommandFailed {
            machine: "localhost".into(),
            command: shown(),
            status: hgauto_core::ExitStatus::Code(status.code().unwrap_or(-1)),
            stderr_tail: String::from_utf8_lossy(&err).into_owned(),
        })
    }
}
