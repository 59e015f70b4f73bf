//! [`PypiPublisher`]: uploads wheels and sdists to PyPI, TestPyPI, pypiserver, devpi or any
//! index that speaks the upload protocol twine uses.
//!
//! - Every file is inspected before any request: a wheel or sdist whose file name agrees
//!   with its metadata, with a Name and a Version, and whose content still matches the
//!   artifact's sha256. Anything else is [`Error::InvalidInput`] naming the file.
//! - What is already there comes from the index's simple page (PEP 691 JSON, else PEP 503
//!   HTML): the same sha256 is `already_present`, another is [`Error::Conflict`], and nothing
//!   is uploaded when any file of the batch conflicts. An index that answers an upload with
//!   "already exists" (PyPI's 400, pypiserver's 409) is asked again the same way.
//! - Uploads are streamed from disk and hashed on the way, retried on 5xx, 429 and
//!   connection failures with [`RetryPolicy::network`], never on another 4xx. 401 and 403
//!   are [`Error::Auth`], also when the server closed the connection before its answer
//!   could be read (a request without a file asks again).
//! - An index that keeps the part it received of a cut upload (pypiserver checks no
//!   digest) makes the retry find the name taken: that is [`Error::Integrity`] saying so,
//!   for someone with access to the index to delete.
//! - Credentials ([`PypiSettings`]) never reach a log line, an error or `Debug` output.

mod builder;
mod credentials;
pub mod dist;
mod index;
pub mod simple;
mod upload;

use std::collections::HashMap;

use async_trait::async_trait;
use futures::{StreamExt, TryStreamExt};
use reqwest::{StatusCode, Url};

use hgauto_core::artifact::{validate_batch, validate_name, Artifact};
use hgauto_core::backend::publish::upload_missing;
use hgauto_core::backend::task::blocking;
use hgauto_core::error::{ApiErrorClass, Error, Result};
use hgauto_core::publisher::{PublishReport, Publisher};
use hgauto_core::redact::SecretString;
use hgauto_core::retry::RetryPolicy;

pub use builder::PypiPublisherBuilder;
pub use credentials::{PypiSettings, PYPI_UPLOAD_URL, TESTPYPI_UPLOAD_URL, TOKEN_USER};
pub use dist::{inspect, normalize_project, Distribution};
use index::project_of;
use simple::Listing;

/// Publishes wheels and sdists to a Python package index (see the [module docs](self)).
#[derive(Debug, Clone)]
pub struct PypiPublisher {
    upload_url: Url,
    index_url: Url,
    username: Option<String>,
    password: Option<SecretString>,
    shown: String,
    /// `pypi:` and `shown`: the publisher's name.
    name: String,
    retry: RetryPolicy,
    concurrency: usize,
    upload_client: reqwest::Client,
    index_client: reqwest::Client,
}

impl PypiPublisher {
    /// A builder; see [`PypiPublisherBuilder`].
    pub fn builder() -> PypiPublisherBuilder {
        PypiPublisherBuilder::default()
    }

    /// A publisher to `repository_url` with credentials from the environment or `.pypirc`.
    pub fn new(repository_url: impl Into<String>) -> Result<Self> {
        Self::builder().repository_url(repository_url).build()
    }

    /// The upload endpoint, without credentials.
    pub fn upload_url(&self) -> &str {
        self.upload_url.as_str()
    }

    /// The simple index read by [`exists`](Publisher::exists).
    pub fn index_url(&self) -> &str {
        self.index_url.as_str()
    }

    /// The user name uploads are sent as, if any.
    pub fn username(&self) -> Option<&str> {
        self.username.as_deref()
    }

    fn api_error(
        &self,
        action: &'static str,
        resource: String,
        status: StatusCode,
        body: &str,
    ) -> Error {
        let class = if status == StatusCode::TOO_MANY_REQUESTS {
            ApiErrorClass::Throttled
        } else if status.is_server_error() {
            ApiErrorClass::Unavailable
        } else {
            ApiErrorClass::Invalid
        };
        Error::Api {
            service: "pypi",
            action,
            resource,
            class,
            code: format!("HTTP {}", status.as_u16()).into(),
            message: upload::summary(body).into(),
            source: None,
        }
    }

    fn connection_error(&self, e: reqwest::Error) -> Error {
        Error::Connection {
            machine: self.shown.clone(),
            may_have_run: false,
            source: Box::new(e.without_url()),
        }
    }

    fn authorize(&self, req: reqwest::RequestBuilder, url: &Url) -> reqwest::RequestBuilder {
        // Credentials go to the upload endpoint's origin only (PyPI's simple index is on
        // another host and needs none).
        match (&self.username, &self.password) {
            (Some(u), Some(p)) if url.origin() == self.upload_url.origin() => {
                req.basic_auth(u, Some(p.expose()))
            }
            _ => req,
        }
    }

    /// Checks every distribution of a batch: inspected (bad input fails before any
    /// request), then looked up on the index, one simple page per project.
    async fn check_batch(&self, artifacts: &[Artifact]) -> Result<(Vec<Distribution>, Vec<bool>)> {
        validate_batch(artifacts)?;
        // Hashing and reading metadata is CPU work: one blocking task per file, a core each.
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        let inspections: Vec<_> = artifacts
            .iter()
            .cloned()
            .map(|a| blocking(move || inspect(&a)))
            .collect();
        let dists: Vec<Distribution> = futures::stream::iter(inspections)
            .buffered(cores)
            .try_collect()
            .await?;
        let mut pages: HashMap<String, (Url, Listing)> = HashMap::new();
        let mut present = Vec::with_capacity(dists.len());
        for d in &dists {
            if !pages.contains_key(&d.project) {
                let page = self.listing(&d.project).await?;
                pages.insert(d.project.clone(), page);
            }
            let (url, listing) = &pages[&d.project];
            present.push(self.presence(url, listing, &d.artifact).await?);
        }
        Ok((dists, present))
    }
}

/// The files a package index takes: wheels and sdists (`.tar.gz`, and the old `.zip`).
pub const DISTRIBUTION_FILES: &[&str] = &["*.whl", "*.tar.gz", "*.zip"];

#[async_trait]
impl Publisher for PypiPublisher {
    fn name(&self) -> &str {
        &self.name
    }

    fn default_filter(&self) -> &'static [&'static str] {
        DISTRIBUTION_FILES
    }

    async fn exists(&self, artifact: &Artifact) -> Result<bool> {
        validate_name(&artifact.name)?;
        let project = project_of(&artifact.name)?;
        let (url, listing) = self.listing(&project).await?;
        self.presence(&url, &listing, artifact).await
    }

    async fn check(&self, artifacts: &[Artifact]) -> Result<Vec<bool>> {
        self.check_batch(artifacts)
            .await
            .map(|(_, present)| present)
    }

    async fn publish(&self, artifacts: &[Artifact]) -> Result<PublishReport> {
        let (dists, present) = self.check_batch(artifacts).await?;
        upload_missing(
            self.name(),
            &dists,
            &present,
            |d| &d.artifact.name,
            self.concurrency,
            |d| self.upload(d),
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_hides_the_password() {
        let p = PypiPublisher::builder()
            .repository_url("http://127.0.0.1:9/")
            .username("alice")
            .password("hunter2-very-secret")
            .environment(HashMap::new())
            .build()
            .unwrap();
        let shown = format!("{p:?} {}", p.name());
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("alice"), "{shown}");
    }
}
