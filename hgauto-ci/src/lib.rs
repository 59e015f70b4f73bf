//! # hgauto-ci
//!
//! The helpers a CI script calls between machines: [`download`] (with checksums, mirrors,
//! resumption and safe extraction of zip, tar, gzip, bzip2, xz and zstd archives),
//! [`checkout()`] (git and Mercurial trees from a pooled store, adopting a clone made by
//! hand) and [`create_virtualenv`]. The compression crates live here, not in the core.

#![warn(missing_docs)]
#![warn(unreachable_pub)]

pub mod checkout;
pub mod download;
pub mod progress;
pub mod venv;

pub use checkout::{checkout, CheckoutOptions, CheckoutReport, Vcs, Want};
pub use download::{download, download_many, DownloadOptions, DownloadReport};
pub use progress::StepProgress;
pub use venv::{create_virtualenv, Installer, VenvOptions, VenvReport};
