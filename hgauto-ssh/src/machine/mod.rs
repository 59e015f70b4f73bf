//! [`SshMachine`]: a [`RemoteMachine`] over SSH.

mod exec;
mod marker;
mod transfer;

use std::ffi::OsStr;
use std::io::{Cursor, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use hgauto_core::backend::fs::{create_private, set_mode, MODE_MASK};
use hgauto_core::backend::render::{posix_path, render};
use hgauto_core::backend::task::run_blocking;
use hgauto_core::{
    Command, Error, LineSink, Output, Platform, RemoteMachine, Result, Stream, SyncOptions,
    SyncReport,
};
use tokio::sync::Semaphore;

use crate::config::SshConfig;
use crate::conn::{connect, Conn, TransportError};
use exec::{ExecEnd, ExecFailure, ExecIo, LoginShell, Script};
use hgauto_core::backend::tree_sync as sync;

/// Why one attempt of an operation failed.
pub(crate) enum OpError {
    /// The connection broke; `sent` is true once a command may have started.
    Transport { sent: bool, error: TransportError },
    /// Anything else; not retried.
    Other(Error),
}

impl From<Error> for OpError {
    fn from(e: Error) -> Self {
        OpError::Other(e)
    }
}

impl OpError {
    /// Converts a failed run on `machine`.
    fn from_exec(f: ExecFailure, machine: &str) -> Self {
        match f {
            ExecFailure::Transport { sent, error } => OpError::Transport { sent, error },
            ExecFailure::Local(e) => {
                OpError::Other(Error::io("write local data", "(local)", "localhost", e))
            }
            ExecFailure::Invalid(e) => OpError::Other(e),
            ExecFailure::NotStarted { status, said } => OpError::Other(Error::Spawn {
                machine: machine.to_owned(),
                program: "/bin/sh (through the login shell)".into(),
                source: std::io::Error::other(format!(
                    "the login shell ended with {status} without running hgauto's command \
                     wrapper; the host needs /bin/sh and a login shell that runs `-c` \
                     commands{}",
                    if said.is_empty() {
                        String::new()
                    } else {
                        format!(" (it said: {said})")
                    }
                )),
            }),
        }
    }
}

struct Inner {
    id: String,
    cfg: SshConfig,
    idle: Mutex<Vec<Conn>>,
    slots: Arc<Semaphore>,
    /// What the host's login shell is (learnt from the first command).
    shell: LoginShell,
}

impl Inner {
    fn take_idle(&self) -> Option<Conn> {
        self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop()
    }
    fn put_idle(&self, conn: Conn) {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() < self.cfg.max_connections {
            idle.push(conn);
        }
    }
}

/// A machine reached over SSH (libssh2).
///
/// Each operation takes a connection from a per-host pool (opening one if none is idle, up
/// to [`SshConfig::max_connections`]) and runs on a blocking thread, never on a tokio
/// worker. One operation uses one channel on its connection, so sshd's `MaxSessions` never
/// limits how many commands run at once; the pool size does.
///
/// Operations that are safe to repeat (`put`, `get`, `sync_tree`, commands marked
/// [`Command::idempotent`]) reconnect and retry under [`SshConfig::retry`] when the
/// connection drops. Other commands fail with [`Error::Connection`] whose `may_have_run` is
/// true once the command was sent.
#[derive(Clone)]
pub struct SshMachine {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for SshMachine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SshMachine")
            .field("id", &self.inner.id)
            .field("host", &self.inner.cfg.display())
            .finish()
    }
}

impl SshMachine {
    /// A machine with id `id`, reached through `cfg`. Nothing connects until first use
    /// (or [`wait_ready`](RemoteMachine::wait_ready)).
    pub fn new(id: impl Into<String>, cfg: SshConfig) -> Self {
        let slots = Arc::new(Semaphore::new(cfg.max_connections.max(1)));
        SshMachine {
            inner: Arc::new(Inner {
                id: id.into(),
                cfg,
                idle: Mutex::new(Vec::new()),
                slots,
                shell: LoginShell::default(),
            }),
        }
    }

    /// A machine whose id is `user@host:port`.
    pub fn from_config(cfg: SshConfig) -> Self {
        Self::new(cfg.display(), cfg)
    }

    /// The connection settings.
    pub fn config(&self) -> &SshConfig {
        &self.inner.cfg
    }

    /// Drops every idle connection (the next operation reconnects).
    pub fn disconnect(&self) {
        self.inner
            .idle
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
    }

    /// Runs `op` with a pooled connection on a blocking thread, reconnecting and retrying
    /// transport failures when `repeatable` (or when nothing was sent yet).
    pub(crate) async fn with_conn<T, F>(&self, repeatable: bool, mut op: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnMut(&mut Conn) -> std::result::Result<T, OpError> + Send + 'static,
    {
        let permit = self
            .inner
            .slots
            .clone()
            .acquire_owned()
            .await
            .map_err(|e| Error::Backend {
                backend: "ssh".into(),
                message: format!("connection pool closed: {e}"),
                retryable: false,
                source: None,
            })?;
        let inner = self.inner.clone();
        run_blocking("ssh", move || {
            let _permit = permit;
            let cfg = &inner.cfg;
            let mut attempt = 0u32;
            loop {
                let (mut conn, pooled) = match inner.take_idle() {
                    Some(c) => (c, true),
                    None => match connect(cfg) {
                        Ok(c) => (c, false),
                        Err(e) if e.is_retryable() && attempt < cfg.retry.max_retries => {
                            backoff(cfg, &mut attempt, &e);
                            continue;
                        }
                        Err(e) => return Err(e),
                    },
                };
                match op(&mut conn) {
                    Ok(v) => {
                        inner.put_idle(conn);
                        return Ok(v);
                    }
                    Err(OpError::Other(e)) => return Err(e),
                    Err(OpError::Transport { sent, error }) => {
                        drop(conn);
                        // A pooled connection that died while idle: nothing ran, try a
                        // fresh one at once.
                        if pooled && !sent {
                            continue;
                        }
                        let may_have_run = sent && !repeatable;
                        let err = Error::Connection {
                            machine: inner.id.clone(),
                            may_have_run,
                            source: Box::new(error),
                        };
                        if may_have_run || attempt >= cfg.retry.max_retries {
                            return Err(err);
                        }
                        backoff(cfg, &mut attempt, &err);
                    }
                }
            }
        })
        .await
    }

    /// Runs a POSIX script (no streaming) with `stdin`, for the transfer helpers. Returns
    /// status and stderr.
    fn run_plain(
        &self,
        conn: &mut Conn,
        keepalive: Duration,
        script: &str,
        stdin: Option<&mut (dyn Read + Send)>,
        on_stdout: &mut (dyn FnMut(&[u8]) -> std::io::Result<()> + Send),
    ) -> std::result::Result<(hgauto_core::ExitStatus, Vec<u8>), OpError> {
        let mut err = Vec::new();
        let mut on_stderr = |d: &[u8]| err.extend_from_slice(d);
        let io = ExecIo {
            stdin: stdin.map(|s| s as &mut (dyn Read + Send)),
            on_stdout: &mut *on_stdout,
            on_stderr: &mut on_stderr,
            deadline: None,
            abandoned: &|| false,
        };
        let end = exec::run(
            conn,
            Script::Posix(script),
            io,
            keepalive,
            &self.inner.shell,
        )
        .map_err(|f| OpError::from_exec(f, &self.inner.id))?;
        match end {
            ExecEnd::Exited(status) => Ok((status, err)),
            ExecEnd::TimedOut => Err(OpError::Other(Error::invalid(
                "transfer",
                "timed out without a deadline",
            ))),
        }
    }

    fn remote_failure(
        &self,
        op: &'static str,
        path: &str,
        status: hgauto_core::ExitStatus,
        stderr: &[u8],
    ) -> OpError {
        let msg = String::from_utf8_lossy(stderr).trim().to_owned();
        let kind = if msg.contains("No such file") {
            std::io::ErrorKind::NotFound
        } else {
            std::io::ErrorKind::Other
        };
        OpError::Other(Error::io(
            op,
            path,
            &self.inner.id,
            std::io::Error::new(kind, format!("{status}: {msg}")),
        ))
    }

    fn require_posix(&self, what: &str) -> Result<()> {
        if self.inner.cfg.platform == Platform::Linux {
            Ok(())
        } else {
            Err(Error::NotSupported {
                backend: format!("ssh ({} host {})", self.inner.cfg.platform, self.inner.id),
                what: what.into(),
            })
        }
    }
}

fn backoff(cfg: &SshConfig, attempt: &mut u32, err: &Error) {
    let delay = cfg.retry.delay(*attempt, rand::random::<f64>());
    tracing::warn!(host = %cfg.display(), attempt = *attempt + 1, retry_in = ?delay, error = %err, "reconnecting");
    std::thread::sleep(delay);
    *attempt += 1;
}

/// Splits output into lines (core's [`LineSplitter`](hgauto_core::LineSplitter)) and sends
/// them to the task that feeds the sink.
struct LineTap {
    stream: Stream,
    tx: tokio::sync::mpsc::UnboundedSender<(Stream, Vec<u8>)>,
    lines: hgauto_core::LineSplitter,
}

impl LineTap {
    fn new(
        stream: Stream,
        tx: tokio::sync::mpsc::UnboundedSender<(Stream, Vec<u8>)>,
        limit: Option<usize>,
    ) -> Self {
        LineTap {
            stream,
            tx,
            lines: hgauto_core::LineSplitter::with_capture_limit(limit),
        }
    }
    fn push(&mut self, data: &[u8]) {
        let (stream, tx) = (self.stream, &self.tx);
        self.lines.push(data, |l| {
            let _ = tx.send((stream, l.to_vec()));
        });
    }
    fn finish(&mut self) {
        let (stream, tx) = (self.stream, &self.tx);
        self.lines.finish(|l| {
            let _ = tx.send((stream, l.to_vec()));
        });
    }
}

#[async_trait]
impl RemoteMachine for SshMachine {
    fn id(&self) -> &str {
        &self.inner.id
    }

    fn platform(&self) -> Platform {
        self.inner.cfg.platform
    }

    async fn exec_streaming(&self, cmd: &Command, sink: LineSink<'_>) -> Result<Output> {
        let platform = self.inner.cfg.platform;
        let rendered = render(cmd, platform)?;
        let posix = platform == Platform::Linux;
        let inner = self.inner.clone();
        let stdin = cmd.get_stdin().map(<[u8]>::to_vec);
        let timeout = cmd.get_timeout();
        let keepalive = self.inner.cfg.keepalive;
        let limit = cmd.get_capture_limit();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let started = Instant::now();
        let run = self.with_conn(cmd.is_idempotent(), move |conn| {
            // `rx` lives in this future: once it is dropped (the caller cancelled), the
            // channel is closed and the command is killed instead of running on unseen.
            let caller = tx.clone();
            let mut out = LineTap::new(Stream::Stdout, tx.clone(), limit);
            let mut err = LineTap::new(Stream::Stderr, tx.clone(), limit);
            let mut input = stdin.as_deref().map(Cursor::new);
            let io = ExecIo {
                stdin: input.as_mut().map(|c| c as &mut (dyn Read + Send)),
                on_stdout: &mut |d| {
                    out.push(d);
                    Ok(())
                },
                on_stderr: &mut |d| err.push(d),
                deadline: timeout.map(|t| Instant::now() + t),
                abandoned: &|| caller.is_closed(),
            };
            let script = if posix {
                Script::Posix(&rendered)
            } else {
                Script::Raw(&rendered)
            };
            let end = exec::run(conn, script, io, keepalive, &inner.shell)
                .map_err(|f| OpError::from_exec(f, &inner.id))?;
            out.finish();
            err.finish();
            Ok((end, out.lines.into_parts(), err.lines.into_parts()))
        });
        let drain = async {
            while let Some((stream, line)) = rx.recv().await {
                sink(stream, &line);
            }
        };
        let (result, ()) = tokio::join!(run, drain);
        let (end, (stdout, cut_out), (stderr, cut_err)) = result?;
        match end {
            ExecEnd::Exited(status) => Ok(Output {
                status,
                stdout,
                stderr,
                duration: started.elapsed(),
                truncated: cut_out || cut_err,
            }),
            ExecEnd::TimedOut => Err(Error::Timeout {
                machine: self.inner.id.clone(),
                what: format!("command `{}`", cmd.display()),
                after: timeout.unwrap_or_default(),
            }),
        }
    }

    async fn put(&self, local: &Path, remote: &str) -> Result<()> {
        self.put_file(local, remote).await
    }

    async fn get(&self, remote: &str, local: &Path) -> Result<()> {
        self.get_file(remote, local).await
    }

    async fn sync_tree(
        &self,
        local_dir: &Path,
        remote_dir: &str,
        options: &SyncOptions,
    ) -> Result<SyncReport> {
        self.sync_dir(local_dir, remote_dir, options).await
    }

    async fn wait_ready(&self, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        let mut delay = Duration::from_millis(250);
        loop {
            let mut cfg = self.inner.cfg.clone();
            let left = deadline.saturating_duration_since(Instant::now());
            cfg.connect_timeout = cfg
                .connect_timeout
                .min(left.max(Duration::from_millis(200)));
            let attempt = run_blocking("ssh", move || Ok(connect(&cfg))).await?;
            match attempt {
                Ok(conn) => {
                    self.inner.put_idle(conn);
                    return Ok(());
                }
                // Fail fast: waiting will not fix credentials or a wrong host key.
                Err(
                    e @ (Error::Auth { .. } | Error::HostKey { .. } | Error::InvalidInput { .. }),
                ) => return Err(e),
                Err(e) => {
                    if Instant::now() + delay >= deadline {
                        return Err(Error::Timeout {
                            machine: self.inner.id.clone(),
                            what: format!("waiting for SSH (last error: {e})"),
                            after: timeout,
                        });
                    }
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(5));
                }
            }
        }
    }
}
