//! The [`RemoteMachine`] trait: one machine you can drive.

use std::fmt;
use std::path::Path;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::command::{Command, LineSink, Output, Platform};
use crate::error::Result;

/// One machine you can run commands on and move files to and from.
///
/// # Contract
/// - `exec_streaming` runs a [`Command`] and returns its [`Output`] once it has exited. A
///   non-zero exit or a signal is a normal `Output`, not an error. Output lines go to the
///   sink as they arrive *and* are captured. Arguments arrive byte for byte: no backend
///   pastes them into a shell string unescaped. When the command's timeout passes, the
///   backend kills the command's whole process tree on the machine and returns
///   [`Error::Timeout`](crate::Error::Timeout).
/// - Remote paths are strings in the machine's own syntax. A relative path is relative to
///   the machine's home directory (where commands start by default).
/// - `put` and `get` copy one file, streaming (never the whole file in memory), keep its
///   permission bits, and land it by rename so no reader sees a partial file.
/// - `sync_tree` makes a remote directory hold what a local one holds (files, modes,
///   symlinks, any file names), sending only what changed since the last sync.
/// - Every method may be called concurrently from many tasks.
///
/// No generated mock: mockall cannot mock a function-object argument (the line sink,
/// asomers/mockall#139). Tests drive the local machine, a real one.
#[async_trait]
pub trait RemoteMachine: Send + Sync + fmt::Debug {
    /// A stable id, unique within its provider (e.g. `local-3f2a9c`, `i-0abc...`).
    fn id(&self) -> &str;

    /// The platform, which decides how commands are rendered.
    fn platform(&self) -> Platform;

    /// Runs `cmd`, passing each output line to `sink` as it arrives.
    async fn exec_streaming(&self, cmd: &Command, sink: LineSink<'_>) -> Result<Output>;

    /// Runs `cmd` and captures its output.
    async fn exec(&self, cmd: &Command) -> Result<Output> {
        self.exec_streaming(cmd, &mut |_, _| {}).await
    }

    /// Runs `cmd` and captures its output; a non-zero exit is
    /// [`Error::CommandFailed`](crate::Error::CommandFailed), naming this machine, the
    /// command and the last lines of its stderr.
    async fn exec_checked(&self, cmd: &Command) -> Result<Output> {
        self.exec(cmd).await?.check(self.id(), cmd)
    }

    /// Copies the local file `local` to `remote`, keeping its permission bits.
    async fn put(&self, local: &Path, remote: &str) -> Result<()>;

    /// Copies the remote file `remote` to `local`, keeping its permission bits.
    async fn get(&self, remote: &str, local: &Path) -> Result<()>;

    /// Makes `remote_dir` mirror `local_dir`.
    async fn sync_tree(
        &self,
        local_dir: &Path,
        remote_dir: &str,
        options: &SyncOptions,
    ) -> Result<SyncReport>;

    /// Waits until the machine accepts commands, or fails after `timeout`.
    async fn wait_ready(&self, timeout: Duration) -> Result<()>;
}

/// Options for [`RemoteMachine::sync_tree`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncOptions {
    /// Remove remote entries that do not exist locally.
    pub delete: bool,
    /// Compress data in transit (backends that have a transport to compress).
    pub compress: bool,
}

/// What a [`RemoteMachine::sync_tree`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncReport {
    /// Regular files written (new or changed).
    pub files_sent: u64,
    /// Bytes of file content written.
    pub bytes_sent: u64,
    /// Files left alone because size and modification time matched.
    pub files_unchanged: u64,
    /// Symlinks created or replaced.
    pub symlinks: u64,
    /// Remote entries removed (only with [`SyncOptions::delete`]).
    pub deleted: u64,
}

/// One file [`matching_files`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MatchedFile {
    /// Its path on the machine, relative to the directory searched.
    pub path: String,
    /// Its base name: one path component, never empty, `.` or `..`, so it is safe to join
    /// to a local directory.
    pub name: String,
}

impl MatchedFile {
    fn new(path: String) -> Result<Self> {
        let name = path.rsplit(['/', '\\']).next().unwrap_or("").to_owned();
        if name.is_empty() || name == "." || name == ".." {
            return Err(crate::Error::invalid(
                format!("remote file {path:?}"),
                "has no usable file name",
            ));
        }
        Ok(MatchedFile { path, name })
    }
}

/// The regular files on `machine` that `pattern` (a path, or a `*`/`?` pattern) matches,
/// relative to `dir` (the machine's home when `None`), in the shell's order. On Windows the
/// pattern is taken as a literal path. The pattern reaches `sh` as an argument and is
/// expanded by globbing only: no word splitting and no command substitution. A match
/// without a usable base name (a Windows path ending in a separator) is an error.
pub async fn matching_files(
    machine: &dyn RemoteMachine,
    pattern: &str,
    dir: Option<&str>,
) -> Result<Vec<MatchedFile>> {
    if machine.platform() == Platform::Windows {
        return Ok(vec![MatchedFile::new(pattern.to_owned())?]);
    }
    let mut list = Command::new("sh")
        .args([
            "-c",
            "IFS=; for f in $1; do [ -f \"$f\" ] && printf '%s\\n' \"$f\"; done; exit 0",
            "sh",
            pattern,
        ])
        .timeout(Duration::from_secs(60));
    if let Some(dir) = dir {
        list = list.current_dir(dir);
    }
    let out = machine.exec(&list).await?;
    out.stdout_str()
        .lines()
        .map(|l| MatchedFile::new(l.to_owned()))
        .collect()
}
