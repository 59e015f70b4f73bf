//! `hgauto.Agent`: the builder loop with a Python function as the build.
//!
//! The build function runs on the thread that called `run_once` or `run`, holding the GIL
//! only while it runs: the agent's async loop sends it each job as an event and waits for
//! the outcome, so Ctrl-C and Python signal handlers (e.g. one calling `agent.stop()` on
//! SIGTERM) work as they do elsewhere in the module.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use pyo3::exceptions::PyException;
use pyo3::prelude::*;
use pyo3::types::PyDict;

use hgauto_agent::{Agent, AgentContext, Iteration, Sharing, StopHandle};
use hgauto_core::{Error, Job, JobOutcome};

use crate::convert::seconds;
use crate::errors::IntoPyResult;
use crate::jobs::{PyJob, PyJobSource};
use crate::runtime::{wait_with, Events, OnInterrupt};

/// One call of the build function: the job, its log path, the debug flag, and where the
/// outcome goes.
type BuildCall = (
    Job,
    String,
    bool,
    tokio::sync::oneshot::Sender<hgauto_core::Result<JobOutcome>>,
);

type Slot = Arc<Mutex<Option<Events<BuildCall>>>>;

/// A builder agent over a job source, with a Python function as the build.
#[pyclass(frozen, module = "hgauto", name = "Agent")]
pub struct PyAgent {
    agent: Arc<Agent>,
    build: Py<PyAny>,
    slot: Slot,
    stop: StopHandle,
}

/// What the build function returned, as an outcome: None or True succeeded, False failed,
/// a string succeeded with that summary, a `(status, summary)` pair as given.
fn outcome_of(value: &Bound<'_, PyAny>) -> PyResult<JobOutcome> {
    if value.is_none() {
        return Ok(JobOutcome::Succeeded {
            summary: "ok".into(),
        });
    }
    if let Ok(b) = value.extract::<bool>() {
        return Ok(if b {
            JobOutcome::Succeeded {
                summary: "ok".into(),
            }
        } else {
            JobOutcome::Failed {
                summary: "the build returned False".into(),
                retryable: false,
            }
        });
    }
    if let Ok(s) = value.extract::<String>() {
        return Ok(JobOutcome::Succeeded { summary: s });
    }
    let (status, summary): (String, String) = value.extract().map_err(|_| {
        PyException::new_err(
            "a build returns None, a bool, a summary string or a (status, summary) pair",
        )
    })?;
    JobOutcome::from_status(&status, summary, false)
        .map_err(|e| PyException::new_err(e.to_string()))
}

fn iteration_to_py(py: Python<'_>, it: Iteration) -> PyResult<Option<Py<PyAny>>> {
    match it {
        Iteration::Built {
            job,
            outcome,
            reported,
            recheck,
        } => {
            let d = PyDict::new(py);
            d.set_item("job", job)?;
            d.set_item("status", outcome.status())?;
            let summary = match &outcome {
                JobOutcome::Succeeded { summary } | JobOutcome::Failed { summary, .. } => summary,
                JobOutcome::Skipped { reason } => reason,
            };
            d.set_item("summary", summary)?;
            d.set_item("reported", reported)?;
            d.set_item("recheck", recheck)?;
            Ok(Some(d.into_any().unbind()))
        }
        Iteration::Idle | Iteration::Stopped => Ok(None),
    }
}

impl PyAgent {
    /// Runs `fut` (the agent working) while calling the build function for each job on
    /// this thread.
    fn drive<T, F>(&self, py: Python<'_>, fut: F) -> PyResult<T>
    where
        T: Send + 'static,
        F: std::future::Future<Output = T> + Send + 'static,
    {
        let slot = self.slot.clone();
        let build = self.build.bind(py).clone();
        wait_with(
            py,
            OnInterrupt::Cancel,
            move |events: Events<BuildCall>| {
                *slot.lock().unwrap_or_else(|p| p.into_inner()) = Some(events);
                async move {
                    let out = fut.await;
                    *slot.lock().unwrap_or_else(|p| p.into_inner()) = None;
                    out
                }
            },
            move |py, (job, log, debug, tx): BuildCall| {
                let kwargs = PyDict::new(py);
                kwargs.set_item("log", log)?;
                kwargs.set_item("debug", debug)?;
                let result = match build.call((PyJob { inner: job },), Some(&kwargs)) {
                    Ok(v) => outcome_of(&v),
                    Err(e) => Err(e),
                };
                let outcome = match result {
                    Ok(o) => o,
                    // Ctrl-C and SystemExit end the run; any other exception fails the job.
                    Err(e) if !e.is_instance_of::<PyException>(py) => return Err(e),
                    Err(e) => JobOutcome::Failed {
                        summary: e.to_string(),
                        retryable: false,
                    },
                };
                let _ = tx.send(Ok(outcome));
                Ok(())
            },
        )
    }
}

#[pymethods]
impl PyAgent {
    /// `build(job, *, log, debug)` builds one job (see `outcome` rules in the stubs).
    /// `sharing`: "claims" or "shards" (from `config/workers-pool-size` and
    /// `config/worker-index`). `config_dir` defaults to `config/` beside `state_dir`.
    #[new]
    #[pyo3(signature = (source, state_dir, build, *, sharing="claims", config_dir=None, name=None, stop_bound=60.0))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        source: &Bound<'_, PyJobSource>,
        state_dir: PathBuf,
        build: Py<PyAny>,
        sharing: &str,
        config_dir: Option<PathBuf>,
        name: Option<String>,
        stop_bound: f64,
    ) -> PyResult<Self> {
        let sharing: Sharing = sharing.parse().py_err(py)?;
        let slot: Slot = Arc::default();
        let calls = slot.clone();
        let mut b = Agent::builder(source.get().inner.clone(), state_dir)
            .sharing(sharing)
            .stop_bound(seconds(py, "stop_bound", stop_bound)?)
            .build(move |job: Job, ctx: AgentContext| {
                let events = calls.lock().unwrap_or_else(|p| p.into_inner()).clone();
                async move {
                    let events = events.ok_or_else(|| {
                        Error::invalid("agent build", "called outside run_once or run")
                    })?;
                    let (tx, rx) = tokio::sync::oneshot::channel();
                    events.send((job, ctx.log.display().to_string(), ctx.debug, tx));
                    rx.await.unwrap_or_else(|_| {
                        Err(Error::Interrupted {
                            signal: libc::SIGINT,
                        })
                    })
                }
            });
        if let Some(d) = config_dir {
            b = b.config_dir(d);
        }
        if let Some(n) = name {
            b = b.name(n);
        }
        let agent = Arc::new(b.build_agent().py_err(py)?);
        let stop = agent.stop_handle();
        Ok(PyAgent {
            agent,
            build,
            slot,
            stop,
        })
    }

    /// One iteration: a dict (job, status, summary, reported) for a job built, None when
    /// there was nothing to do or the agent is stopping.
    fn run_once(&self, py: Python<'_>) -> PyResult<Option<Py<PyAny>>> {
        let agent = self.agent.clone();
        let it = self
            .drive(py, async move { agent.run_once().await })?
            .py_err(py)?;
        iteration_to_py(py, it)
    }

    /// Iterates until `stop()`; idle iterations last `config/min-loop-seconds`.
    fn run(&self, py: Python<'_>) -> PyResult<()> {
        let agent = self.agent.clone();
        self.drive(py, async move { agent.run().await })?.py_err(py)
    }

    /// Stops the agent: the current build may finish within `stop_bound`, then its job is
    /// given back. Safe to call from a signal handler.
    fn stop(&self) {
        self.stop.stop();
    }

    /// The agent's status, as `state/status.json` shows it.
    fn status(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        crate::convert::serialized_to_py(py, "agent status", &self.agent.status())
    }

    fn __repr__(&self) -> String {
        format!("{:?}", self.agent)
    }
}
