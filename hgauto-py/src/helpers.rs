//! The CI helpers: `hgauto.download`, `hgauto.checkout`, `hgauto.create_virtualenv`.
//! Keyword arguments mirror the Rust option structs field for field.

use std::path::PathBuf;

use pyo3::prelude::*;

use hgauto_ci::download::{ArchiveFormat, ExtractLimits};
use hgauto_ci::{
    CheckoutOptions, DownloadOptions, Installer, StepProgress, Vcs, VenvOptions, Want,
};

use crate::convert::{seconds, PyRetryPolicy};
use crate::errors::{to_py, IntoPyResult};
use crate::runtime::wait_calling;

/// What a `download` did.
#[pyclass(frozen, get_all, module = "hgauto")]
pub struct DownloadReport {
    /// Where the file landed.
    path: PathBuf,
    /// Its size.
    bytes: u64,
    /// Its sha256 (always computed, checked when one was given).
    sha256: String,
    /// HTTP requests made.
    requests: u32,
    /// Times a broken transfer was resumed with a Range request.
    resumed: u32,
    /// Times it had to start over.
    restarted: u32,
}

#[pymethods]
impl DownloadReport {
    fn __repr__(&self) -> String {
        format!(
            "DownloadReport(path={:?}, bytes={}, sha256={:?}, requests={}, resumed={}, restarted={})",
            self.path.display().to_string(),
            self.bytes,
            self.sha256,
            self.requests,
            self.resumed,
            self.restarted
        )
    }
}

/// Downloads `url` to `dest`: resumed after a dropped connection, checked against `sha256`
/// and `size`, landed by atomic rename, optionally unpacked into `extract_to`.
/// `progress(done_bytes, total_bytes_or_None)` is called on this thread as data arrives.
/// An archive that unpacks past `max_unpacked_bytes` or `max_entries` is refused.
// Literal defaults, so Python's signature (and stubtest) sees the numbers; kept equal to
// core's defaults here.
const _: () = assert!(
    ExtractLimits::DEFAULT_MAX_BYTES == 8589934592 && ExtractLimits::DEFAULT_MAX_ENTRIES == 200000
);

#[pyfunction]
#[pyo3(signature = (url, dest, *, sha256=None, size=None, connect_timeout=10.0, read_timeout=30.0, retry=None, extract_to=None, format=None, progress=None, max_unpacked_bytes=8589934592, max_entries=200000))]
#[allow(clippy::too_many_arguments)]
pub(crate) fn download(
    py: Python<'_>,
    url: String,
    dest: PathBuf,
    sha256: Option<String>,
    size: Option<u64>,
    connect_timeout: f64,
    read_timeout: f64,
    retry: Option<PyRetryPolicy>,
    extract_to: Option<PathBuf>,
    format: Option<String>,
    progress: Option<Bound<'_, PyAny>>,
    max_unpacked_bytes: u64,
    max_entries: u64,
) -> PyResult<DownloadReport> {
    let mut opts = DownloadOptions {
        sha256,
        size,
        connect_timeout: seconds(py, "connect_timeout", connect_timeout)?,
        read_timeout: seconds(py, "read_timeout", read_timeout)?,
        extract_to,
        extract_limits: ExtractLimits {
            max_bytes: max_unpacked_bytes,
            max_entries,
        },
        ..DownloadOptions::default()
    };
    if let Some(r) = retry {
        opts.retry = r.inner;
    }
    if let Some(name) = format {
        opts.format = Some(name.parse::<ArchiveFormat>().map_err(|e| to_py(py, e))?);
    }
    let report = wait_calling(
        py,
        progress,
        |events| async move {
            if let Some(events) = events {
                opts = opts.with_progress(move |done, total| events.send((done, total)));
            }
            hgauto_ci::download(&url, &dest, &opts).await
        },
        |callback, (done, total): (u64, Option<u64>)| callback.call1((done, total)),
    )?
    .py_err(py)?;
    Ok(DownloadReport {
        path: report.path,
        bytes: report.bytes,
        sha256: report.sha256,
        requests: report.requests,
        resumed: report.resumed,
        restarted: report.restarted,
    })
}

/// Runs a helper whose options take a [`StepProgress`]: with a Python `progress`
/// callback, each step's text is delivered to it on this thread.
fn with_steps<T, F>(
    py: Python<'_>,
    progress: Option<Bound<'_, PyAny>>,
    run: impl FnOnce(Option<StepProgress>) -> F,
) -> PyResult<T>
where
    T: Send + 'static,
    F: std::future::Future<Output = hgauto_core::Result<T>> + Send + 'static,
{
    wait_calling(
        py,
        progress,
        |events| run(events.map(|e| StepProgress::new(move |s| e.send(s.to_owned())))),
        |callback, text: String| callback.call1((text,)),
    )?
    .py_err(py)
}

/// What a `checkout` did.
#[pyclass(frozen, get_all, module = "hgauto")]
pub struct CheckoutReport {
    /// The revision now checked out (full hash).
    revision: String,
    /// The pooled store used.
    store: PathBuf,
    /// The store was cloned by this call.
    cloned: bool,
    /// The store pulled from the remote.
    pulled: bool,
    /// What was found broken and repaired.
    recovered: Vec<String>,
}

#[pymethods]
impl CheckoutReport {
    fn __repr__(&self) -> String {
        format!(
            "CheckoutReport(revision={:?}, cloned={}, pulled={}, recovered={:?})",
            self.revision, self.cloned, self.pulled, self.recovered
        )
    }
}

/// Checks out `revision` (a full hash) or `branch` (neither: the default branch) of `url`
/// into `dest`, sharing one
/// pooled store per repository under `share_base`, repairing interrupted clones.
/// `progress(step)` gets a line per step (cloning, pulling, updating) on this thread.
#[pyfunction]
#[pyo3(signature = (url, dest, *, vcs="git", revision=None, branch=None, share_base=None, purge=false, retry=None, progress=None))]
#[allow(clippy::too_many_arguments)]
pub(crate) fn checkout(
    py: Python<'_>,
    url: String,
    dest: PathBuf,
    vcs: &str,
    revision: Option<String>,
    branch: Option<String>,
    share_base: Option<PathBuf>,
    purge: bool,
    retry: Option<PyRetryPolicy>,
    progress: Option<Bound<'_, PyAny>>,
) -> PyResult<CheckoutReport> {
    let vcs = parse_vcs(py, vcs)?;
    let want = Want::from_options(vcs, revision, branch).py_err(py)?;
    let opts = CheckoutOptions::with_share_base_or_default(share_base).py_err(py)?;
    let mut opts = opts.with_purge(purge);
    if let Some(r) = retry {
        opts.retry = r.inner;
    }
    let report = with_steps(py, progress, move |steps| async move {
        opts.progress = steps;
        hgauto_ci::checkout(vcs, &url, &dest, &want, &opts).await
    })?;
    Ok(CheckoutReport {
        revision: report.revision,
        store: report.store,
        cloned: report.cloned,
        pulled: report.pulled,
        recovered: report.recovered,
    })
}

/// What a `create_virtualenv` did.
#[pyclass(frozen, get_all, module = "hgauto")]
pub struct VenvReport {
    /// The environment's directory.
    path: PathBuf,
    /// Its interpreter.
    python: PathBuf,
    /// Its Python version (`3.11.7`).
    python_version: String,
    /// An environment built from the same inputs already existed and was kept.
    reused: bool,
    /// What installed the requirements (`uv` or `pip`), if anything was installed.
    installer: Option<String>,
}

#[pymethods]
impl VenvReport {
    fn __repr__(&self) -> String {
        format!(
            "VenvReport(path={:?}, python_version={:?}, reused={}, installer={:?})",
            self.path.display().to_string(),
            self.python_version,
            self.reused,
            self.installer
        )
    }
}

/// Creates (or reuses, when its inputs are unchanged) a virtualenv at `path` and installs
/// `requirements` under `constraints`. `installer` is `"auto"` (uv when on PATH, else pip),
/// `"pip"`, `"uv"` or the path of a uv binary. `progress(step)` gets a line per step.
#[pyfunction]
#[pyo3(signature = (path, *, python=None, requirements=Vec::new(), constraints=Vec::new(), find_links=Vec::new(), index_url=None, no_index=false, installer="auto", timeout=1800.0, retry=None, progress=None))]
#[allow(clippy::too_many_arguments)]
pub(crate) fn create_virtualenv(
    py: Python<'_>,
    path: PathBuf,
    python: Option<PathBuf>,
    requirements: Vec<PathBuf>,
    constraints: Vec<PathBuf>,
    find_links: Vec<String>,
    index_url: Option<String>,
    no_index: bool,
    installer: &str,
    timeout: f64,
    retry: Option<PyRetryPolicy>,
    progress: Option<Bound<'_, PyAny>>,
) -> PyResult<VenvReport> {
    let installer: Installer = installer.parse().map_err(|e| to_py(py, e))?;
    let mut opts = VenvOptions {
        python,
        requirements,
        constraints,
        find_links,
        index_url,
        no_index,
        installer,
        timeout: seconds(py, "timeout", timeout)?,
        ..VenvOptions::default()
    };
    if let Some(r) = retry {
        opts.retry = r.inner;
    }
    let report = with_steps(py, progress, move |steps| async move {
        opts.progress = steps;
        hgauto_ci::create_virtualenv(&path, &opts).await
    })?;
    Ok(VenvReport {
        path: report.path,
        python: report.python,
        python_version: report.python_version,
        reused: report.reused,
        installer: report.installer,
    })
}

/// `"git"` or `"hg"` as a [`Vcs`].
pub(crate) fn parse_vcs(py: Python<'_>, vcs: &str) -> PyResult<Vcs> {
    vcs.parse::<Vcs>().map_err(|e| to_py(py, e))
}
