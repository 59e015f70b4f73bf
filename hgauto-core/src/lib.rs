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
//! Backends prove their behaviour with the shared suites of `hgauto-testkit`, a
//! dev-dependency. The engines built on these traits live in crates of their own
//! (`hgauto-ci`, `hgauto-release`, `hgauto-agent`, `hgauto-pipeline`).

#![warn(missing_docs)]
#![warn(unreachable_pub)]

pub mod artifact;
pub mod backend;
pub mod cleanup;
pub mod clock;
pub mod command;
pub mod env;
pub mod error;
pub mod exit_status;
pub mod fanout;
pub mod job;
pub mod job_source;
pub mod keys;
pub mod ledger;
pub mod lines;
pub mod local;
pub mod machine;
pub mod provider;
pub mod publisher;
pub mod redact;
pub mod retry;
pub mod session;
pub mod spec;
pub mod suggest;
pub mod sweep;
pub mod text;
pub mod wait_for;

pub use artifact::Artifact;
pub use cleanup::{with_machines, TemporaryMachines};
pub use command::{Command, LineSink, Output, Platform, Program, Stream};
pub use error::{ApiErrorClass, Error, Result};
pub use exit_status::ExitStatus;
pub use fanout::{fan_out, HostResult};
pub use job::{Job, JobFilter, JobOutcome, Lease, Shard};
pub use job_source::{Depth, JobSource};
pub use ledger::{Ledger, LedgerRecord};
pub use lines::LineSplitter;
pub use local::{DirJobSource, DirPublisher, ListJobSource, LocalMachine, LocalProvider};
pub use machine::{RemoteMachine, SyncOptions, SyncReport};
pub use provider::{ManagedResource, PurgeReport, ResourceKind, ResourceProvider};
#[cfg(feature = "mocks")]
pub use publisher::MockPublisher;
pub use publisher::{PublishReport, Publisher};
pub use retry::{Jitter, RetryPolicy};
pub use spec::{ImageRecipe, MachineSpec};
pub use wait_for::WaitFor;
