//! # hgauto
//!
//! Release engineering and CI automation on remote machines: provision build and test
//! machines, drive them (commands with streamed output and real exit codes, file and tree
//! transfers), publish artifacts idempotently, and never leak a machine.
//!
//! This crate is a facade: everything lives in focused crates and is re-exported here.
//! [`hgauto_core`] (always present) holds the traits, the value types, the error type, the
//! retry policy and the embedded local backend. Remote backends join behind features as
//! they land (`ssh`, `aws`).
//!
//! ```no_run
//! use std::sync::Arc;
//! use hgauto::{with_machines, Command, LocalProvider, MachineSpec, RemoteMachine};
//!
//! # async fn demo() -> hgauto::Result<()> {
//! let provider = Arc::new(LocalProvider::from_env()?);
//! with_machines(provider, &MachineSpec::linux(), 2, |machines| async move {
//!     for m in &machines {
//!         let out = m.exec(&Command::new("uname").arg("-a")).await?;
//!         println!("{}: {}", m.id(), out.stdout_str().trim());
//!     }
//!     Ok(())
//! })
//! .await
//! # }
//! ```

#![warn(missing_docs)]
#![warn(unreachable_pub)]

pub use hgauto_core;
pub use hgauto_core::*;

/// SSH machines and the SFTP publisher (feature `ssh`).
#[cfg(feature = "ssh")]
pub use hgauto_ssh as ssh;

/// The AWS backend: EC2 provider, SSM machines, S3 publisher (feature `aws`).
#[cfg(feature = "aws")]
pub use hgauto_aws as aws;

/// The `hgauto` command line (feature `cli`, on by default): what `src/bin/hgauto.rs` and
/// the Python wheel's `hgauto` entry point run.
#[cfg(feature = "cli")]
pub mod cli;

/// The README's examples, compiled as doctests so they stay true (with every feature, as
/// `scripts/test-all` runs them).
#[doc = include_str!("../README.md")]
#[cfg(all(doctest, feature = "aws"))]
pub struct ReadmeDoctests;
