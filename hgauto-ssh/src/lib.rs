//! # hgauto-ssh
//!
//! The SSH backend of hgauto: [`SshMachine`] implements `RemoteMachine` over libssh2 (the
//! `ssh2` crate) for any host running OpenSSH, and [`SshPublisher`] publishes over SFTP.
//!
//! Design notes:
//! - libssh2 blocks, so every operation runs on a blocking thread with a pooled connection,
//!   one operation per connection at a time. Sockets use `TCP_NODELAY`: without it, Nagle's
//!   algorithm and delayed ACKs add ~40 ms to each channel request.
//! - Host keys are checked against hgauto's own known_hosts (in its state directory), never
//!   `~/.ssh/known_hosts`: strict by default, accept-new, or a key pinned by the caller.
//! - Commands are rendered by `hgauto_core::backend::render`, so arguments arrive byte for byte. A
//!   timeout kills the *remote* process group (sshd starts each command in its own session).
//! - `sync_tree` sends a tar of only what changed, over one channel.

#![warn(missing_docs)]
#![warn(unreachable_pub)]

pub mod config;
mod conn;
pub mod hosts;
pub mod known_hosts;
pub mod machine;
pub mod publisher;

pub use config::{Auth, HostKeyPolicy, SshConfig};
pub use hosts::{HostsProvider, Inventory};
pub use machine::SshMachine;
pub use publisher::SshPublisher;
