//! `hgauto.PypiPublisher`, `hgauto.Release` and what a release reports.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use pyo3::prelude::*;

use hgauto_core::redact::SecretString;
use hgauto_core::{Error, Publisher};
use hgauto_release::PypiPublisher;
use hgauto_release::{Expected, Release, ReleaseReport, SigningKey, Status};

use crate::convert::PyRetryPolicy;
use crate::errors::IntoPyResult;
use crate::publisher::{PyArtifact, PyPublisher};
use crate::runtime::wait;

/// Uploads wheels and sdists to PyPI, TestPyPI, pypiserver, devpi or any index that speaks
/// twine's upload protocol. Settings not given come from `TWINE_USERNAME`, `TWINE_PASSWORD`
/// and `TWINE_REPOSITORY_URL`, then from a `.pypirc` section.
#[pyclass(extends = PyPublisher, frozen, module = "hgauto", name = "PypiPublisher")]
pub struct PyPypiPublisher {
    upload_url: String,
    index_url: String,
}

#[pymethods]
impl PyPypiPublisher {
    #[new]
    #[pyo3(signature = (
        repository_url=None, *, repository=None, username=None, password=None, token=None,
        pypirc=None, index_url=None, retry=None, concurrency=None
    ))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        repository_url: Option<String>,
        repository: Option<String>,
        username: Option<String>,
        password: Option<String>,
        token: Option<String>,
        pypirc: Option<PathBuf>,
        index_url: Option<String>,
        retry: Option<PyRef<'_, PyRetryPolicy>>,
        concurrency: Option<usize>,
    ) -> PyResult<PyClassInitializer<Self>> {
        let mut b = PypiPublisher::builder();
        if let Some(u) = repository_url {
            b = b.repository_url(u);
        }
        if let Some(r) = repository {
            b = b.repository(r);
        }
        if let Some(u) = username {
            b = b.username(u);
        }
        if let Some(p) = password {
            b = b.password(SecretString::new(p));
        }
        if let Some(t) = token {
            b = b.token(SecretString::new(t));
        }
        if let Some(p) = pypirc {
            b = b.pypirc(p);
        }
        if let Some(i) = index_url {
            b = b.index_url(i);
        }
        if let Some(r) = retry {
            b = b.retry(r.inner.clone());
        }
        if let Some(n) = concurrency {
            b = b.concurrency(n);
        }
        let p = b.build().py_err(py)?;
        let this = PyPypiPublisher {
            upload_url: p.upload_url().to_owned(),
            index_url: p.index_url().to_owned(),
        };
        Ok(PyClassInitializer::from(PyPublisher { inner: Arc::new(p) }).add_subclass(this))
    }

    /// The upload endpoint (without credentials).
    #[getter]
    fn upload_url(&self) -> &str {
        &self.upload_url
    }

    /// The simple index `exists` reads.
    #[getter]
    fn index_url(&self) -> &str {
        &self.index_url
    }
}

/// An expected artifact: a name, a glob pattern (at least one match), or `(pattern, count)`.
#[derive(FromPyObject)]
pub(crate) enum ExpectedLike {
    Counted(String, usize),
    Text(String),
}

struct DestinationSpec {
    name: String,
    publisher: Arc<dyn Publisher>,
    filter: Vec<String>,
}

struct Plan {
    destinations: Vec<DestinationSpec>,
    skip: Vec<String>,
}

/// A release: every expected artifact in `dir` is checked, every destination is checked,
/// then each destination gets the files its filter takes, with `SHA256SUMS` (and, with a
/// key, minisign signatures) beside them.
#[pyclass(frozen, module = "hgauto", name = "Release")]
pub struct PyRelease {
    dir: PathBuf,
    expected: Vec<Expected>,
    allow_unexpected: bool,
    checksums: bool,
    strict: bool,
    key: Option<Arc<SigningKey>>,
    plan: Mutex<Plan>,
}

#[pymethods]
impl PyRelease {
    /// `expect`: names, glob patterns, or `(pattern, count)` pairs. `sign_key`: a minisign
    /// secret key file (mode 0600), with `sign_key_password` if it is encrypted;
    /// `sign_key_env`: the name of an environment variable holding the key instead.
    #[new]
    #[pyo3(signature = (
        dir, expect, *, allow_unexpected=false, checksums=true, sign_key=None,
        sign_key_password=None, sign_key_env=None, strict=false
    ))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        dir: PathBuf,
        expect: Vec<ExpectedLike>,
        allow_unexpected: bool,
        checksums: bool,
        sign_key: Option<PathBuf>,
        sign_key_password: Option<String>,
        sign_key_env: Option<String>,
        strict: bool,
    ) -> PyResult<Self> {
        let expected = expect
            .into_iter()
            .map(|e| match e {
                ExpectedLike::Counted(p, n) => Expected::pattern(p, Some(n)),
                ExpectedLike::Text(p) => Expected::pattern(p, None),
            })
            .collect::<hgauto_core::Result<Vec<_>>>()
            .py_err(py)?;
        let password = sign_key_password.map(SecretString::new);
        let key = match (sign_key, sign_key_env) {
            (Some(_), Some(_)) => Err(Error::invalid(
                "signing key",
                "give sign_key or sign_key_env, not both",
            )),
            (Some(path), None) => SigningKey::from_file(path, password).map(Some),
            (None, Some(var)) => SigningKey::from_env_with_password(&var, password).map(Some),
            (None, None) => Ok(None),
        }
        .py_err(py)?;
        Ok(PyRelease {
            dir,
            expected,
            allow_unexpected,
            checksums,
            strict,
            key: key.map(Arc::new),
            plan: Mutex::new(Plan {
                destinations: Vec::new(),
                skip: Vec::new(),
            }),
        })
    }

    /// Publishes to `publisher`, called `name` in `skip` and the report, the files matching
    /// one of `filter`'s glob patterns (empty: the publisher's own, so PyPI gets only the
    /// distributions, any other destination every file). Returns the release.
    #[pyo3(signature = (name, publisher, filter=Vec::new()))]
    fn publish_to<'py>(
        slf: Bound<'py, Self>,
        name: String,
        publisher: PyRef<'_, PyPublisher>,
        filter: Vec<String>,
    ) -> Bound<'py, Self> {
        lock(&slf.get().plan).destinations.push(DestinationSpec {
            name,
            publisher: publisher.inner.clone(),
            filter,
        });
        slf
    }

    /// Switches destination `name` off for the next runs. Returns the release.
    fn skip<'py>(slf: Bound<'py, Self>, name: String) -> Bound<'py, Self> {
        lock(&slf.get().plan).skip.push(name);
        slf
    }

    /// Runs the release. Raises (with nothing uploaded) for a missing or unexpected file, a
    /// conflict or bad input anywhere; otherwise returns the report, whose `ok` says whether
    /// every destination got everything. `report_path`: also write the report there as JSON.
    #[pyo3(signature = (report_path=None))]
    fn run(&self, py: Python<'_>, report_path: Option<PathBuf>) -> PyResult<PyReleaseReport> {
        let release = self.build(report_path).py_err(py)?;
        let report = wait(py, async move { release.run().await })?.py_err(py)?;
        Ok(PyReleaseReport { inner: report })
    }
}

impl PyRelease {
    fn build(&self, report_path: Option<PathBuf>) -> hgauto_core::Result<Release> {
        let plan = lock(&self.plan);
        let mut r = Release::new(&self.dir)
            .expect_all(self.expected.clone())
            .allow_unexpected(self.allow_unexpected)
            .checksums(self.checksums)
            .strict(self.strict);
        if let Some(key) = &self.key {
            r = r.sign_with_shared(key.clone());
        }
        for d in &plan.destinations {
            let filter: Vec<&str> = d.filter.iter().map(String::as_str).collect();
            r = r.publish_to(d.name.clone(), d.publisher.clone(), &filter)?;
        }
        for s in &plan.skip {
            r = r.skip(s.clone());
        }
        if let Some(p) = report_path {
            r = r.report_to(p);
        }
        Ok(r)
    }
}

fn lock(m: &Mutex<Plan>) -> std::sync::MutexGuard<'_, Plan> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// One (artifact, destination) pair of a release.
#[pyclass(frozen, get_all, module = "hgauto")]
pub struct ReleaseEntry {
    /// The artifact's name.
    artifact: String,
    /// The destination's name.
    destination: String,
    /// `published`, `already_present`, `skipped_by_filter`, `skipped` or `failed`.
    status: &'static str,
    /// Why it failed.
    error: Option<String>,
}

#[pymethods]
impl ReleaseEntry {
    fn __repr__(&self) -> String {
        format!(
            "ReleaseEntry(artifact={:?}, destination={:?}, status={:?})",
            self.artifact, self.destination, self.status
        )
    }
}

/// What a release did: one status per (artifact, destination).
#[pyclass(frozen, module = "hgauto", name = "ReleaseReport")]
pub struct PyReleaseReport {
    inner: ReleaseReport,
}

fn entry(e: &hgauto_release::Entry) -> ReleaseEntry {
    ReleaseEntry {
        artifact: e.artifact.clone(),
        destination: e.destination.clone(),
        status: Status::as_str(e.status),
        error: e.error.clone(),
    }
}

#[pymethods]
impl PyReleaseReport {
    /// True when nothing failed.
    #[getter]
    fn ok(&self) -> bool {
        self.inner.ok()
    }

    /// Every (artifact, destination) pair.
    #[getter]
    fn entries(&self) -> Vec<ReleaseEntry> {
        self.inner.entries.iter().map(entry).collect()
    }

    /// The pairs that failed.
    #[getter]
    fn failures(&self) -> Vec<ReleaseEntry> {
        self.inner.failures().map(entry).collect()
    }

    /// Every file the release covers, generated ones (SHA256SUMS, signatures) last.
    #[getter]
    fn artifacts(&self) -> Vec<PyArtifact> {
        self.inner
            .artifacts
            .iter()
            .map(|a| PyArtifact { inner: a.clone() })
            .collect()
    }

    /// Files no expectation matched, left alone.
    #[getter]
    fn ignored(&self) -> Vec<String> {
        self.inner.ignored.clone()
    }

    /// The status of `artifact` at `destination`, or None.
    fn status(&self, artifact: &str, destination: &str) -> Option<&'static str> {
        self.inner.status(artifact, destination).map(Status::as_str)
    }

    /// The report as JSON.
    fn to_json(&self) -> String {
        self.inner.to_json()
    }

    fn __repr__(&self) -> String {
        format!(
            "ReleaseReport(ok={}, entries={})",
            self.inner.ok(),
            self.inner.entries.len()
        )
    }
}
