//! Helpers for backend crates (hgauto-ssh, hgauto-aws, and any provider or machine added
//! later), not for programs that use hgauto: pieces every backend would otherwise write
//! again.
//!
//! - [`tree_sync`]: `sync_tree` for any machine that can run POSIX commands, by a remote
//!   manifest and one tar stream of what changed.

pub mod tree_sync;
