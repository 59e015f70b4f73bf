//! Python values into hgauto's Rust types, with errors that name the argument.

use std::path::PathBuf;
use std::time::Duration;

use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyString};

use hgauto_core::{Command, Error, Jitter, Platform, RetryPolicy};

use crate::errors::{to_py, IntoPyResult};

/// A non-negative, finite number of seconds as a [`Duration`].
pub(crate) fn seconds(py: Python<'_>, what: &str, secs: f64) -> PyResult<Duration> {
    Duration::try_from_secs_f64(secs).map_err(|_| {
        to_py(
            py,
            Error::invalid(what, format!("{secs} is not a number of seconds >= 0")),
        )
    })
}

/// `"linux"` or `"windows"`.
pub(crate) fn platform(py: Python<'_>, name: &str) -> PyResult<Platform> {
    name.parse::<Platform>().map_err(|e| to_py(py, e))
}

/// The Python name of a platform (core's own).
pub(crate) fn platform_name(p: Platform) -> &'static str {
    p.name()
}

/// Builds a [`Command`]: a string is a script for the machine's shell (`sh` or PowerShell),
/// a sequence is a program and its arguments, passed verbatim (never through a shell).
pub(crate) struct CommandArgs<'a, 'py> {
    /// The command.
    pub cmd: &'a Bound<'py, PyAny>,
    /// Extra environment variables.
    pub env: Option<std::collections::BTreeMap<String, String>>,
    /// Working directory on the machine.
    pub cwd: Option<String>,
    /// Time limit in seconds.
    pub timeout: Option<f64>,
    /// Bytes (or text, as UTF-8) for the command's stdin.
    pub stdin: Option<&'a Bound<'py, PyAny>>,
    /// Whether the command is safe to repeat after a dropped connection.
    pub idempotent: bool,
}

impl CommandArgs<'_, '_> {
    /// The [`Command`] these arguments describe.
    pub(crate) fn build(self, py: Python<'_>) -> PyResult<Command> {
        let mut command = if let Ok(s) = self.cmd.cast::<PyString>() {
            Command::script(s.extract::<String>()?)
        } else {
            // Extracted as paths: str and os.PathLike alike, passed on as OS strings.
            let parts: Vec<PathBuf> = self
                .cmd
                .try_iter()
                .and_then(|it| it.map(|p| p?.extract::<PathBuf>()).collect())
                .map_err(|_| {
                    to_py(
                        py,
                        Error::invalid(
                            "command",
                            "must be a string (a shell script) or a sequence of strings \
                             (a program and its arguments)",
                        ),
                    )
                })?;
            let Some((program, args)) = parts.split_first() else {
                return Err(to_py(py, Error::invalid("command", "is an empty sequence")));
            };
            Command::new(program).args(args)
        };
        for (k, v) in self.env.unwrap_or_default() {
            command = command.env(k, v);
        }
        if let Some(cwd) = self.cwd {
            command = command.current_dir(cwd);
        }
        if let Some(t) = self.timeout {
            command = command.timeout(seconds(py, "timeout", t)?);
        }
        if let Some(input) = self.stdin {
            let bytes: Vec<u8> = if let Ok(b) = input.cast::<PyBytes>() {
                b.as_bytes().to_vec()
            } else if let Ok(s) = input.cast::<PyString>() {
                s.extract::<String>()?.into_bytes()
            } else {
                return Err(to_py(py, Error::invalid("stdin", "must be bytes or str")));
            };
            command = command.stdin(bytes);
        }
        Ok(command.idempotent(self.idempotent))
    }
}

/// How often and how patiently to retry: `hgauto.RetryPolicy`.
#[pyclass(frozen, from_py_object, module = "hgauto", name = "RetryPolicy")]
#[derive(Clone)]
pub struct PyRetryPolicy {
    pub inner: RetryPolicy,
}

#[pymethods]
impl PyRetryPolicy {
    #[new]
    #[pyo3(signature = (max_retries=3, base_delay=1.0, factor=2.0, max_delay=30.0, jitter=true))]
    fn new(
        py: Python<'_>,
        max_retries: u32,
        base_delay: f64,
        factor: f64,
        max_delay: f64,
        jitter: bool,
    ) -> PyResult<Self> {
        let inner = RetryPolicy {
            max_retries,
            base_delay: seconds(py, "base_delay", base_delay)?,
            factor,
            max_delay: seconds(py, "max_delay", max_delay)?,
            jitter: if jitter { Jitter::Full } else { Jitter::None },
        };
        inner.validate("RetryPolicy").map_err(|e| to_py(py, e))?;
        Ok(PyRetryPolicy { inner })
    }

    /// Network operations (downloads, SSH reconnects).
    #[staticmethod]
    fn network() -> Self {
        PyRetryPolicy {
            inner: RetryPolicy::network(),
        }
    }

    /// Cheap, often-throttled API calls.
    #[staticmethod]
    fn cheap() -> Self {
        PyRetryPolicy {
            inner: RetryPolicy::cheap(),
        }
    }

    /// Expensive operations (builds, image creation).
    #[staticmethod]
    fn heavy() -> Self {
        PyRetryPolicy {
            inner: RetryPolicy::heavy(),
        }
    }

    /// No retries at all.
    #[staticmethod]
    fn never() -> Self {
        PyRetryPolicy {
            inner: RetryPolicy::none(),
        }
    }

    #[getter]
    fn max_retries(&self) -> u32 {
        self.inner.max_retries
    }
    #[getter]
    fn base_delay(&self) -> f64 {
        self.inner.base_delay.as_secs_f64()
    }
    #[getter]
    fn factor(&self) -> f64 {
        self.inner.factor
    }
    #[getter]
    fn max_delay(&self) -> f64 {
        self.inner.max_delay.as_secs_f64()
    }

    fn __repr__(&self) -> String {
        let r = &self.inner;
        format!(
            "RetryPolicy(max_retries={}, base_delay={}, factor={}, max_delay={}, jitter={})",
            r.max_retries,
            r.base_delay.as_secs_f64(),
            r.factor,
            r.max_delay.as_secs_f64(),
            if matches!(r.jitter, Jitter::None) {
                "False"
            } else {
                "True"
            }
        )
    }
}

/// A JSON text as the Python value `json.loads` makes of it.
pub(crate) fn json_to_py(py: Python<'_>, text: &str) -> PyResult<Py<PyAny>> {
    Ok(py.import("json")?.call_method1("loads", (text,))?.unbind())
}

/// A Python value as JSON, through `json.dumps`; `what` names it in the error.
pub(crate) fn py_to_json(
    py: Python<'_>,
    what: &str,
    value: &Bound<'_, PyAny>,
) -> PyResult<serde_json::Value> {
    let text: String = py
        .import("json")?
        .call_method1("dumps", (value,))?
        .extract()?;
    serde_json::from_str(&text)
        .map_err(|e| Error::invalid(what, e.to_string()))
        .py_err(py)
}

/// A serializable value (a status, a result tree) as the Python value of its JSON.
pub(crate) fn serialized_to_py<T: serde::Serialize>(
    py: Python<'_>,
    what: &str,
    value: &T,
) -> PyResult<Py<PyAny>> {
    let json = serde_json::to_string(value)
        .map_err(|e| Error::invalid(what, e.to_string()))
        .py_err(py)?;
    json_to_py(py, &json)
}
