//! # hgauto
//!
//! Release engineering and CI automation on remote machines: provision build and test
//! machines, drive them (commands with streamed output and real exit codes, file and tree
//! transfers), publish artifacts idempotently, and never leak a machine.
//!
//! This crate is a facade: everything lives in focused crates and is re-exported here, one
//! feature per crate. `hgauto-core` (always present) holds the traits, the value types, the
//! error type, the retry policy and the embedded local backend. `release` and `pipeline` (the
//! default: what the local demo needs) add those engines; `ci`, `pypi`, `agent`, `github`,
//! `ssh` and `aws` add the others and the remote backends. The `hgauto` command is the
//! `hgauto-cli` crate.
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

pub use hgauto_core::*;

/// CI helpers: download, checkout, virtualenvs (feature `ci`).
#[cfg(feature = "ci")]
pub use hgauto_ci::{
    checkout, create_virtualenv, download, download_many, progress, venv, CheckoutOptions,
    CheckoutReport, DownloadOptions, DownloadReport, Installer, StepProgress, Vcs, VenvOptions,
    VenvReport, Want,
};

/// Releases: expected artifacts, checksums, signatures, every destination (feature
/// `release`).
#[cfg(feature = "release")]
pub use hgauto_release as release;
/// The PyPI publisher (feature `pypi`).
#[cfg(feature = "pypi")]
pub use hgauto_release::{pypi, PypiPublisher, PypiPublisherBuilder};
#[cfg(feature = "release")]
pub use hgauto_release::{Release, ReleaseReport, SigningKey};

/// Builder agents (feature `agent`).
#[cfg(feature = "agent")]
pub use hgauto_agent as agent;
#[cfg(feature = "agent")]
pub use hgauto_agent::{selfupdate, vcs_jobs, VcsBranchSource};

/// GitHub pull requests as jobs (feature `github`).
#[cfg(feature = "github")]
pub use hgauto_agent::github;

/// Pipelines (feature `pipeline`).
#[cfg(feature = "pipeline")]
pub use hgauto_pipeline as pipeline;

/// SSH machines and the SFTP publisher (feature `ssh`).
#[cfg(feature = "ssh")]
pub use hgauto_ssh as ssh;

/// The AWS backend: EC2 provider, SSM machines, S3 publisher (feature `aws`).
#[cfg(feature = "aws")]
pub use hgauto_aws as aws;

/// The README's examples, compiled as doctests so they stay true (with every feature, as
/// `scripts/test-all` runs them).
#[doc = include_str!("../README.md")]
#[cfg(all(
    doctest,
    feature = "aws",
    feature = "ci",
    feature = "pypi",
    feature = "github"
))]
pub struct ReadmeDoctests;
