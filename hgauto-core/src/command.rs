//! What to run on a machine ([`Command`]) and what came back ([`Output`]).

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::exit_status::ExitStatus;

/// The operating system family of a machine. It decides how commands are rendered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Platform {
    /// Linux (or any POSIX system): commands go through `sh`.
    Linux,
    /// Windows: commands go through PowerShell `-EncodedCommand`.
    Windows,
}

/// `linux` or `windows` (any case); anything else is `InvalidInput` naming it.
impl std::str::FromStr for Platform {
    type Err = crate::error::Error;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let choices = [("linux", Platform::Linux), ("windows", Platform::Windows)];
        crate::suggest::one_of("platform", &s.to_ascii_lowercase(), &choices)
    }
}

impl Platform {
    /// `linux` or `windows`: the name [`FromStr`](std::str::FromStr) reads back.
    pub fn name(self) -> &'static str {
        match self {
            Platform::Linux => "linux",
            Platform::Windows => "windows",
        }
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What a [`Command`] executes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Program {
    /// A program looked up on the machine's `PATH`, with arguments passed verbatim.
    Exec(OsString),
    /// A script in the target's own shell language (`sh` or PowerShell), passed verbatim.
    /// This is the only way to write pipelines or redirections; nothing in it is escaped.
    Script(String),
}

/// A command to run on a [`RemoteMachine`](crate::RemoteMachine), built like
/// [`std::process::Command`].
///
/// Arguments are data, never shell code: every backend quotes them for its shell, so
/// `Command::new("echo").arg("$(rm -rf ~)")` prints that text.
///
/// ```
/// use std::time::Duration;
/// use hgauto_core::Command;
/// let cmd = Command::new("make")
///     .arg("test")
///     .env("CFLAGS", "-O2")
///     .current_dir("src")
///     .timeout(Duration::from_secs(600));
/// assert_eq!(cmd.display(), "make test");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    program: Program,
    args: Vec<OsString>,
    env: Vec<(String, OsString)>,
    cwd: Option<PathBuf>,
    stdin: Option<Vec<u8>>,
    timeout: Option<Duration>,
    idempotent: bool,
    capture_limit: Option<usize>,
}

impl Command {
    /// A command running `program` with no arguments.
    pub fn new(program: impl AsRef<OsStr>) -> Self {
        Self::with_program(Program::Exec(program.as_ref().to_owned()))
    }

    /// A script in the target shell's language (POSIX `sh` on Linux, PowerShell on Windows).
    pub fn script(script: impl Into<String>) -> Self {
        Self::with_program(Program::Script(script.into()))
    }

    fn with_program(program: Program) -> Self {
        Command {
            program,
            args: Vec::new(),
            env: Vec::new(),
            cwd: None,
            stdin: None,
            timeout: None,
            idempotent: false,
            capture_limit: None,
        }
    }

    /// Appends one argument.
    pub fn arg(mut self, arg: impl AsRef<OsStr>) -> Self {
        self.args.push(arg.as_ref().to_owned());
        self
    }

    /// Appends several arguments.
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.args
            .extend(args.into_iter().map(|a| a.as_ref().to_owned()));
        self
    }

    /// Sets an environment variable for the command (later values win).
    pub fn env(mut self, key: impl Into<String>, value: impl AsRef<OsStr>) -> Self {
        let key = key.into();
        self.env.retain(|(k, _)| *k != key);
        self.env.push((key, value.as_ref().to_owned()));
        self
    }

    /// Sets the working directory; a relative path is relative to the machine's home.
    pub fn current_dir(mut self, dir: impl AsRef<Path>) -> Self {
        self.cwd = Some(dir.as_ref().to_owned());
        self
    }

    /// Bytes fed to the command's standard input (closed after them). Without this,
    /// stdin is empty.
    pub fn stdin(mut self, data: impl Into<Vec<u8>>) -> Self {
        self.stdin = Some(data.into());
        self
    }

    /// Kills the command's whole process tree when it runs longer than this.
    pub fn timeout(mut self, limit: Duration) -> Self {
        self.timeout = Some(limit);
        self
    }

    /// Keeps only the last `bytes` of each stream in the [`Output`] (marked
    /// [`truncated`](Output::truncated)); every line still reaches a streaming sink. For
    /// long, chatty commands whose output is logged as it comes (builds), so memory stays
    /// bounded however much they print.
    pub fn capture_limit(mut self, bytes: usize) -> Self {
        self.capture_limit = Some(bytes);
        self
    }

    /// The capture limit, if one was set.
    pub fn get_capture_limit(&self) -> Option<usize> {
        self.capture_limit
    }

    /// Marks the command as safe to run twice, so a backend may retry it after a dropped
    /// connection. Without this, a connection lost mid-command is reported as
    /// "may have run" and not retried.
    pub fn idempotent(mut self, yes: bool) -> Self {
        self.idempotent = yes;
        self
    }

    /// What runs.
    pub fn get_program(&self) -> &Program {
        &self.program
    }
    /// The arguments, in order.
    pub fn get_args(&self) -> &[OsString] {
        &self.args
    }
    /// The environment variables set for this command.
    pub fn get_env(&self) -> &[(String, OsString)] {
        &self.env
    }
    /// The working directory, if set.
    pub fn get_cwd(&self) -> Option<&Path> {
        self.cwd.as_deref()
    }
    /// The standard input bytes, if any.
    pub fn get_stdin(&self) -> Option<&[u8]> {
        self.stdin.as_deref()
    }
    /// The timeout, if any.
    pub fn get_timeout(&self) -> Option<Duration> {
        self.timeout
    }
    /// Whether the command may be retried after a dropped connection.
    pub fn is_idempotent(&self) -> bool {
        self.idempotent
    }

    /// A human-readable command line for logs and errors (not for execution).
    pub fn display(&self) -> String {
        let mut s = match &self.program {
            Program::Exec(p) => p.to_string_lossy().into_owned(),
            Program::Script(s) => s.lines().next().unwrap_or("").to_owned(),
        };
        for a in &self.args {
            s.push(' ');
            s.push_str(&a.to_string_lossy());
        }
        if s.len() > 200 {
            s.truncate(crate::text::clip(&s, 200).len());
            s.push('…');
        }
        s
    }
}

/// Which output stream a line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Stream {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

/// Receives output lines as they arrive, without their trailing newline. Lines are raw
/// bytes: remote programs owe us no UTF-8.
///
/// A sink is called once per line, never twice at once, so it may keep state of its own
/// (`let mut lines = Vec::new(); m.exec_streaming(&cmd, &mut |s, l| lines.push(..))`)
/// without a lock.
pub type LineSink<'a> = &'a mut (dyn FnMut(Stream, &[u8]) + Send);

/// The result of a finished command. A non-zero exit is data, not an error; call
/// [`Output::check`] to turn it into one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    /// How the command ended.
    pub status: ExitStatus,
    /// Everything it wrote to stdout.
    pub stdout: Vec<u8>,
    /// Everything it wrote to stderr.
    pub stderr: Vec<u8>,
    /// Wall time from start to exit.
    pub duration: Duration,
    /// The transport kept only part of the output (SSM without an output bucket keeps
    /// 24,000 characters per stream); `stdout`/`stderr` hold what arrived.
    pub truncated: bool,
}

impl Output {
    /// Stdout as (lossy) UTF-8.
    pub fn stdout_str(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }
    /// Stderr as (lossy) UTF-8.
    pub fn stderr_str(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }

    /// `Ok(self)` when the command succeeded, otherwise [`Error::CommandFailed`] naming the
    /// machine, the command and the last lines of stderr.
    pub fn check(self, machine: &str, command: &Command) -> Result<Self> {
        if self.status.success() {
            return Ok(self);
        }
        Err(Error::CommandFailed {
            machine: machine.to_owned(),
            command: command.display(),
            status: self.status,
            stderr_tail: tail_lines(&self.stderr, 10),
        })
    }
}

/// The last `n` lines of `bytes`, lossily decoded.
fn tail_lines(bytes: &[u8], n: usize) -> String {
    let text = String::from_utf8_lossy(bytes);
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_later_value_wins() {
        let c = Command::new("x").env("A", "1").env("B", "2").env("A", "3");
        assert_eq!(
            c.get_env(),
            &[("B".into(), "2".into()), ("A".into(), "3".into())]
        );
    }

    #[test]
    fn check_reports_failure_with_tail() {
        let cmd = Command::new("false");
        let out = Output {
            status: ExitStatus::Code(1),
            stdout: vec![],
            stderr: b"a\nb\n".to_vec(),
            duration: Duration::ZERO,
            truncated: false,
        };
        let err = out.check("m1", &cmd).unwrap_err();
        assert!(
            matches!(err, Error::CommandFailed { ref stderr_tail, .. } if stderr_tail == "a\nb")
        );
    }

    #[test]
    fn display_is_truncated_on_char_boundary() {
        let c = Command::new("é".repeat(300));
        assert!(c.display().chars().count() <= 201);
    }
}
