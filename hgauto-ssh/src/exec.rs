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
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::{Duration, Instant};

use hgauto_core::render::{login_shell_command, posix_login_command};
use hgauto_core::ExitStatus;

use crate::conn::{codes, Conn, TransportError};

/// What a host's login shell is, as far as we know: how POSIX scripts must be wrapped.
#[derive(Debug, Default)]
pub(crate) struct LoginShell(AtomicU8);

// 0 (the default): not known yet, so the encoded wrapper.
const SHELL_IS_SH: u8 = 1;
const SHELL_POSIX: u8 = 2;
const SHELL_OTHER: u8 = 3;

impl LoginShell {
    fn get(&self) -> u8 {
        self.0.load(Ordering::Relaxed)
    }

    fn learn(&self, family: &str) {
        let v = match family {
            "sh" => SHELL_IS_SH,
            "posix" => SHELL_POSIX,
            _ => SHELL_OTHER,
        };
        self.0.store(v, Ordering::Relaxed);
    }

    /// `script`, marked with `nonce`, as the command line for this login shell.
    fn command(&self, script: &str, nonce: &str) -> hgauto_core::Result<String> {
        // The family is worked out on every run (a few builtins), so a host whose login
        // shell changes is noticed.
        let marked = format!(
            "case ${{SHELL##*/}} in sh) if [ \"$SHELL\" -ef /bin/sh ]; then f=sh; else f=posix; fi;; \
             dash|bash|zsh|ksh|mksh|ksh93|ash|yash|lksh) f=posix;; *) f=other;; esac\n\
             printf 'hgauto-pid-%s %s %s\\n' {nonce} \"$$\" \"$f\" >&2\n{script}"
        );
        match self.get() {
            SHELL_IS_SH => Ok(format!("unset CDPATH\n{marked}")),
            SHELL_POSIX => posix_login_command(&marked),
            _ => login_shell_command(&marked),
        }
    }
}

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

/// Finds this run's pid marker in stderr (wherever the login shell's own output ends),
/// holds back what came before it, and passes everything after it through.
struct StderrFilter {
    /// `hgauto-pid-<nonce> `, while not yet seen.
    marker: Option<String>,
    pending: Vec<u8>,
    pid: Option<i32>,
    /// The login shell's family the marker reported.
    family: Option<String>,
    /// What came before the marker (kept short), for the error when it never comes.
    before: Vec<u8>,
}

impl StderrFilter {
    fn new(marker: Option<String>) -> Self {
        StderrFilter {
            marker,
            pending: Vec::new(),
            pid: None,
            family: None,
            before: Vec::new(),
        }
    }

    fn seen(&self) -> bool {
        self.marker.is_none()
    }

    fn feed(&mut self, data: &[u8], out: &mut (dyn FnMut(&[u8]) + Send)) {
        let Some(marker) = self.marker.as_deref() else {
            out(data);
            return;
        };
        self.pending.extend_from_slice(data);
        let m = marker.as_bytes();
        if let Some(at) = find(&self.pending, m) {
            let Some(nl) = self.pending[at..].iter().position(|&b| b == b'\n') else {
                return; // the pid is still on its way
            };
            let all = std::mem::take(&mut self.pending);
            let mut words = std::str::from_utf8(&all[at + m.len()..at + nl])
                .unwrap_or("")
                .split_whitespace();
            self.pid = words.next().and_then(|p| p.parse().ok());
            self.family = words.next().map(str::to_owned);
            self.marker = None;
            self.note_before(&all[..at]);
            if !self.before.is_empty() {
                tracing::debug!(
                    said = %String::from_utf8_lossy(&self.before),
                    "the login shell printed this before the command started"
                );
            }
            if all.len() > at + nl + 1 {
                out(&all[at + nl + 1..]);
            }
            return;
        }
        // Keep only a tail that could be the start of the marker.
        let keep = m.len().min(self.pending.len());
        let cut = self.pending.len() - keep;
        if cut > 0 {
            let head: Vec<u8> = self.pending.drain(..cut).collect();
            self.note_before(&head);
        }
    }

    fn note_before(&mut self, bytes: &[u8]) {
        let room = 2048usize.saturating_sub(self.before.len());
        self.before
            .extend_from_slice(&bytes[..bytes.len().min(room)]);
    }

    fn finish(&mut self, out: &mut (dyn FnMut(&[u8]) + Send)) {
        let rest = std::mem::take(&mut self.pending);
        if self.seen() {
            out(&rest);
        } else {
            self.note_before(&rest);
        }
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn filter_all(chunks: &[&[u8]]) -> (StderrFilter, Vec<u8>) {
        let mut f = StderrFilter::new(Some("hgauto-pid-abc ".into()));
        let mut got = Vec::new();
        let mut out = |d: &[u8]| got.extend_from_slice(d);
        for c in chunks {
            f.feed(c, &mut out);
        }
        f.finish(&mut out);
        (f, got)
    }

    #[test]
    fn marker_is_stripped_even_when_split_across_reads() {
        let (f, got) = filter_all(&[b"hgauto-p", b"id-abc 42", b"42 posix\nreal error\n"]);
        assert_eq!(f.pid, Some(4242));
        assert_eq!(f.family.as_deref(), Some("posix"));
        assert!(f.seen());
        assert_eq!(got, b"real error\n");
    }

    #[test]
    fn profile_noise_before_the_marker_is_held_back_and_the_pid_still_found() {
        let noise = "x".repeat(5000);
        let (f, got) = filter_all(&[
            noise.as_bytes(),
            b"\nwelcome from .bashrc\nno newline:",
            b"hgauto-pid-abc 7\nerr\n",
        ]);
        assert_eq!(f.pid, Some(7));
        assert_eq!(got, b"err\n");
    }

    #[test]
    fn a_marker_with_another_nonce_does_not_count() {
        let (f, got) = filter_all(&[b"hgauto-pid-zzz 1\nboom"]);
        assert!(!f.seen());
        assert_eq!(f.pid, None);
        assert!(got.is_empty());
        assert!(String::from_utf8_lossy(&f.before).contains("boom"));
    }
}
