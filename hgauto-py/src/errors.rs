//! hgauto's [`Error`] as Python exceptions.
//!
//! The classes live in `hgauto/errors.py`, so they can inherit from both `HgautoError` and
//! a builtin (`FileNotFoundError`, `TimeoutError`, `ConnectionError`, `ValueError`...),
//! which extension types cannot. This side only names the class and its attributes.

use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyDict;

use hgauto_core::{ApiErrorClass, Error};

/// Converts an hgauto error into the matching `hgauto.errors` exception.
pub(crate) fn to_py(py: Python<'_>, err: Error) -> PyErr {
    to_py_with(py, err, |_| Ok(()))
}

/// Like [`to_py`], letting `extra` add attributes (e.g. the failed command's result).
pub(crate) fn to_py_with(
    py: Python<'_>,
    err: Error,
    extra: impl FnOnce(&Bound<'_, PyDict>) -> PyResult<()>,
) -> PyErr {
    // Failing to build the exception is itself the error to raise.
    build(py, &err, extra).unwrap_or_else(|e| e)
}

fn build(
    py: Python<'_>,
    err: &Error,
    extra: impl FnOnce(&Bound<'_, PyDict>) -> PyResult<()>,
) -> PyResult<PyErr> {
    static FACTORY: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
    let factory = FACTORY.get_or_try_init(py, || -> PyResult<Py<PyAny>> {
        Ok(py
            .import("hgauto.errors")?
            .getattr("_from_native")?
            .unbind())
    })?;
    let attrs = PyDict::new(py);
    attrs.set_item("retryable", err.is_retryable())?;
    let kind = describe(err, &attrs)?;
    extra(&attrs)?;
    let exc = factory.bind(py).call1((kind, err.to_string(), attrs))?;
    Ok(PyErr::from_value(exc))
}

/// Names the exception kind of `err` and fills in its attributes.
fn describe(err: &Error, a: &Bound<'_, PyDict>) -> PyResult<&'static str> {
    Ok(match err {
        Error::InvalidInput { what, reason } => {
            a.set_item("what", what)?;
            a.set_item("reason", reason)?;
            "InvalidInput"
        }
        Error::Io {
            op,
            path,
            machine,
            source,
        } => {
            a.set_item("op", *op)?;
            a.set_item("filename", path)?;
            a.set_item("machine", machine)?;
            a.set_item("errno", source.raw_os_error())?;
            match source.kind() {
                std::io::ErrorKind::NotFound => "FileNotFound",
                std::io::ErrorKind::PermissionDenied => "PermissionDenied",
                _ => "IoError",
            }
        }
        Error::Spawn {
            machine,
            program,
            source,
        } => {
            a.set_item("machine", machine)?;
            a.set_item("filename", program)?;
            a.set_item("errno", source.raw_os_error())?;
            "SpawnError"
        }
        Error::Timeout {
            machine,
            what,
            after,
        } => {
            a.set_item("machine", machine)?;
            a.set_item("what", what)?;
            a.set_item("after", after.as_secs_f64())?;
            "Timeout"
        }
        Error::CommandFailed {
            machine,
            command,
            status,
            stderr_tail,
        } => {
            a.set_item("machine", machine)?;
            a.set_item("command", command)?;
            a.set_item("exit_code", status.code())?;
            a.set_item("stderr_tail", stderr_tail)?;
            "CommandFailed"
        }
        Error::Integrity {
            what,
            expected,
            actual,
        } => {
            a.set_item("what", what)?;
            a.set_item("expected", expected)?;
            a.set_item("actual", actual)?;
            "IntegrityError"
        }
        Error::Conflict { what, reason } => {
            a.set_item("what", what)?;
            a.set_item("reason", reason)?;
            "ConflictError"
        }
        Error::NotFound { what } => {
            a.set_item("what", what)?;
            "NotFound"
        }
        Error::NotSupported { backend, what } => {
            a.set_item("backend", backend)?;
            a.set_item("what", what)?;
            "NotSupported"
        }
        Error::Connection {
            machine,
            may_have_run,
            ..
        } => {
            a.set_item("machine", machine)?;
            a.set_item("may_have_run", *may_have_run)?;
            "NetworkError"
        }
        Error::HostKey {
            host,
            reason,
            expected,
            actual,
        } => {
            a.set_item("machine", host)?;
            a.set_item("reason", reason)?;
            a.set_item("expected", expected)?;
            a.set_item("actual", actual)?;
            "HostKeyError"
        }
        Error::Auth {
            machine,
            user,
            reason,
        } => {
            a.set_item("machine", machine)?;
            a.set_item("user", user)?;
            a.set_item("reason", reason)?;
            "AuthError"
        }
        Error::Provision {
            provider,
            action,
            resource,
            reason,
            ..
        } => {
            a.set_item("provider", provider)?;
            a.set_item("action", *action)?;
            a.set_item("resource", resource)?;
            a.set_item("reason", reason)?;
            "ProvisionError"
        }
        Error::Api {
            service,
            action,
            resource,
            class,
            code,
            ..
        } => {
            a.set_item("service", *service)?;
            a.set_item("action", *action)?;
            a.set_item("resource", resource)?;
            a.set_item("code", &**code)?;
            a.set_item("error_class", class.to_string())?;
            // The class picks the exception a caller already catches for that failure.
            match class {
                ApiErrorClass::NotFound => {
                    a.set_item("what", resource)?;
                    "NotFound"
                }
                ApiErrorClass::Denied => "AuthError",
                ApiErrorClass::Conflict => {
                    a.set_item("what", resource)?;
                    "ConflictError"
                }
                ApiErrorClass::Invalid => {
                    a.set_item("what", resource)?;
                    "InvalidInput"
                }
                ApiErrorClass::Provisioning => {
                    a.set_item("provider", *service)?;
                    "ProvisionError"
                }
                _ => "ApiError",
            }
        }
        Error::Interrupted { signal } => {
            a.set_item("signal", *signal)?;
            "Interrupted"
        }
        Error::LeaseLost {
            job, source_name, ..
        } => {
            a.set_item("job", job)?;
            a.set_item("source", source_name)?;
            "LeaseLost"
        }
        Error::Backend { backend, .. } => {
            a.set_item("backend", backend)?;
            "BackendError"
        }
        // `Error` is non-exhaustive: a variant added later is still an HgautoError.
        _ => "HgautoError",
    })
}

/// Turns `Result<T, Error>` into `PyResult<T>`.
pub(crate) trait IntoPyResult<T> {
    /// Converts the error side with [`to_py`].
    fn py_err(self, py: Python<'_>) -> PyResult<T>;
}

impl<T> IntoPyResult<T> for Result<T, Error> {
    fn py_err(self, py: Python<'_>) -> PyResult<T> {
        self.map_err(|e| to_py(py, e))
    }
}
