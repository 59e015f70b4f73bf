//! # hgauto-core
//!
//! The heart of hgauto: the four traits every backend implements, the value types they
//! exchange, one error type, one retry policy, and the embedded local backends.
//!
//! - [`RemoteMachine`]: run commands and move files on one machine.
//! - [`ResourceProvider`]: create and destroy machines, with a ledger so nothing leaks.
//! - [`Publisher`]: put artifacts somewhere, idempotently.
//! - [`JobSource`]: where builder agents get work.
//!
//! Why this shape: release scripts must run unchanged on a laptop and in production, so
//! programs hold `Arc<dyn RemoteMachine>` and never know the backend. The local backend
//! ([`LocalProvider`], [`LocalMachine`]) behaves like a remote one (sandboxed home, process
//! groups, ledger), so what works here works on EC2 or over SSH. Cloud SDKs and libssh2 live
//! in their own crates; this one builds fast and runs offline.
//!
//! Backends prove their behaviour with the shared suites in `conformance` (feature
//! `conformance`).

#![warn(missing_docs)]
#![warn(unreachable_pub)]

pub mod agent;
pub mod artifact;
pub mod backend;
pub mod checkout;
pub mod cleanup;
pub mod clock;
mod command;
#[cfg(feature = "conformance")]
pub mod conformance;
pub mod download;
pub mod env;
pub mod error;
mod fanout;
#[cfg(feature = "github")]
pub mod github;
pub mod job;
pub mod job_source;
pub mod keys;
pub mod ledger;
mod lines;
pub mod local;
pub mod machine;
pub mod pipeline;
mod poll;
mod progress;
pub mod provider;
mod publisher;
pub mod pypi;
pub mod redact;
pub mod release;
pub mod retry;
pub mod selfupdate;
pub mod session;
pub mod spec;
pub mod suggest;
pub mod sweep;
pub mod venv;

pub use artifact::Artifact;
pub use checkout::{checkout, CheckoutOptions, CheckoutReport, Vcs, Want};
pub use cleanup::{with_machines, TemporaryMachines};
pub use command::{Command, ExitStatus, LineSink, Output, Platform, Program, Stream};
pub use download::{download, download_many, DownloadOptions, DownloadReport};
pub use error::{ApiErrorClass, Error, Result};
pub use fanout::{fan_out, HostResult};
pub use job::{Job, JobFilter, JobOutcome, Lease, Shard};
pub use job_source::JobSource;
pub use ledger::{Ledger, LedgerRecord};
pub use lines::LineSplitter;
pub use local::{
    DirJobSource, DirPublisher, ListJobSource, LocalMachine, LocalProvider, VcsBranchSource,
};
pub use machine::{RemoteMachine, SyncOptions, SyncReport};
pub use poll::Poll;
pub use progress::StepProgress;
pub use provider::{ManagedResource, PurgeReport, ResourceKind, ResourceProvider};
#[cfg(feature = "mocks")]
pub use publisher::MockPublisher;
pub use publisher::{PublishReport, Publisher};
pub use pypi::{PypiPublisher, PypiPublisherBuilder};
pub use release::{Release, ReleaseReport, SigningKey};
pub use retry::{Jitter, RetryPolicy};
pub use spec::{ImageRecipe, MachineSpec};
pub use venv::{create_virtualenv, Installer, VenvOptions, VenvReport};
