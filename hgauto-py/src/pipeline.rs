//! `hgauto.Pipeline`: a pipeline from a dict or a TOML/JSON file, run by the embedded
//! engine, with Python functions as function steps.
//!
//! Function steps run on the thread that called `run`, holding the GIL only while they
//! run: the engine sends each call as an event and waits for its outputs, so Ctrl-C
//! works as elsewhere in the module.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use pyo3::exceptions::{PyConnectionError, PyException, PyTimeoutError};
use pyo3::prelude::*;
use pyo3::types::PyDict;

use hgauto_core::Error;
use hgauto_pipeline::{
    asl, Mode, Outputs, PipelineFile, Runner, Selection, StepContext, StepFailure, StepFn,
};

use crate::convert::{json_to_py, py_to_json, seconds, serialized_to_py};
use crate::errors::IntoPyResult;
use crate::provider::PyProvider;
use crate::runtime::{wait_with, Events, OnInterrupt};

/// One call of a Python function step: its name, its context as JSON, and where the
/// outputs go.
type FunctionCall = (
    String,
    String,
    tokio::sync::oneshot::Sender<Result<Outputs, StepFailure>>,
);

/// A pipeline definition (see `schemas/pipeline.schema.json`) and the Python functions
/// its function steps name.
#[pyclass(frozen, module = "hgauto", name = "Pipeline")]
pub struct PyPipeline {
    file: PipelineFile,
    functions: Py<PyDict>,
}

fn context_json(ctx: &StepContext) -> String {
    serde_json::json!({
        "step": ctx.step,
        "task": ctx.task,
        "cell": ctx.cell,
        "inputs": ctx.inputs,
        "dependencies": ctx.dependencies,
        "artifacts": ctx.artifacts,
        "attempt": ctx.attempt,
    })
    .to_string()
}

/// A function step's return value as outputs: None is none, a dict maps names to values
/// (each turned into a string).
fn outputs_of(value: &Bound<'_, PyAny>) -> PyResult<Outputs> {
    if value.is_none() {
        return Ok(Outputs::new());
    }
    let d = value.cast::<PyDict>().map_err(|_| {
        PyException::new_err("a pipeline function returns None or a dict of outputs")
    })?;
    d.iter()
        .map(|(k, v)| Ok((k.str()?.to_string(), v.str()?.to_string())))
        .collect()
}

fn selection_of(py: Python<'_>, selection: Option<&Bound<'_, PyAny>>) -> PyResult<Selection> {
    match selection {
        None => Ok(Selection::all()),
        Some(s) => serde_json::from_value(py_to_json(py, "selection", s)?)
            .map_err(|e| Error::invalid("selection", e.to_string()))
            .py_err(py),
    }
}

impl PyPipeline {
    /// The pipeline with each function step sending its calls to `events`.
    fn build(
        &self,
        py: Python<'_>,
        events: Arc<std::sync::Mutex<Option<Events<FunctionCall>>>>,
    ) -> PyResult<hgauto_pipeline::Pipeline> {
        let mut functions: BTreeMap<String, StepFn> = BTreeMap::new();
        for name in self.functions.bind(py).keys() {
            let name = name.str()?.to_string();
            let (events, called) = (events.clone(), name.clone());
            let f: StepFn = Arc::new(move |ctx: StepContext| {
                let events = events.lock().unwrap_or_else(|p| p.into_inner()).clone();
                let called = called.clone();
                Box::pin(async move {
                    let Some(events) = events else {
                        return Err(StepFailure::fatal("function step called outside run()"));
                    };
                    let (tx, rx) = tokio::sync::oneshot::channel();
                    events.send((called, context_json(&ctx), tx));
                    rx.await
                        .unwrap_or_else(|_| Err(StepFailure::fatal("the run was interrupted")))
                })
            });
            functions.insert(name, f);
        }
        self.file.clone().into_pipeline(&functions).py_err(py)
    }
}

#[pymethods]
impl PyPipeline {
    /// A pipeline from a dict shaped like the TOML format; `functions` maps the names
    /// function steps use to callables `f(ctx: dict) -> dict | None`.
    #[staticmethod]
    #[pyo3(signature = (definition, functions=None))]
    fn from_dict(
        py: Python<'_>,
        definition: &Bound<'_, PyAny>,
        functions: Option<Bound<'_, PyDict>>,
    ) -> PyResult<Self> {
        let file = PipelineFile::from_value(py_to_json(py, "pipeline definition", definition)?)
            .py_err(py)?;
        Self::checked(py, file, functions)
    }

    /// A pipeline from a `.toml` or `.json` file.
    #[staticmethod]
    #[pyo3(signature = (path, functions=None))]
    fn from_file(
        py: Python<'_>,
        path: PathBuf,
        functions: Option<Bound<'_, PyDict>>,
    ) -> PyResult<Self> {
        let file = PipelineFile::read(&path).py_err(py)?;
        Self::checked(py, file, functions)
    }

    /// The JSON schema of the definition format, as a dict.
    #[staticmethod]
    fn schema(py: Python<'_>) -> PyResult<Py<PyAny>> {
        json_to_py(py, &PipelineFile::json_schema().to_string())
    }

    /// The pipeline's name.
    #[getter]
    fn name(&self) -> String {
        self.file.name.clone()
    }

    /// The task names a run would execute, in dependency order (checks the selection and
    /// every placeholder; starts nothing).
    #[pyo3(signature = (*, selection=None, inputs=None))]
    fn plan(
        &self,
        py: Python<'_>,
        selection: Option<Bound<'_, PyAny>>,
        inputs: Option<BTreeMap<String, String>>,
    ) -> PyResult<Vec<String>> {
        let p = self.build(py, Arc::default())?;
        let mut r = Runner::new(p, "/nonexistent").selection(selection_of(py, selection.as_ref())?);
        for (k, v) in inputs.unwrap_or_default() {
            r = r.input(k, v);
        }
        r.plan().py_err(py)
    }

    /// Runs the pipeline, writing `result.json`, `report.html` and worker logs under
    /// `out_dir`, and returns the result tree as a dict (`ok` is False when a task failed).
    #[pyo3(signature = (out_dir, *, provider=None, mode="normal", selection=None, inputs=None,
        state_dir=None, health_check=300.0, idle_timeout=600.0, retry_time_scale=1.0))]
    #[allow(clippy::too_many_arguments)]
    fn run(
        &self,
        py: Python<'_>,
        out_dir: PathBuf,
        provider: Option<Bound<'_, PyProvider>>,
        mode: &str,
        selection: Option<Bound<'_, PyAny>>,
        inputs: Option<BTreeMap<String, String>>,
        state_dir: Option<PathBuf>,
        health_check: f64,
        idle_timeout: f64,
        retry_time_scale: f64,
    ) -> PyResult<Py<PyAny>> {
        let mode: Mode = mode.parse().py_err(py)?;
        let slot: Arc<std::sync::Mutex<Option<Events<FunctionCall>>>> = Arc::default();
        let pipeline = self.build(py, slot.clone())?;
        let mut runner = Runner::new(pipeline, out_dir)
            .mode(mode)
            .selection(selection_of(py, selection.as_ref())?)
            .health_check(seconds(py, "health_check", health_check)?)
            .idle_timeout(seconds(py, "idle_timeout", idle_timeout)?)
            .retry_time_scale(retry_time_scale);
        if let Some(p) = provider {
            runner = runner.provider(p.get().inner.clone());
        }
        if let Some(d) = state_dir {
            runner = runner.state_dir(d);
        }
        for (k, v) in inputs.unwrap_or_default() {
            runner = runner.input(k, v);
        }
        let functions = self.functions.bind(py).clone();
        let result = wait_with(
            py,
            OnInterrupt::Cancel,
            move |events: Events<FunctionCall>| {
                *slot.lock().unwrap_or_else(|p| p.into_inner()) = Some(events);
                async move {
                    let out = runner.run().await;
                    *slot.lock().unwrap_or_else(|p| p.into_inner()) = None;
                    out
                }
            },
            move |py, (name, ctx, tx): FunctionCall| {
                let f = functions
                    .get_item(&name)?
                    .ok_or_else(|| PyException::new_err(format!("no function {name:?}")))?;
                let ctx = json_to_py(py, &ctx)?;
                let outcome = match f.call1((ctx,)).and_then(|v| outputs_of(&v)) {
                    Ok(outputs) => Ok(outputs),
                    // Ctrl-C and SystemExit end the run; other exceptions fail the step,
                    // retryably for the builtins that mean infrastructure trouble.
                    Err(e) if !e.is_instance_of::<PyException>(py) => return Err(e),
                    Err(e) => Err(StepFailure {
                        message: e.to_string(),
                        retry: e.is_instance_of::<PyTimeoutError>(py)
                            || e.is_instance_of::<PyConnectionError>(py),
                    }),
                };
                let _ = tx.send(outcome);
                Ok(())
            },
        )?
        .py_err(py)?;
        serialized_to_py(py, "result tree", &result)
    }

    /// The Amazon States Language definition (a dict) for Step Functions, with activity
    /// ARNs `<arn_prefix><pipeline>-control` and `<arn_prefix><pipeline>-<worker kind>`.
    #[pyo3(signature = (arn_prefix, *, selection=None, health_check=300.0))]
    fn export_asl(
        &self,
        py: Python<'_>,
        arn_prefix: &str,
        selection: Option<Bound<'_, PyAny>>,
        health_check: f64,
    ) -> PyResult<Py<PyAny>> {
        let p = self.build(py, Arc::default())?;
        let def = asl::definition(
            &p,
            &asl::Activities::named(&p, arn_prefix),
            &selection_of(py, selection.as_ref())?,
            seconds(py, "health_check", health_check)?,
        )
        .py_err(py)?;
        json_to_py(py, &def.to_string())
    }

    fn __repr__(&self) -> String {
        format!(
            "Pipeline({:?}, steps={:?})",
            self.file.name,
            self.file
                .steps
                .iter()
                .map(|s| s.name.as_str())
                .collect::<Vec<_>>()
        )
    }
}

impl PyPipeline {
    /// Keeps the definition and functions once the pipeline builds (names, cycles,
    /// functions all checked).
    fn checked(
        py: Python<'_>,
        file: PipelineFile,
        functions: Option<Bound<'_, PyDict>>,
    ) -> PyResult<Self> {
        let functions = functions.unwrap_or_else(|| PyDict::new(py));
        for (k, v) in functions.iter() {
            if !v.is_callable() {
                return Err(Error::invalid(format!("function {k}"), "is not callable")).py_err(py);
            }
        }
        let me = PyPipeline {
            file,
            functions: functions.unbind(),
        };
        me.build(py, Arc::default())?;
        Ok(me)
    }
}
