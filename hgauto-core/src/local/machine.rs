//! [`LocalMachine`]: a sandbox directory on this host that behaves like a remote machine.

use std::ffi::OsString;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};

use crate::backend::task::blocking;
use crate::command::{Command, LineSink, Output, Platform, Program, Stream};
use crate::env::MACHINE_ID;
use crate::error::{Error, IoContext, Result};
use crate::exit_status::ExitStatus;
use crate::local::mirror::{copy_file_atomic, mirror_tree};
use crate::machine::{RemoteMachine, SyncOptions, SyncReport};

/// A machine whose "disk" is a directory on this host (its home) and whose processes run
/// here, each command in its own process group.
///
/// Commands start in the home directory with a clean environment: `PATH` and `LANG` from
/// this process, `HOME` and `TMPDIR` inside the sandbox, and [`MACHINE_ID`] set to the
/// machine id, by which terminating the machine finds every process it started.
#[derive(Debug, Clone)]
pub struct LocalMachine {
    id: String,
    home: PathBuf,
}

impl LocalMachine {
    /// A machine rooted at an existing directory `home`.
    pub fn open(id: impl Into<String>, home: impl Into<PathBuf>) -> Result<Self> {
        let id = id.into();
        let home = home.into();
        let meta = std::fs::metadata(&home).at("open sandbox", &home, &id)?;
        if !meta.is_dir() {
            return Err(Error::invalid(
                format!("sandbox {}", home.display()),
                "is not a directory",
            ));
        }
        Ok(LocalMachine { id, home })
    }

    /// The sandbox directory (the machine's home).
    pub fn home(&self) -> &Path {
        &self.home
    }

    /// Resolves a remote path: relative paths are inside the home directory.
    pub fn resolve(&self, remote: &str) -> Result<PathBuf> {
        if remote.is_empty() || remote.contains('\0') {
            return Err(Error::invalid(
                format!("remote path {remote:?} on {}", self.id),
                "is empty or contains NUL",
            ));
        }
        Ok(self.home.join(remote))
    }

    fn base_env(&self) -> Vec<(OsString, OsString)> {
        let mut env = Vec::new();
        for key in ["PATH", "LANG", "LC_ALL", "TERM"] {
            if let Some(v) = std::env::var_os(key) {
                env.push((key.into(), v));
            }
        }
        if !env.iter().any(|(k, _)| k == "PATH") {
            env.push(("PATH".into(), "/usr/local/bin:/usr/bin:/bin".into()));
        }
        env.push(("HOME".into(), self.home.clone().into()));
        env.push(("TMPDIR".into(), self.home.join("tmp").into()));
        env.push(("SHELL".into(), "/bin/sh".into()));
        env.push((MACHINE_ID.into(), self.id.clone().into()));
        env
    }

    fn build(&self, cmd: &Command) -> Result<tokio::process::Command> {
        let mut c = match cmd.get_program() {
            Program::Exec(p) => {
                if p.is_empty() {
                    return Err(Error::invalid("program", "the program name is empty"));
                }
                let mut c = tokio::process::Command::new(p);
                c.args(cmd.get_args());
                c
            }
            Program::Script(s) => {
                let mut c = tokio::process::Command::new("/bin/sh");
                c.arg("-c").arg(s).arg("sh").args(cmd.get_args());
                c
            }
        };
        for (i, a) in cmd.get_args().iter().enumerate() {
            if std::os::unix::ffi::OsStrExt::as_bytes(a.as_os_str()).contains(&0) {
                return Err(Error::invalid(
                    format!("argument {}", i + 1),
                    "contains a NUL byte, which no program argument can carry",
                ));
            }
        }
        c.env_clear().envs(self.base_env());
        for (k, v) in cmd.get_env() {
            if k.is_empty() || k.contains(['=', '\0']) {
                return Err(Error::invalid(
                    format!("environment variable name {k:?}"),
                    "is empty or contains '=' or NUL",
                ));
            }
            c.env(k, v);
        }
        let cwd = match cmd.get_cwd() {
            Some(d) => self.home.join(d),
            None => self.home.clone(),
        };
        if !cwd.is_dir() {
            return Err(Error::io(
                "enter working directory",
                &cwd,
                &self.id,
                std::io::Error::new(std::io::ErrorKind::NotFound, "no such directory"),
            ));
        }
        c.current_dir(cwd)
            .stdin(if cmd.get_stdin().is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        Ok(c)
    }
}

/// Reads one stream of a command to its end, passing each line to `sink` as it arrives
/// (core's [`LineSplitter`](crate::LineSplitter)), and returns all of it.
async fn pump(
    mut reader: impl AsyncRead + Unpin,
    stream: Stream,
    sink: &std::sync::Mutex<LineSink<'_>>,
    limit: Option<usize>,
) -> std::io::Result<(Vec<u8>, bool)> {
    let mut lines = crate::LineSplitter::with_capture_limit(limit);
    let mut buf = vec![0u8; 64 * 1024];
    // Both streams' pumps share the caller's sink; the lock is never held across an await.
    let emit = |l: &[u8]| (sink.lock().unwrap_or_else(|p| p.into_inner()))(stream, l);
    loop {
        let n = reader.read(&mut buf).await?;
        if n == 0 {
            lines.finish(emit);
            return Ok(lines.into_parts());
        }
        lines.push(&buf[..n], emit);
    }
}

#[async_trait]
impl RemoteMachine for LocalMachine {
    fn id(&self) -> &str {
        &self.id
    }

    fn platform(&self) -> Platform {
        Platform::Linux
    }

    async fn exec_streaming(&self, cmd: &Command, sink: LineSink<'_>) -> Result<Output> {
        let start = Instant::now();
        let program = cmd.display();
        let mut child = self.build(cmd)?.spawn().map_err(|source| Error::Spawn {
            machine: self.id.clone(),
            program: program.clone(),
            source,
        })?;
        let mut killer = crate::backend::process_group::GroupKiller::new(child.id());
        let span = tracing::debug_span!("exec", machine = %self.id, command = %program);
        let _enter = span.enter();

        let stdin_data = cmd.get_stdin().map(<[u8]>::to_vec);
        let mut stdin = child.stdin.take();
        let feed = async move {
            if let (Some(data), Some(pipe)) = (stdin_data, stdin.as_mut()) {
                // A program that exits without reading all of stdin is not an error.
                let _ = pipe.write_all(&data).await;
            }
            drop(stdin);
        };
        let stdout = child.stdout.take().expect("stdout is piped");
        let stderr = child.stderr.take().expect("stderr is piped");
        let sink = std::sync::Mutex::new(sink);
        let run = async {
            let (_, out, err, status) = tokio::join!(
                feed,
                pump(stdout, Stream::Stdout, &sink, cmd.get_capture_limit()),
                pump(stderr, Stream::Stderr, &sink, cmd.get_capture_limit()),
                child.wait()
            );
            (out, err, status)
        };
        let (out, err, status) = match cmd.get_timeout() {
            None => run.await,
            Some(limit) => match tokio::time::timeout(limit, run).await {
                Ok(r) => r,
                Err(_) => {
                    drop(killer); // kills the whole group now
                    return Err(Error::Timeout {
                        machine: self.id.clone(),
                        what: format!("command `{program}`"),
                        after: limit,
                    });
                }
            },
        };
        killer.defuse();
        let status = status.at("wait for", Path::new(&program), &self.id)?;
        let status = match (status.code(), status.signal()) {
            (Some(c), _) => ExitStatus::Code(c),
            (None, Some(s)) => ExitStatus::Signal(s),
            (None, None) => ExitStatus::Code(-1),
        };
        let (stdout, cut_out) = out.at("read stdout of", Path::new(&program), &self.id)?;
        let (stderr, cut_err) = err.at("read stderr of", Path::new(&program), &self.id)?;
        Ok(Output {
            status,
            stdout,
            stderr,
            duration: start.elapsed(),
            truncated: cut_out || cut_err,
        })
    }

    async fn put(&self, local: &Path, remote: &str) -> Result<()> {
        let dst = self.resolve(remote)?;
        let src = local.to_owned();
        let id = self.id.clone();
        blocking(move || copy_one(&src, &dst, "localhost", &id)).await
    }

    async fn get(&self, remote: &str, local: &Path) -> Result<()> {
        let src = self.resolve(remote)?;
        let dst = local.to_owned();
        let id = self.id.clone();
        blocking(move || copy_one(&src, &dst, &id, "localhost")).await
    }

    async fn sync_tree(
        &self,
        local_dir: &Path,
        remote_dir: &str,
        options: &SyncOptions,
    ) -> Result<SyncReport> {
        let dst = self.resolve(remote_dir)?;
        let src = local_dir.to_owned();
        let options = options.clone();
        let id = self.id.clone();
        blocking(move || mirror_tree(&src, &dst, &options).at("sync tree to", &dst, &id)).await
    }

    async fn wait_ready(&self, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            if tokio::fs::metadata(&self.home)
                .await
                .is_ok_and(|m| m.is_dir())
            {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(Error::Timeout {
                    machine: self.id.clone(),
                    what: "waiting for the sandbox".into(),
                    after: timeout,
                });
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Copies one file (following a symlinked source), creating the destination's parents.
fn copy_one(src: &Path, dst: &Path, src_machine: &str, dst_machine: &str) -> Result<()> {
    let meta = std::fs::metadata(src).at("read", src, src_machine)?;
    if !meta.is_file() {
        return Err(Error::invalid(
            format!("{} on {src_machine}", src.display()),
            "is not a regular file",
        ));
    }
    if let Some(parent) = dst.parent() {
        std::fs::create_dir_all(parent).at("create directory", parent, dst_machine)?;
    }
    copy_file_atomic(src, dst, &meta).at("write", dst, dst_machine)
}
