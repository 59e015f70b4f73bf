//! # hgauto-testkit
//!
//! Shared behaviour suites, written once and run against every backend, and the fixtures
//! the tests of every crate start on loopback (moto, pypiserver, nginx, a fault proxy, a
//! fake GitHub). A dev-dependency only.
//!
//! Each suite is a list of plain async functions taking a trait object, so a backend's
//! test file is a few lines: build the backend, call `run_all`. A failing check panics
//! with the machine id and what differed.

pub mod child;
pub mod dists;
#[cfg(feature = "aws")]
pub mod ec2;
#[cfg(feature = "github")]
pub mod fake_github;
pub mod fault_proxy;
pub mod fixtures;
pub mod job_source;
pub mod machine;
mod machine_files;
mod machine_run;
pub mod moto;
pub mod ports;
pub mod provider;
pub mod publisher;
pub mod pypiserver;
pub mod support;
