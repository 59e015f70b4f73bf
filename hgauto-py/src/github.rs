//! `hgauto.GithubPrSource`: open pull requests of GitHub repositories as jobs.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use pyo3::prelude::*;

use hgauto_agent::github::{GithubPrSource, GithubRepo, TrustRules};
use hgauto_core::redact::SecretString;

use crate::convert::seconds;
use crate::errors::IntoPyResult;
use crate::jobs::PyJobSource;
use crate::runtime::wait;

/// Open pull requests as jobs, one per (head, check): conditional requests through a
/// persistent cache, rate limits waited out, trust rules, commit statuses that skip
/// writes changing nothing. Leases live in a directory queue under `state_dir`.
#[pyclass(extends = PyJobSource, frozen, module = "hgauto", name = "GithubPrSource")]
pub struct PyGithubPrSource {
    source: Arc<GithubPrSource>,
}

#[pymethods]
impl PyGithubPrSource {
    /// `repositories`: {"owner/name": [checks]}. The token: `token`, else environment
    /// variable `token_env`, else the 0600 file `token_file` (none: anonymous).
    /// `recheck_every`: seconds between re-checks of tested heads (None: never).
    #[new]
    #[pyo3(signature = (state_dir, repositories, *, api_url=None, token=None, token_env=None,
        token_file=None, trusted_users=Vec::new(), trusted_associations=None,
        priority_labels=None, details_url=None, recheck_every=None, poll_interval=60.0,
        lease_ttl=300.0, max_rate_limit_wait=3600.0))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        state_dir: PathBuf,
        repositories: BTreeMap<String, Vec<String>>,
        api_url: Option<String>,
        token: Option<String>,
        token_env: Option<String>,
        token_file: Option<PathBuf>,
        trusted_users: Vec<String>,
        trusted_associations: Option<Vec<String>>,
        priority_labels: Option<BTreeMap<String, i32>>,
        details_url: Option<String>,
        recheck_every: Option<f64>,
        poll_interval: f64,
        lease_ttl: f64,
        max_rate_limit_wait: f64,
    ) -> PyResult<PyClassInitializer<Self>> {
        let mut b = GithubPrSource::builder(state_dir)
            .poll_interval(seconds(py, "poll_interval", poll_interval)?)
            .lease_ttl(seconds(py, "lease_ttl", lease_ttl)?)
            .max_rate_limit_wait(seconds(py, "max_rate_limit_wait", max_rate_limit_wait)?);
        if let Some(u) = api_url {
            b = b.api_url(u);
        }
        if let Some(t) = token {
            b = b.token(SecretString::new(t));
        } else if let Some(var) = token_env {
            b = b.token_from_env(&var);
        } else if let Some(f) = token_file {
            b = b.token_file(f);
        }
        let mut trust = TrustRules::default();
        trust.users.extend(trusted_users);
        if let Some(a) = trusted_associations {
            trust.associations = a.into_iter().collect();
        }
        b = b.trust(trust);
        for (label, p) in priority_labels.unwrap_or_default() {
            b = b.priority_label(label, p);
        }
        if let Some(d) = details_url {
            b = b.details_url(d);
        }
        if let Some(every) = recheck_every {
            b = b.rechecks(seconds(py, "recheck_every", every)?);
        }
        for (name, checks) in repositories {
            b = b.repository(GithubRepo::new(&name, checks).py_err(py)?);
        }
        let source = Arc::new(b.build().py_err(py)?);
        Ok(PyClassInitializer::from(PyJobSource {
            inner: source.clone(),
        })
        .add_subclass(PyGithubPrSource { source }))
    }

    /// Watches another repository ("owner/name") from the next round on.
    fn watch(&self, py: Python<'_>, repository: &str, checks: Vec<String>) -> PyResult<()> {
        self.source
            .watch(GithubRepo::new(repository, checks).py_err(py)?);
        Ok(())
    }

    /// Runs a round now; returns how many jobs were added.
    fn poll(&self, py: Python<'_>) -> PyResult<usize> {
        let s = self.source.clone();
        wait(py, async move { s.poll().await })?.py_err(py)
    }

    /// What the source's GitHub client has done so far: requests, not_modified,
    /// bytes_received, status_writes, status_writes_skipped, rate_limit_waits.
    fn stats(&self) -> BTreeMap<&'static str, u64> {
        let s = self.source.stats();
        BTreeMap::from([
            ("requests", s.requests),
            ("not_modified", s.not_modified),
            ("bytes_received", s.bytes_received),
            ("status_writes", s.status_writes),
            ("status_writes_skipped", s.status_writes_skipped),
            ("rate_limit_waits", s.rate_limit_waits),
        ])
    }

    fn __repr__(&self) -> String {
        format!(
            "GithubPrSource({})",
            hgauto_core::JobSource::name(self.source.as_ref())
        )
    }
}
