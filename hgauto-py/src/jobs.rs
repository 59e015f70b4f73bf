//! `hgauto.Job`, `hgauto.JobSource`, `hgauto.DirJobSource`, `hgauto.ListJobSource` and
//! `hgauto.VcsBranchSource`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use pyo3::prelude::*;

use hgauto_agent::vcs_jobs::Watch;
use hgauto_agent::VcsBranchSource;
use hgauto_ci::checkout::CheckoutOptions;
use hgauto_core::job::Shard;
use hgauto_core::{DirJobSource, Error, Job, JobFilter, JobOutcome, JobSource, ListJobSource};

use crate::convert::{json_to_py, py_to_json, seconds};
use crate::errors::IntoPyResult;
use crate::helpers::parse_vcs;
use crate::runtime::wait;

/// One unit of work from a job source.
#[pyclass(frozen, from_py_object, module = "hgauto", name = "Job")]
#[derive(Clone)]
pub struct PyJob {
    pub inner: Job,
}

#[pymethods]
impl PyJob {
    /// A job for `check` (e.g. "build/linux-x86_64"). `payload`: anything `json` can dump.
    #[new]
    #[pyo3(signature = (id, check, *, revision=None, priority=0, created_ms=0, attributes=None, payload=None))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        id: String,
        check: String,
        revision: Option<String>,
        priority: i32,
        created_ms: u64,
        attributes: Option<BTreeMap<String, String>>,
        payload: Option<Bound<'_, PyAny>>,
    ) -> PyResult<Self> {
        let mut job = Job::new(id, check)
            .with_priority(priority)
            .with_created_ms(created_ms);
        job.revision = revision;
        job.attributes = attributes.unwrap_or_default();
        if let Some(p) = payload {
            job.payload = Some(py_to_json(py, "job payload", &p)?);
        }
        Ok(PyJob { inner: job })
    }

    /// Unique within its source.
    #[getter]
    fn id(&self) -> &str {
        &self.inner.id
    }
    /// The source's name.
    #[getter]
    fn source(&self) -> &str {
        &self.inner.source
    }
    /// The kind of build.
    #[getter]
    fn check(&self) -> &str {
        &self.inner.check
    }
    /// The revision to build, if any.
    #[getter]
    fn revision(&self) -> Option<&str> {
        self.inner.revision.as_deref()
    }
    /// Milliseconds since the Unix epoch.
    #[getter]
    fn created_ms(&self) -> u64 {
        self.inner.created_ms
    }
    /// Higher goes first.
    #[getter]
    fn priority(&self) -> i32 {
        self.inner.priority
    }
    /// How many times the job has been handed out, this time included.
    #[getter]
    fn attempt(&self) -> u32 {
        self.inner.attempt
    }
    /// When this holder's lease ends (milliseconds since the epoch), if leased.
    #[getter]
    fn lease_deadline_ms(&self) -> Option<u64> {
        self.inner.lease.as_ref().map(|l| l.deadline_ms)
    }
    /// How the last job of the same (check, revision) ended: succeeded, failed or skipped.
    #[getter]
    fn previous(&self) -> Option<&'static str> {
        self.inner.previous.as_ref().map(JobOutcome::status)
    }
    /// Source-specific details.
    #[getter]
    fn attributes(&self) -> BTreeMap<String, String> {
        self.inner.attributes.clone()
    }
    /// The raw payload, decoded from JSON.
    #[getter]
    fn payload(&self, py: Python<'_>) -> PyResult<Option<Py<PyAny>>> {
        self.inner
            .payload
            .as_ref()
            .map(|v| json_to_py(py, &v.to_string()))
            .transpose()
    }

    fn __repr__(&self) -> String {
        format!(
            "Job({:?}, check={:?}, revision={:?}, attempt={})",
            self.inner.id, self.inner.check, self.inner.revision, self.inner.attempt
        )
    }
}

fn outcome(py: Python<'_>, status: &str, summary: String, retryable: bool) -> PyResult<JobOutcome> {
    JobOutcome::from_status(status, summary, retryable).py_err(py)
}

/// Where work comes from: jobs handed out under a lease (see the Rust `JobSource` trait).
#[pyclass(subclass, frozen, module = "hgauto", name = "JobSource")]
pub struct PyJobSource {
    pub inner: Arc<dyn JobSource>,
}

#[pymethods]
impl PyJobSource {
    /// The source's name.
    #[getter]
    fn name(&self) -> &str {
        self.inner.name()
    }

    /// The next job to do, leased to the caller, or None. `checks`: only these kinds;
    /// `shard`: `(index, count)`, this agent's share of a pool.
    #[pyo3(signature = (*, checks=None, shard=None))]
    fn next(
        &self,
        py: Python<'_>,
        checks: Option<Vec<String>>,
        shard: Option<(u32, u32)>,
    ) -> PyResult<Option<PyJob>> {
        let filter = job_filter(checks, shard).py_err(py)?;
        let s = self.inner.clone();
        let job = wait(py, async move { s.next(&filter).await })?.py_err(py)?;
        Ok(job.map(|inner| PyJob { inner }))
    }

    /// How many jobs (of `checks`, in `shard`) wait and how many are leased:
    /// `{"pending": n, "leased": n, "exact": bool}`, or None when the source cannot count.
    #[pyo3(signature = (*, checks=None, shard=None))]
    fn depth(
        &self,
        py: Python<'_>,
        checks: Option<Vec<String>>,
        shard: Option<(u32, u32)>,
    ) -> PyResult<Option<Py<PyAny>>> {
        let filter = job_filter(checks, shard).py_err(py)?;
        let s = self.inner.clone();
        let depth = wait(py, async move { s.depth(&filter).await })?.py_err(py)?;
        depth
            .map(|d| {
                let dict = pyo3::types::PyDict::new(py);
                dict.set_item("pending", d.pending)?;
                dict.set_item("leased", d.leased)?;
                dict.set_item("exact", d.exact)?;
                Ok(dict.into_any().unbind())
            })
            .transpose()
    }

    /// Records that work on the job's (check, revision) began.
    fn started(&self, py: Python<'_>, job: PyJob) -> PyResult<()> {
        let s = self.inner.clone();
        wait(py, async move { s.started(&job.inner).await })?.py_err(py)
    }

    /// Extends the lease; returns its new deadline (milliseconds since the epoch). Raises
    /// LeaseLost when the lease ran out or went to another holder.
    fn heartbeat(&self, py: Python<'_>, job: PyJob) -> PyResult<u64> {
        let s = self.inner.clone();
        let lease = wait(py, async move { s.heartbeat(&job.inner).await })?.py_err(py)?;
        Ok(lease.deadline_ms)
    }

    /// Ends the job: `status` is succeeded, failed or skipped.
    #[pyo3(signature = (job, status, summary=None, *, retryable=false))]
    fn report(
        &self,
        py: Python<'_>,
        job: PyJob,
        status: &str,
        summary: Option<String>,
        retryable: bool,
    ) -> PyResult<()> {
        let o = outcome(py, status, summary.unwrap_or_default(), retryable)?;
        let s = self.inner.clone();
        wait(py, async move { s.report(&job.inner, &o).await })?.py_err(py)
    }

    /// Gives the job back, untouched, for anyone to take now.
    fn release(&self, py: Python<'_>, job: PyJob) -> PyResult<()> {
        let s = self.inner.clone();
        wait(py, async move { s.release(&job.inner).await })?.py_err(py)
    }
}

/// A job queue in a directory, shared by processes: JSON files claimed under `flock`.
#[pyclass(extends = PyJobSource, frozen, module = "hgauto", name = "DirJobSource")]
pub struct PyDirJobSource {
    source: DirJobSource,
}

#[pymethods]
impl PyDirJobSource {
    /// `lease_ttl`: seconds a job stays leased without a heartbeat (default 300).
    #[new]
    #[pyo3(signature = (root, *, lease_ttl=300.0))]
    fn new(py: Python<'_>, root: PathBuf, lease_ttl: f64) -> PyResult<PyClassInitializer<Self>> {
        let ttl = seconds(py, "lease_ttl", lease_ttl)?;
        let source = DirJobSource::new(root).py_err(py)?.with_lease_ttl(ttl);
        Ok(PyClassInitializer::from(PyJobSource {
            inner: Arc::new(source.clone()),
        })
        .add_subclass(PyDirJobSource { source }))
    }

    /// Adds a job; False when one with its id is already queued or done.
    fn enqueue(&self, py: Python<'_>, job: PyJob) -> PyResult<bool> {
        let s = self.source.clone();
        py.detach(move || s.enqueue(job.inner)).py_err(py)
    }

    /// The status reported for each job so far, by id.
    fn outcomes(&self, py: Python<'_>) -> PyResult<BTreeMap<String, String>> {
        let s = self.source.clone();
        let all = py.detach(move || s.outcomes()).py_err(py)?;
        Ok(all
            .into_iter()
            .map(|(id, o)| (id, o.status().to_owned()))
            .collect())
    }
}

/// Jobs held in memory, with leases: for scripts and tests.
#[pyclass(extends = PyJobSource, frozen, module = "hgauto", name = "ListJobSource")]
pub struct PyListJobSource {
    source: Arc<ListJobSource>,
}

#[pymethods]
impl PyListJobSource {
    #[new]
    #[pyo3(signature = (jobs=Vec::new(), *, lease_ttl=300.0))]
    fn new(py: Python<'_>, jobs: Vec<PyJob>, lease_ttl: f64) -> PyResult<PyClassInitializer<Self>> {
        let ttl = seconds(py, "lease_ttl", lease_ttl)?;
        let source =
            Arc::new(ListJobSource::new(jobs.into_iter().map(|j| j.inner)).with_lease_ttl(ttl));
        Ok(PyClassInitializer::from(PyJobSource {
            inner: source.clone(),
        })
        .add_subclass(PyListJobSource { source }))
    }

    /// Adds a job.
    fn push(&self, job: PyJob) {
        self.source.push(job.inner);
    }
}

/// Jobs from the heads of watched git or Mercurial branches: one job per new head and
/// check, kept in a directory queue under `state_dir`.
#[pyclass(extends = PyJobSource, frozen, module = "hgauto", name = "VcsBranchSource")]
pub struct PyVcsBranchSource {
    source: Arc<VcsBranchSource>,
}

#[pymethods]
impl PyVcsBranchSource {
    /// `share_base`: the pooled stores heads are read through (default: the state
    /// directory's); `poll_interval`: seconds between polls made by `next`.
    #[new]
    #[pyo3(signature = (state_dir, *, share_base=None, poll_interval=60.0, lease_ttl=300.0))]
    fn new(
        py: Python<'_>,
        state_dir: PathBuf,
        share_base: Option<PathBuf>,
        poll_interval: f64,
        lease_ttl: f64,
    ) -> PyResult<PyClassInitializer<Self>> {
        let every = seconds(py, "poll_interval", poll_interval)?;
        let ttl = seconds(py, "lease_ttl", lease_ttl)?;
        let opts = CheckoutOptions::with_share_base_or_default(share_base).py_err(py)?;
        let source = Arc::new(
            VcsBranchSource::new(state_dir, opts)
                .py_err(py)?
                .with_poll_interval(every)
                .with_lease_ttl(ttl),
        );
        Ok(PyClassInitializer::from(PyJobSource {
            inner: source.clone(),
        })
        .add_subclass(PyVcsBranchSource { source }))
    }

    /// Watches `branches` of the repository at `url` (`vcs`: "git" or "hg"); each new head
    /// gets one job per check.
    #[pyo3(signature = (url, branches, checks, *, vcs="git", priority=0))]
    fn watch(
        &self,
        py: Python<'_>,
        url: String,
        branches: Vec<String>,
        checks: Vec<String>,
        vcs: &str,
        priority: i32,
    ) -> PyResult<()> {
        let vcs = parse_vcs(py, vcs)?;
        self.source
            .watch(Watch {
                vcs,
                url,
                branches,
                checks,
                priority,
            })
            .py_err(py)
    }

    /// Reads every watched head now; returns how many jobs were added.
    fn poll(&self, py: Python<'_>) -> PyResult<usize> {
        let s = self.source.clone();
        wait(py, async move { s.poll().await })?.py_err(py)
    }
}

/// The filter of `next` and `depth`: only `checks` (all when empty), in `shard`.
fn job_filter(
    checks: Option<Vec<String>>,
    shard: Option<(u32, u32)>,
) -> hgauto_core::Result<JobFilter> {
    if let Some((index, count)) = shard {
        if count == 0 || index >= count {
            return Err(Error::invalid(
                format!("shard ({index}, {count})"),
                "the index must be below the count",
            ));
        }
    }
    Ok(JobFilter {
        checks: checks.unwrap_or_default(),
        shard: shard.map(|(index, count)| Shard { index, count }),
    })
}
