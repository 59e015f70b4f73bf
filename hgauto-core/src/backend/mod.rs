//! Helpers for backend crates (hgauto-ssh, hgauto-aws, and any provider or machine added
//! later), not for programs that use hgauto: pieces every backend would otherwise write
//! again.
//!
//! - [`render`]: a [`Command`](crate::Command) as a POSIX or PowerShell command line, and
//!   the wrappers that get a script past any login shell to `/bin/sh`.
//! - [`task`]: blocking work (libssh2, file walks) off the async worker threads.
//! - [`background`]: undo work that must outlive a dropped future (kill a remote command,
//!   delete a staged object).
//! - [`process_group`]: local commands in a group of their own, killed whole on a
//!   timeout or a dropped future.
//! - [`fs`]: which mode bits travel, private files, whole-file writes by atomic rename.
//! - [`publish`]: the publish flow (validate, check all, upload each, report) that every
//!   publisher follows, given its own check and upload.
//! - [`IoContext`]: an I/O error with the operation, path and machine attached.
//! - [`tree_sync`]: `sync_tree` for any machine that can run POSIX commands, by a remote
//!   manifest and one tar stream of what changed ([`tar_writer`]).

pub mod background;
pub mod fs;
pub mod process_group;
pub mod publish;
pub mod render;
pub mod tar_writer;
pub mod task;
pub mod tree_sync;

pub use crate::error::IoContext;
