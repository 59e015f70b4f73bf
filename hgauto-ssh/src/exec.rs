//! Running one command over one channel, on the calling (blocking) thread.
//!
//! The session is switched to non-blocking mode while the command runs, so stdin, stdout
//! and stderr are serviced together: a command that fills stderr while we wait on stdout
//! cannot deadlock the shared channel window. The first stderr line of a POSIX command is
//! our marker with the remote pid (the process-group leader, since sshd runs each command
//! in its own session), which is what a timeout kills.

use std::io::{ErrorKind, Read, Write};
use std::time::{Duration, Instant};

use hgauto_core::ExitStatus;

use crate::conn::{codes, Conn};

/// Prefix of the pid marker line the POSIX wrapper writes to stderr first.
pub(crate) const PID_MARKER: &str = "hgauto-pid ";

/// Where a command's input comes from and where its output goes.
pub(crate) struct ExecIo<'a> {
    pub stdin: Option<&'a mut (dyn Read + Send)>,
    pub on_stdout: &'a mut (dyn FnMut(&[u8]) -> std::io::Result<()> + Send),
    pub on_stderr: &'a mut (dyn FnMut(&[u8]) + Send),
    pub deadline: Option<Instant>,
    /// True once nobody waits for the result any more (the caller's future was dropped,
    /// e.g. on Ctrl-C): the command is then killed like one that timed out.
    pub abandoned: &'a (dyn Fn() -> bool + Send + Sync),
    /// Strip and record the pid marker from stderr.
    pub pid_marker: bool,
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
    Transport { sent: bool, message: String },
    /// Something on our side failed (e.g. writing the local file); the connection is
    /// in an unknown state and must be dropped.
    Local(std::io::Error),
}

fn ssh_failure(sent: bool, what: &str, e: impl std::fmt::Display) -> ExecFailure {
    ExecFailure::Transport {
        sent,
        message: format!("{what}: {e}"),
    }
}

/// Splits the pid marker off the start of stderr.
struct StderrFilter {
    pending: Option<Vec<u8>>,
    pid: Option<i32>,
}

impl StderrFilter {
    fn new(active: bool) -> Self {
        StderrFilter {
            pending: active.then(Vec::new),
            pid: None,
        }
    }

    fn feed(&mut self, data: &[u8], out: &mut (dyn FnMut(&[u8]) + Send)) {
        let Some(buf) = self.pending.as_mut() else {
            out(data);
            return;
        };
        buf.extend_from_slice(data);
        let Some(nl) = buf.iter().position(|&b| b == b'\n') else {
            if buf.len() > 64 {
                let all = self.pending.take().unwrap_or_default();
                out(&all);
            }
            return;
        };
        let all = self.pending.take().unwrap_or_default();
        let first = &all[..nl];
        match std::str::from_utf8(first)
            .ok()
            .and_then(|l| l.strip_prefix(PID_MARKER))
        {
            Some(pid) => {
                self.pid = pid.trim().parse().ok();
                if all.len() > nl + 1 {
                    out(&all[nl + 1..]);
                }
            }
            None => out(&all),
        }
    }

    fn finish(&mut self, out: &mut (dyn FnMut(&[u8]) + Send)) {
        if let Some(rest) = self.pending.take() {
            if !rest.is_empty() {
                out(&rest);
            }
        }
    }
}

fn would_block(e: &std::io::Error) -> bool {
    e.kind() == ErrorKind::WouldBlock
}

/// Runs `command` on a new channel of `conn`.
pub(crate) fn run(
    conn: &mut Conn,
    command: &str,
    io: ExecIo<'_>,
    keepalive: Duration,
) -> Result<ExecEnd, ExecFailure> {
    conn.sess.set_blocking(true);
    let mut channel = conn
        .sess
        .channel_session()
        .map_err(|e| ssh_failure(false, "open channel", e))?;
    channel
        .exec(command)
        .map_err(|e| ssh_failure(true, "start command", e))?;
    conn.sess.set_blocking(false);
    let result = pump(conn, &mut channel, io, keepalive);
    conn.sess.set_blocking(true);
    match result {
        Ok((_, false)) => {
            let _ = channel.close();
            channel
                .wait_close()
                .map_err(|e| ssh_failure(true, "close channel", e))?;
            let signal = channel
                .exit_signal()
                .map_err(|e| ssh_failure(true, "read exit signal", e))?;
            match signal.exit_signal {
                Some(name) => Ok(ExecEnd::Exited(ExitStatus::Signal(signal_number(&name)))),
                None => {
                    let code = channel
                        .exit_status()
                        .map_err(|e| ssh_failure(true, "read exit status", e))?;
                    Ok(ExecEnd::Exited(ExitStatus::Code(code)))
                }
            }
        }
        Ok((pid, true)) => {
            if let Some(pid) = pid {
                kill_remote_group(conn, pid);
            }
            let _ = channel.close();
            Ok(ExecEnd::TimedOut)
        }
        Err(e) => Err(e),
    }
}

/// Moves data until the remote side closes its output (returns the marker pid and whether
/// the deadline passed, or the caller left, first).
fn pump(
    conn: &mut Conn,
    channel: &mut ssh2::Channel,
    io: ExecIo<'_>,
    keepalive: Duration,
) -> Result<(Option<i32>, bool), ExecFailure> {
    let ExecIo {
        mut stdin,
        on_stdout,
        on_stderr,
        deadline,
        abandoned,
        pid_marker,
    } = io;
    let mut buf = vec![0u8; 64 * 1024];
    let mut pending_in: Vec<u8> = Vec::new();
    let mut in_off = 0usize;
    let mut stdin_done = stdin.is_none();
    let mut eof_sent = false;
    let mut filter = StderrFilter::new(pid_marker);
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
            return Ok((filter.pid, false));
        }
        if deadline.is_some_and(|d| Instant::now() >= d) || abandoned() {
            filter.finish(on_stderr);
            return Ok((filter.pid, true));
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
    let cmd =
        format!("kill -s KILL -- -{pgid} 2>/dev/null || kill -s KILL {pgid} 2>/dev/null; exit 0");
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marker_is_stripped_even_when_split_across_reads() {
        let mut f = StderrFilter::new(true);
        let mut got = Vec::new();
        let mut out = |d: &[u8]| got.extend_from_slice(d);
        f.feed(b"hgauto-p", &mut out);
        f.feed(b"id 4242\nreal error\n", &mut out);
        f.finish(&mut out);
        assert_eq!(f.pid, Some(4242));
        assert_eq!(got, b"real error\n");
    }

    #[test]
    fn stderr_without_marker_passes_through() {
        let mut f = StderrFilter::new(true);
        let mut got = Vec::new();
        let mut out = |d: &[u8]| got.extend_from_slice(d);
        f.feed(b"not a marker\nmore", &mut out);
        f.finish(&mut out);
        assert_eq!(f.pid, None);
        assert_eq!(got, b"not a marker\nmore");
    }
}
