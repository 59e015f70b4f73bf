//! The embedded local backends: sandboxes on this host, a directory publisher and a list
//! job source. They are what the docs, demos and most tests use; everything runs offline.

pub mod dir_jobs;
pub mod jobs;
pub mod machine;
pub mod mirror;
mod processes;
pub mod provider;
pub mod publisher;

pub use dir_jobs::DirJobSource;
pub use jobs::{ListJobSource, DEFAULT_LEASE_TTL};
pub use machine::LocalMachine;
pub use processes::kill_machine_processes;
pub use provider::LocalProvider;
pub use publisher::DirPublisher;
