//! The embedded local backends: sandboxes on this host, a directory publisher and a list
//! job source. They are what the docs, demos and most tests use; everything runs offline.

pub mod jobs;
pub mod machine;
pub mod mirror;
pub mod provider;
pub mod publisher;

pub use jobs::ListJobSource;
pub use machine::LocalMachine;
pub use provider::{kill_machine_processes, LocalProvider};
pub use publisher::DirPublisher;
