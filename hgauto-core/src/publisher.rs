//! The [`Publisher`] trait: puts artifacts somewhere, idempotently.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::artifact::{validate_batch, Artifact};
use crate::error::Result;

/// Publishes artifacts to a destination (a directory, a PyPI index, an SFTP server, S3).
///
/// # Contract
/// - Idempotent: publishing an artifact that is already there with the same sha256 is a
///   no-op, reported as `already_present`. A *different* file under the same name is
///   [`Error::Conflict`](crate::Error::Conflict); nothing is overwritten.
/// - All-or-nothing checks: `publish` checks every artifact for conflicts before it uploads
///   any of them.
/// - No reader ever sees a partial file: uploads land by rename (or the destination's
///   atomic equivalent), and content is verified against the artifact's sha256.
#[cfg_attr(feature = "mocks", mockall::automock)]
#[async_trait]
pub trait Publisher: Send + Sync {
    /// The destination's name, as logs and release results show it ("dir:/srv/dist",
    /// "sftp://user@host:22/path"). Fixed when the publisher is made.
    fn name(&self) -> &str;

    /// The files this destination takes when a release names no filter of its own (glob
    /// patterns on file names; empty, the default: every file). A package index takes only
    /// distributions, never `SHA256SUMS` or a signature.
    fn default_filter(&self) -> &'static [&'static str] {
        &[]
    }

    /// `Ok(true)` when an identical artifact is already published, `Ok(false)` when the name
    /// is free, [`Error::Conflict`](crate::Error::Conflict) when the name holds other content.
    async fn exists(&self, artifact: &Artifact) -> Result<bool>;

    /// Checks a whole batch as [`publish`](Self::publish) would before uploading, and
    /// changes nothing: per artifact (in order), whether it is already published. Bad input
    /// fails before any request; a conflict or an unreachable destination is an error.
    ///
    /// The default validates the names and calls [`exists`](Self::exists) for each.
    async fn check(&self, artifacts: &[Artifact]) -> Result<Vec<bool>> {
        validate_batch(artifacts)?;
        let mut present = Vec::with_capacity(artifacts.len());
        for a in artifacts {
            present.push(self.exists(a).await?);
        }
        Ok(present)
    }

    /// `Ok(true)` when a file of this name is published, whatever its content: what a
    /// pipeline's "skip if published" asks, knowing only a name.
    ///
    /// The default asks [`exists`](Self::exists) with no digest: by the contract, a name
    /// that holds a file answers with a conflict.
    async fn name_taken(&self, name: &str) -> Result<bool> {
        let probe = Artifact {
            path: std::path::PathBuf::new(),
            name: name.to_owned(),
            sha256: String::new(),
            size: 0,
        };
        match self.exists(&probe).await {
            Ok(present) => Ok(present),
            Err(crate::Error::Conflict { .. }) => Ok(true),
            Err(e) => Err(e),
        }
    }

    /// Publishes `artifacts`, skipping those already present.
    async fn publish(&self, artifacts: &[Artifact]) -> Result<PublishReport>;
}

/// What a [`Publisher::publish`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublishReport {
    /// Names uploaded by this call.
    pub published: Vec<String>,
    /// Names that were already there with the same content.
    pub already_present: Vec<String>,
}
