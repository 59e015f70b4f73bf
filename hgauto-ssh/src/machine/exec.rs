//! Running one command over one channel, on the calling (blocking) thread.
//!
//! The session is switched to non-blocking mode while the command runs, so stdin, stdout
//! and stderr are serviced together: a command that fills stderr while we wait on stdout
//! cannot deadlock the shared channel window.
//!
//! POSIX scripts never meet the login shell's own syntax: they reach `/bin/sh` whatever the
//! login shell is. Until the host's login shell is known, [`login_shell_command`] wraps
//! them in a form every common shell (fish and tcsh included) passes on unchanged; the
//! marker then says which family the login shell is ([`LoginShell`]), and later commands
//! take the cheapest exact form: as they are when the login shell is `/bin/sh` itself,
//! `exec /bin/sh -c '...'` for another POSIX shell, the encoded wrapper for anything else.
//!
//! The script's first act is to print that marker (a fresh nonce, its pid, the family) to
//! stderr. The pid is the process-group leader's (sshd runs each command in its own
//! session), which a timeout kills; a run whose marker never came did not run our script at
//! all, which is an error, never a success. What the login shell printed before the marker
//! (a profile's noise) is not the command's output: it is logged at debug level, and quoted
//! when the script never started.

use std::io::{ErrorKind, Read, Write};
use std::time::{Duration, Instant};

use hgauto_core::backend::render::login_shell_command;
use hgauto_core::ExitStatus;

pub(crate) use super::marker::LoginShell;
use super::marker::StderrFilter;
use crate::conn::{codes, Conn, TransportError};

/// What a channel runs.
pub(crate) enum Script<'a> {
    /// A POSIX `sh` script: wrapped for the login shell and marked with a pid marker.
    Posix(&'a str),
    /// A command line passed to the remote shell as it is (PowerShell on Windows hosts).
    Raw(&'a str),
}

/// Where a command's input comes from and where its output goes.
pub(crate) struct ExecIo<'a> {
    pub stdin: Option<&'a mut (dyn Read + Send)>,
    pub on_stdout: &'a mut (dyn FnMut(&[u8]) -> std::io::Result<()> + Send),
    pub on_stderr: &'a mut (dyn FnMut(&[u8]) + Send),
    pub deadline: Option<Instant>,
    /// True once nobody waits for the result any more (the caller's future was dropped,
    /// e.g. on Ctrl-C): the command is then killed like one that timed out.
    pub abandoned: &'a (dyn Fn() -> bool + Send + Sync),
}

/// How a run ended, when the transport held.
pub(crate) enum ExecEnd {
    Exited(ExitStatus),
    TimedOut,
}

/// How a run failed.
#[derive(Debug)]
pub(crate) enum ExecFailure {
    /// The connection broke. `sent` is true once the command may have started.
    Transport { sent: bool, error: TransportError },
    /// Something on our side failed (e.g. writing the local file); the connection is
    /// in an unknown state and must be dropped.
    Local(std::io::Error),
    /// The command line was refused before anything was sent (e.g. too long).
    Invalid(hgauto_core::Error),
    /// The remote login shell ended without running our script (its marker never came):
    /// how it ended, and the start of what it printed.
    NotStarted { status: ExitStatus, said: String },
}

fn ssh_failure(
    sent: bool,
    what: &str,
    e: impl std::error::Error + Send + Sync + 'static,
) -> ExecFailure {
    ExecFailure::Transport {
        sent,
        error: TransportError::new(what, e),
    }
}

fn would_block(e: &std::io::Error) -> bool {
    e.kind() == ErrorKind::WouldBlock
}

/// Runs `script` on a new channel of `conn`, whose login shell is `shell` (learnt from the
/// marker as it comes).
pub(crate) fn run(
    conn: &mut Conn,
    script: Script<'_>,
    io: ExecIo<'_>,
    keepalive: Duration,
    shell: &LoginShell,
) -> Result<ExecEnd, ExecFailure> {
    let (command, marker) = match script {
        Script::Posix(payload) => {
            let nonce = format!("{:016x}", rand::random::<u64>());
            let line = shell
                .command(payload, &nonce)
                .map_err(ExecFailure::Invalid)?;
            (line, Some(format!("hgauto-pid-{nonce} ")))
        }
        Script::Raw(line) => (line.to_owned(), None),
    };
    let marked = marker.is_some();
    conn.sess.set_blocking(true);
    let mut channel = conn
        .sess
        .channel_session()
        .map_err(|e| ssh_failure(false, "open channel", e))?;
    channel
        .exec(&command)
        .map_err(|e| ssh_failure(true, "start command", e))?;
    conn.sess.set_blocking(false);
    let result = pump(conn, &mut channel, io, keepalive, marker);
    conn.sess.set_blocking(true);
    if let Ok(Pumped {
        family: Some(f), ..
    }) = &result
    {
        shell.learn(f);
    }
    match result {
        Ok(Pumped {
            timed_out: false,
            started,
            said,
            ..
        }) => {
            let _ = channel.close();
            channel
                .wait_close()
                .map_err(|e| ssh_failure(true, "close channel", e))?;
            let signal = channel
                .exit_signal()
                .map_err(|e| ssh_failure(true, "read exit signal", e))?;
            let status = match signal.exit_signal {
                Some(name) => ExitStatus::Signal(signal_number(&name)),
                None => ExitStatus::Code(
                    channel
                        .exit_status()
                        .map_err(|e| ssh_failure(true, "read exit status", e))?,
                ),
            };
            if marked && !started {
                return Err(ExecFailure::NotStarted { status, said });
            }
            Ok(ExecEnd::Exited(status))
        }
        Ok(Pumped { pid, .. }) => {
            if let Some(pid) = pid {
                kill_remote_group(conn, pid);
            }
            let _ = channel.close();
            Ok(ExecEnd::TimedOut)
        }
        Err(e) => Err(e),
    }
}

/// What [`pump`] saw.
struct Pumped {
    /// The pid from the marker.
    pid: Option<i32>,
    /// The marker came (or none was expected).
    started: bool,
    /// What stderr held before the marker (for the error when it never came).
    said: String,
    /// The deadline passed, or the caller left, before the command ended.
    timed_out: bool,
    /// The login shell's family, as the marker reported it.
    family: Option<String>,
}

/// Moves data until the remote side closes its output, or the deadline passes, or the
/// caller leaves.
fn pump(
    conn: &mut Conn,
    channel: &mut ssh2::Channel,
    io: ExecIo<'_>,
    keepalive: Duration,
    marker: Option<String>,
) -> Result<Pumped, ExecFailure> {
    let ExecIo {
        mut stdin,
        on_stdout,
        on_stderr,
        deadline,
        abandoned,
    } = io;
    let mut buf = vec![0u8; 64 * 1024];
    let mut pending_in: Vec<u8> = Vec::new();
    let mut in_off = 0usize;
    let mut stdin_done = stdin.is_none();
    let mut eof_sent = false;
    let mut filter = StderrFilter::new(marker);
    let ended = |filter: &mut StderrFilter, timed_out: bool| Pumped {
        pid: filter.pid,
        started: filter.seen(),
        said: String::from_utf8_lossy(&filter.before).trim().to_owned(),
        timed_out,
        family: filter.family.take(),
    };
    loop {
        let mut progress = false;

        // stdout
        loop {
            match channel.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    on_stdout(&buf[..n]).map_err(ExecFailure::Local)?;
                    progress = true;
                }
                Err(e) if would_block(&e) => break,
                Err(e) => return Err(ssh_failure(true, "read stdout", e)),
            }
        }
        // stderr
        loop {
            match channel.stderr().read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    filter.feed(&buf[..n], on_stderr);
                    progress = true;
                }
                Err(e) if would_block(&e) => break,
                Err(e) => return Err(ssh_failure(true, "read stderr", e)),
            }
        }
        // stdin
        if !stdin_done {
            if in_off == pending_in.len() {
                pending_in.clear();
                in_off = 0;
                if let Some(r) = stdin.as_mut() {
                    pending_in.resize(256 * 1024, 0);
                    let n = loop {
                        match r.read(&mut pending_in) {
                            Ok(n) => break n,
                            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                            Err(e) => return Err(ExecFailure::Local(e)),
                        }
                    };
                    pending_in.truncate(n);
                    if n == 0 {
                        stdin_done = true;
                    }
                }
            }
            while in_off < pending_in.len() {
                match channel.write(&pending_in[in_off..]) {
                    Ok(0) => break,
                    Ok(n) => {
                        in_off += n;
                        progress = true;
                    }
                    Err(e) if would_block(&e) => break,
                    // The command stopped reading (exited): the rest of stdin is moot.
                    Err(e) if is_closed(&e) => {
                        stdin_done = true;
                        in_off = pending_in.len();
                        break;
                    }
                    Err(e) => return Err(ssh_failure(true, "write stdin", e)),
                }
            }
        }
        if stdin_done && !eof_sent {
            match channel.send_eof() {
                Ok(()) => eof_sent = true,
                Err(e) if e.code() == ssh2::ErrorCode::Session(codes::EAGAIN) => {}
                Err(_) => eof_sent = true, // channel already closing
            }
        }

        if channel.eof() {
            filter.finish(on_stderr);
            return Ok(ended(&mut filter, false));
        }
        if deadline.is_some_and(|d| Instant::now() >= d) || abandoned() {
            filter.finish(on_stderr);
            return Ok(ended(&mut filter, true));
        }
        conn.keepalive_if_due(keepalive);
        if !progress {
            let wait = deadline
                .map(|d| d.saturating_duration_since(Instant::now()))
                .unwrap_or(Duration::from_millis(200))
                .min(Duration::from_millis(200));
            conn.wait_socket(wait);
        }
    }
}

fn is_closed(e: &std::io::Error) -> bool {
    let text = e.to_string();
    text.contains("closed") || text.contains("EOF")
}

/// Kills the remote process group `pgid` over a fresh channel (best effort).
fn kill_remote_group(conn: &mut Conn, pgid: i32) {
    // `-s KILL --` is the form both dash and bash accept for a negative (group) id.
    let script =
        format!("kill -s KILL -- -{pgid} 2>/dev/null || kill -s KILL {pgid} 2>/dev/null; exit 0");
    let Ok(cmd) = login_shell_command(&script) else {
        return;
    };
    let result = (|| -> Result<(), ssh2::Error> {
        let mut ch = conn.sess.channel_session()?;
        ch.exec(&cmd)?;
        let mut sink = Vec::new();
        let _ = ch.read_to_end(&mut sink);
        ch.close()?;
        ch.wait_close()
    })();
    if let Err(e) = result {
        tracing::warn!(pgid, error = %e, "could not kill the remote process group");
    }
}

/// Linux signal numbers for the names SSH reports (without "SIG").
fn signal_number(name: &str) -> i32 {
    match name {
        "HUP" => libc::SIGHUP,
        "INT" => libc::SIGINT,
        "QUIT" => libc::SIGQUIT,
        "ILL" => libc::SIGILL,
        "TRAP" => libc::SIGTRAP,
        "ABRT" => libc::SIGABRT,
        "BUS" => libc::SIGBUS,
        "FPE" => libc::SIGFPE,
        "KILL" => libc::SIGKILL,
        "USR1" => libc::SIGUSR1,
        "SEGV" => libc::SIGSEGV,
        "USR2" => libc::SIGUSR2,
        "PIPE" => libc::SIGPIPE,
        "ALRM" => libc::SIGALRM,
        "TERM" => libc::SIGTERM,
        _ => 0,
    }
}
