//! How an [`SsmMachine`](super::SsmMachine) sends commands and moves files: [`SsmOptions`]
//! and the size limits of Run Command.

use std::time::Duration;

/// SSM keeps this many characters of each stream in `GetCommandInvocation`.
pub const SSM_OUTPUT_LIMIT: usize = 24_000;

/// Stdin up to this size travels inside the command (base64); larger stdin needs a bucket.
pub const INLINE_STDIN_LIMIT: usize = 48 * 1024;

/// Scripts above this size are refused before sending (SSM rejects large parameters).
pub(super) const SCRIPT_LIMIT: usize = 96 * 1024;

/// How an [`SsmMachine`] sends commands and moves files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SsmOptions {
    /// The directory commands start in and relative paths are relative to (`$HOME` on
    /// Linux). `None`: `/root` on Linux (the agent runs as root), `C:\hgauto` on Windows.
    pub home: Option<String>,
    /// S3 bucket for full command output and file transfer.
    pub bucket: Option<String>,
    /// Key prefix of everything this machine writes to the bucket.
    pub key_prefix: String,
    /// How long the agent may take to pick a command up (SSM's `TimeoutSeconds`, >= 30 s).
    pub delivery_timeout: Duration,
    /// The time limit of a command that sets none (SSM's default `executionTimeout`).
    pub default_timeout: Duration,
    /// First delay between status polls (doubles up to `poll_max`).
    pub poll_first: Duration,
    /// Longest delay between status polls.
    pub poll_max: Duration,
}

impl Default for SsmOptions {
    fn default() -> Self {
        SsmOptions {
            home: None,
            bucket: None,
            key_prefix: "hgauto-ssm".into(),
            delivery_timeout: Duration::from_secs(600),
            default_timeout: Duration::from_secs(3600),
            poll_first: Duration::from_millis(250),
            poll_max: Duration::from_secs(2),
        }
    }
}

impl SsmOptions {
    /// Sets the bucket for full output and file transfer.
    pub fn with_bucket(mut self, bucket: impl Into<String>) -> Self {
        self.bucket = Some(bucket.into());
        self
    }

    /// Sets the home directory on the machine.
    pub fn with_home(mut self, home: impl Into<String>) -> Self {
        self.home = Some(home.into());
        self
    }
}
