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
//!   are [`Error::Auth`].
//! - Credentials ([`PypiSettings`]) never reach a log line, an error or `Debug` output.

mod credentials;
pub mod dist;
pub mod simple;
mod upload;

use std::collections::HashMap;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::{StreamExt, TryStreamExt};
use reqwest::header::{ACCEPT, CONTENT_TYPE, LOCATION};
use reqwest::{StatusCode, Url};

use crate::artifact::{validate_batch, validate_name, Artifact};
use crate::error::{ApiErrorClass, Error, Result};
use crate::publisher::{PublishReport, Publisher};
use crate::redact::{redact_url, SecretString};
use crate::retry::RetryPolicy;
use crate::task::blocking;

pub use credentials::{PypiSettings, PYPI_UPLOAD_URL, TESTPYPI_UPLOAD_URL, TOKEN_USER};
pub use dist::{inspect, normalize_project, Distribution};
use simple::Listing;
use upload::Uploaded;

/// The largest simple page or error body read (a project with thousands of files).
const MAX_PAGE: usize = 64 * 1024 * 1024;

/// Publishes wheels and sdists to a Python package index (see the [module docs](self)).
#[derive(Debug, Clone)]
pub struct PypiPublisher {
    upload_url: Url,
    index_url: Url,
    username: Option<String>,
    password: Option<SecretString>,
    shown: String,
    retry: RetryPolicy,
    concurrency: usize,
    upload_client: reqwest::Client,
    index_client: reqwest::Client,
}

/// Builds a [`PypiPublisher`]: explicit settings first, then the environment, then
/// `.pypirc` (see [`PypiSettings`]).
#[derive(Debug, Clone, Default)]
pub struct PypiPublisherBuilder {
    settings: PypiSettings,
    index_url: Option<String>,
    retry: Option<RetryPolicy>,
    concurrency: Option<usize>,
    env: Option<HashMap<String, String>>,
}

impl PypiPublisherBuilder {
    /// The upload endpoint (default: `TWINE_REPOSITORY_URL`, the `.pypirc` section's
    /// `repository`, else PyPI's).
    pub fn repository_url(mut self, url: impl Into<String>) -> Self {
        self.settings.repository_url = Some(url.into());
        self
    }

    /// The `.pypirc` section to read (default `TWINE_REPOSITORY`, else `pypi`).
    pub fn repository(mut self, name: impl Into<String>) -> Self {
        self.settings.repository = Some(name.into());
        self
    }

    /// The user name.
    pub fn username(mut self, user: impl Into<String>) -> Self {
        self.settings.username = Some(user.into());
        self
    }

    /// The password.
    pub fn password(mut self, password: impl Into<SecretString>) -> Self {
        self.settings.password = Some(password.into());
        self
    }

    /// An API token: sent as the password of user `__token__`.
    pub fn token(mut self, token: impl Into<SecretString>) -> Self {
        self.settings.username = Some(TOKEN_USER.to_owned());
        self.settings.password = Some(token.into());
        self
    }

    /// The `.pypirc` file to read (default `~/.pypirc`).
    pub fn pypirc(mut self, path: impl Into<std::path::PathBuf>) -> Self {
        self.settings.pypirc = Some(path.into());
        self
    }

    /// The simple index to check for existing files. Default: PyPI's and TestPyPI's own,
    /// else `simple/` under the upload URL (pypiserver); devpi needs `…/+simple/`.
    pub fn index_url(mut self, url: impl Into<String>) -> Self {
        self.index_url = Some(url.into());
        self
    }

    /// The retry policy of uploads and index reads (default [`RetryPolicy::network`]).
    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.retry = Some(policy);
        self
    }

    /// How many files are uploaded at once (default 4).
    pub fn concurrency(mut self, n: usize) -> Self {
        self.concurrency = Some(n.max(1));
        self
    }

    /// Reads `TWINE_*` and `HOME` from `vars` instead of the process environment.
    pub fn environment(mut self, vars: HashMap<String, String>) -> Self {
        self.env = Some(vars);
        self
    }

    /// Resolves the settings and builds the publisher.
    pub fn build(self) -> Result<PypiPublisher> {
        let resolved = match &self.env {
            Some(map) => credentials::resolve(&self.settings, &|k| map.get(k).cloned()),
            None => credentials::resolve(&self.settings, &|k| std::env::var(k).ok()),
        }?;
        let shown = redact_url(resolved.url.as_str());
        let index_url = match &self.index_url {
            Some(text) => {
                let mut u = Url::parse(text).map_err(|e| {
                    Error::invalid(format!("index URL {:?}", redact_url(text)), e.to_string())
                })?;
                if !u.path().ends_with('/') {
                    u.set_path(&format!("{}/", u.path()));
                }
                u
            }
            None => default_index(&resolved.url),
        };
        let client = |redirects| {
            reqwest::Client::builder()
                .connect_timeout(Duration::from_secs(30))
                .read_timeout(Duration::from_secs(300))
                .redirect(redirects)
                .user_agent(concat!("hgauto/", env!("CARGO_PKG_VERSION")))
                .build()
                .map_err(|e| Error::invalid("HTTP client", e.without_url().to_string()))
        };
        Ok(PypiPublisher {
            upload_client: client(reqwest::redirect::Policy::none())?,
            index_client: client(same_origin_redirects())?,
            upload_url: resolved.url,
            index_url,
            username: resolved.username,
            password: resolved.password,
            shown,
            retry: self.retry.unwrap_or_else(RetryPolicy::network),
            concurrency: self.concurrency.unwrap_or(4),
        })
    }
}

/// PyPI's and TestPyPI's simple indexes for their upload endpoints, else `simple/` under
/// the upload URL.
fn default_index(upload: &Url) -> Url {
    let known = match upload.host_str() {
        Some("upload.pypi.org") => Some("https://pypi.org/simple/"),
        Some("test.pypi.org") => Some("https://test.pypi.org/simple/"),
        _ => None,
    };
    if let Some(k) = known.and_then(|k| Url::parse(k).ok()) {
        return k;
    }
    let mut u = upload.clone();
    let base = upload.path().trim_end_matches('/');
    u.set_path(&format!("{base}/simple/"));
    u.set_query(None);
    u
}

/// Follows redirects within one origin only: an index that sends a missing project to
/// another index (pypiserver's fallback to PyPI) does not have it.
fn same_origin_redirects() -> reqwest::redirect::Policy {
    reqwest::redirect::Policy::custom(|attempt| {
        let same = attempt
            .previous()
            .first()
            .is_some_and(|first| first.origin() == attempt.url().origin());
        if !same || attempt.previous().len() > 10 {
            attempt.stop()
        } else {
            attempt.follow()
        }
    })
}

/// The normalised project a file name belongs to, without reading the file.
fn project_of(name: &str) -> Result<String> {
    let project = if let Some(stem) = name.strip_suffix(".whl") {
        stem.split('-').next()
    } else {
        name.strip_suffix(".tar.gz")
            .or_else(|| name.strip_suffix(".zip"))
            .and_then(|stem| stem.rsplit_once('-'))
            .map(|(project, _)| project)
    };
    project
        .filter(|p| !p.is_empty())
        .map(normalize_project)
        .ok_or_else(|| {
            Error::invalid(
                format!("distribution {name}"),
                "is not a wheel (.whl) or an sdist (.tar.gz, .zip)",
            )
        })
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

    /// The files the index lists for `project` (empty when it has none).
    async fn listing(&self, project: &str) -> Result<(Url, Listing)> {
        let url = self
            .index_url
            .join(&format!("{project}/"))
            .map_err(|e| Error::invalid(format!("project name {project:?}"), e.to_string()))?;
        let what = format!("read the simple page of {project}");
        self.retry
            .run(&what, |_| async {
                let req = self.index_client.get(url.clone()).header(ACCEPT, simple::ACCEPT);
                let resp = self
                    .authorize(req, &url)
                    .send()
                    .await
                    .map_err(|e| self.connection_error(e))?;
                let status = resp.status();
                let page_url = resp.url().clone();
                if status == StatusCode::NOT_FOUND || status.is_redirection() {
                    if status.is_redirection() {
                        tracing::debug!(project, index = %self.index_url, "the index sends this project elsewhere; it has no file of it");
                    }
                    return Ok((page_url, Listing::new()));
                }
                if matches!(status, StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN) {
                    return Err(Error::Auth {
                        machine: redact_url(self.index_url.as_str()),
                        user: self.username.clone().unwrap_or_else(|| "(anonymous)".into()),
                        reason: format!("{status} reading the simple index"),
                    });
                }
                let content_type = resp
                    .headers()
                    .get(CONTENT_TYPE)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("text/html")
                    .to_owned();
                let body = read_bounded(resp).await.map_err(|e| self.connection_error(e))?;
                if !status.is_success() {
                    return Err(self.api_error("read the simple index", project.to_owned(), status, &body));
                }
                let listing = simple::parse(&content_type, &body).map_err(|reason| {
                    self.api_error_text("read the simple index", project, reason)
                })?;
                Ok((page_url, listing))
            })
            .await
    }

    fn api_error_text(&self, action: &'static str, project: &str, reason: String) -> Error {
        Error::Api {
            service: "pypi",
            action,
            resource: project.to_owned(),
            class: ApiErrorClass::Invalid,
            code: "unreadable page".into(),
            message: reason.into(),
            source: None,
        }
    }

    /// Whether `a` is listed with its content, given the project's listing.
    async fn presence(&self, page: &Url, listing: &Listing, a: &Artifact) -> Result<bool> {
        let Some(listed) = listing.get(&a.name) else {
            return Ok(false);
        };
        let sha256 = match &listed.sha256 {
            Some(h) => h.clone(),
            None => self.remote_sha256(page, &listed.url).await?,
        };
        if sha256 == a.sha256 {
            Ok(true)
        } else {
            Err(Error::Conflict {
                what: format!("{} on {}", a.name, self.shown),
                reason: format!("the index has it with sha256 {sha256}, not {}", a.sha256),
            })
        }
    }

    /// The sha256 of a listed file that the page gives no digest for, by downloading it.
    async fn remote_sha256(&self, page: &Url, href: &str) -> Result<String> {
        use sha2::{Digest, Sha256};
        let url = page
            .join(href)
            .map_err(|e| Error::invalid(format!("link {:?}", redact_url(href)), e.to_string()))?;
        self.retry
            .run("download a listed file to hash it", |_| async {
                let req = self.index_client.get(url.clone());
                let resp = self
                    .authorize(req, &url)
                    .send()
                    .await
                    .map_err(|e| self.connection_error(e))?;
                let status = resp.status();
                if !status.is_success() {
                    return Err(self.api_error("download", redact_url(url.as_str()), status, ""));
                }
                let mut hasher = Sha256::new();
                let mut stream = resp.bytes_stream();
                while let Some(chunk) = stream.next().await {
                    hasher.update(chunk.map_err(|e| self.connection_error(e))?);
                }
                Ok(hex::encode(hasher.finalize()))
            })
            .await
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

    /// Uploads one distribution, with retries; `true` if this call stored it.
    async fn upload(&self, d: &Distribution) -> Result<bool> {
        let name = &d.artifact.name;
        let outcome = self
            .retry
            .run(&format!("upload {name}"), |_| async {
                let tampered = Arc::new(AtomicBool::new(false));
                let form = upload::form(d, tampered.clone())?;
                let req = self
                    .upload_client
                    .post(self.upload_url.clone())
                    .multipart(form);
                let sent = self.authorize(req, &self.upload_url).send().await;
                if tampered.load(std::sync::atomic::Ordering::SeqCst) {
                    return Err(Error::Integrity {
                        what: format!(
                            "{} (changed while it was uploaded)",
                            d.artifact.path.display()
                        ),
                        expected: d.artifact.sha256.clone(),
                        actual: "other content".into(),
                    });
                }
                let resp = sent.map_err(|e| self.connection_error(e))?;
                let status = resp.status();
                let location = resp
                    .headers()
                    .get(LOCATION)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned);
                let body = read_bounded(resp).await.unwrap_or_default();
                upload::classify(
                    status,
                    location.as_deref(),
                    &body,
                    name,
                    &self.shown,
                    self.username.as_deref(),
                )
            })
            .await?;
        match outcome {
            Uploaded::Stored => {
                tracing::info!(artifact = %name, index = %self.shown, "uploaded");
                Ok(true)
            }
            // Ours from an earlier attempt whose answer was lost, or someone else's.
            Uploaded::NameTaken => {
                let (url, listing) = self.listing(&d.project).await?;
                if self.presence(&url, &listing, &d.artifact).await? {
                    Ok(false)
                } else {
                    Err(Error::Conflict {
                        what: format!("{name} on {}", self.shown),
                        reason: "the index refuses the name (it exists, or was used before \
                                 and deleted), and does not list this content under it"
                            .into(),
                    })
                }
            }
        }
    }
}

/// A response body as text, at most [`MAX_PAGE`] bytes of it.
async fn read_bounded(resp: reqwest::Response) -> std::result::Result<String, reqwest::Error> {
    let mut out = Vec::new();
    let mut stream = resp.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk?;
        let room = MAX_PAGE.saturating_sub(out.len());
        out.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if room <= chunk.len() {
            break;
        }
    }
    Ok(String::from_utf8_lossy(&out).into_owned())
}

#[async_trait]
impl Publisher for PypiPublisher {
    fn destination(&self) -> String {
        format!("pypi:{}", self.shown)
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
        // Futures made up front (not in a closure over references), so the stream holds no
        // higher-ranked borrow the async trait cannot name.
        let uploads: Vec<_> = dists
            .iter()
            .zip(&present)
            .filter(|(_, p)| !**p)
            .map(|(d, _)| self.upload(d))
            .collect();
        let mut stored: std::collections::VecDeque<bool> = futures::stream::iter(uploads)
            .buffered(self.concurrency)
            .try_collect()
            .await?;
        let mut report = PublishReport::default();
        for (d, p) in dists.iter().zip(&present) {
            let name = d.artifact.name.clone();
            let uploaded = !*p && stored.pop_front().unwrap_or(false);
            if uploaded {
                report.published.push(name);
            } else {
                report.already_present.push(name);
            }
        }
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_index_follows_the_upload_url() {
        let idx = |u: &str| default_index(&Url::parse(u).unwrap()).to_string();
        assert_eq!(idx(PYPI_UPLOAD_URL), "https://pypi.org/simple/");
        assert_eq!(idx(TESTPYPI_UPLOAD_URL), "https://test.pypi.org/simple/");
        assert_eq!(
            idx("http://127.0.0.1:8080/"),
            "http://127.0.0.1:8080/simple/"
        );
        assert_eq!(
            idx("http://127.0.0.1:8080/prefix"),
            "http://127.0.0.1:8080/prefix/simple/"
        );
    }

    #[test]
    fn project_from_file_names() {
        assert_eq!(project_of("My_Pkg-1.0-py3-none-any.whl").unwrap(), "my-pkg");
        assert_eq!(project_of("my-pkg-1.0.tar.gz").unwrap(), "my-pkg");
        assert_eq!(project_of("my_pkg-1.0.zip").unwrap(), "my-pkg");
        assert!(project_of("notes.txt").is_err());
        assert!(project_of("-1.0.tar.gz").is_err());
    }

    #[test]
    fn debug_output_hides_the_password() {
        let p = PypiPublisher::builder()
            .repository_url("http://127.0.0.1:9/")
            .username("alice")
            .password("hunter2-very-secret")
            .environment(HashMap::new())
            .build()
            .unwrap();
        let shown = format!("{p:?} {}", p.destination());
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("alice"), "{shown}");
    }
}
