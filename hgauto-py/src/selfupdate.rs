//! `hgauto.SelfUpdate`: update working copies from production branches, safely.

use std::path::PathBuf;
use std::sync::Arc;

use pyo3::prelude::*;
use pyo3::types::PyDict;

use hgauto_agent::selfupdate::{RepositoryFile, SelfUpdate};
use hgauto_core::Error;

use crate::convert::{json_to_py, seconds};
use crate::errors::IntoPyResult;
use crate::runtime::wait;

/// Watches production branches and applies an update after a quiet window, a check and
/// an optional CI gate, running a hook and rolling back when it fails.
#[pyclass(frozen, module = "hgauto", name = "SelfUpdate")]
pub struct PySelfUpdate {
    inner: Arc<SelfUpdate>,
}

#[pymethods]
impl PySelfUpdate {
    /// `repositories`: a list of dicts with `name`, `url`, `branch`, `working_copy` and
    /// `vcs` ("git" or "hg"), updated in that order. Commands are argument lists.
    #[new]
    #[pyo3(signature = (state_dir, repositories, *, quiet_window=600.0, ready_flag=None,
        check_command=None, ci_gate=None, hook=None, stale_lock_after=7200.0))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        state_dir: PathBuf,
        repositories: Vec<Bound<'_, PyDict>>,
        quiet_window: f64,
        ready_flag: Option<PathBuf>,
        check_command: Option<Vec<String>>,
        ci_gate: Option<Vec<String>>,
        hook: Option<Vec<String>>,
        stale_lock_after: f64,
    ) -> PyResult<Self> {
        let mut b = SelfUpdate::builder(state_dir)
            .quiet_window(seconds(py, "quiet_window", quiet_window)?)
            .stale_lock_after(seconds(py, "stale_lock_after", stale_lock_after)?);
        for d in repositories {
            let get = |key: &str| -> PyResult<String> {
                d.get_item(key)?
                    .ok_or_else(|| {
                        crate::errors::to_py(
                            py,
                            Error::invalid("repository", format!("needs {key:?}")),
                        )
                    })?
                    .str()
                    .map(|s| s.to_string())
            };
            let vcs = match d.get_item("vcs")? {
                Some(v) => Some(v.str()?.to_string()),
                None => None,
            };
            let repo = RepositoryFile {
                name: get("name")?,
                vcs,
                url: get("url")?,
                branch: get("branch")?,
                working_copy: PathBuf::from(get("working_copy")?),
            };
            b = b.repository(repo.into_repo().py_err(py)?);
        }
        if let Some(f) = ready_flag {
            b = b.ready_flag(f);
        }
        if let Some(c) = check_command {
            b = b.check_command(c);
        }
        if let Some(c) = ci_gate {
            b = b.ci_gate(c);
        }
        if let Some(c) = hook {
            b = b.hook(c);
        }
        Ok(PySelfUpdate {
            inner: Arc::new(b.build().py_err(py)?),
        })
    }

    /// One update round: a dict whose `outcome` is in_sync, waiting (with `until_ms`), blocked or
    /// rolled_back or skipped (with `reason`), applied (with `running`) or locked.
    fn update_once(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        let u = self.inner.clone();
        let outcome = wait(py, async move { u.update_once().await })?.py_err(py)?;
        crate::convert::serialized_to_py(py, "self-update outcome", &outcome)
    }

    /// The saved state: running, seen, out_of_sync_since_ms, last_error...
    fn state(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        let s = self.inner.state().py_err(py)?;
        let text = serde_json::to_string(&s)
            .map_err(|e| Error::invalid("self-update state", e.to_string()))
            .py_err(py)?;
        json_to_py(py, &text)
    }

    /// A Nagios-style check: (0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN; one-line message).
    fn nagios(&self, warn_minutes: u64, crit_minutes: u64) -> (i32, String) {
        self.inner.nagios(warn_minutes, crit_minutes)
    }
}
