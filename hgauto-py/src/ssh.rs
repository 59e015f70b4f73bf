//! `hgauto.ssh`: `SshMachine` and `SshPublisher` (feature `ssh`).

use std::path::PathBuf;
use std::sync::Arc;

use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyString};

use hgauto_core::Error;
use hgauto_ssh::{Auth, HostKeyPolicy, SshConfig, SshMachine, SshPublisher};

use crate::convert::{seconds, PyRetryPolicy};
use crate::errors::{to_py, IntoPyResult};
use crate::machine::PyMachine;
use crate::publisher::PyPublisher;

/// A machine reached over SSH, with a pool of connections and hgauto's own known_hosts.
#[pyclass(extends = PyMachine, frozen, module = "hgauto.ssh", name = "SshMachine")]
pub struct PySshMachine {
    machine: SshMachine,
}

#[pymethods]
impl PySshMachine {
    /// `host_keys` is `"strict"` (only recorded keys, the default), `"accept-new"` (trust
    /// on first use, refuse a changed key) or the host's raw public key blob (`bytes`).
    /// Authenticate with `key_file` (and `passphrase`), an in-memory `key`, or `agent=True`.
    /// `retry` governs reconnects of operations that are safe to repeat.
    #[new]
    #[pyo3(signature = (host, *, user, port=22, key_file=None, key=None, passphrase=None, agent=false, host_keys=None, state_dir=None, known_hosts=None, connect_timeout=10.0, max_connections=8, platform="linux", compress=false, retry=None, id=None))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        host: String,
        user: String,
        port: u16,
        key_file: Option<PathBuf>,
        key: Option<String>,
        passphrase: Option<String>,
        agent: bool,
        host_keys: Option<Bound<'_, PyAny>>,
        state_dir: Option<PathBuf>,
        known_hosts: Option<PathBuf>,
        connect_timeout: f64,
        max_connections: usize,
        platform: &str,
        compress: bool,
        retry: Option<PyRetryPolicy>,
        id: Option<String>,
    ) -> PyResult<PyClassInitializer<Self>> {
        let auth = match (key_file, key, agent) {
            (Some(path), None, false) => Auth::KeyFile { path, passphrase },
            (None, Some(k), false) => Auth::KeyMemory(k),
            (None, None, true) => Auth::Agent,
            _ => {
                return Err(to_py(
                    py,
                    Error::invalid(
                        "SSH authentication",
                        "give exactly one of key_file=, key= or agent=True",
                    ),
                ))
            }
        };
        let state_dir = match state_dir {
            Some(d) => d,
            None => hgauto_core::env::default_state_dir().py_err(py)?,
        };
        let mut cfg = SshConfig::new(host, port, user, auth, state_dir)
            .with_host_keys(host_key_policy(py, host_keys)?)
            .with_connect_timeout(seconds(py, "connect_timeout", connect_timeout)?)
            .with_platform(crate::convert::platform(py, platform)?)
            .with_compression(compress);
        if let Some(kh) = known_hosts {
            cfg.known_hosts = kh;
        }
        cfg.max_connections = max_connections.max(1);
        if let Some(r) = retry {
            cfg.retry = r.inner;
        }
        let machine = match id {
            Some(id) => SshMachine::new(id, cfg),
            None => SshMachine::from_config(cfg),
        };
        Ok(
            PyClassInitializer::from(PyMachine::new(Arc::new(machine.clone())))
                .add_subclass(PySshMachine { machine }),
        )
    }

    /// `user@host:port`.
    #[getter]
    fn address(&self) -> String {
        self.machine.config().display()
    }

    /// Closes idle connections (the next operation reconnects).
    fn disconnect(&self) {
        self.machine.disconnect()
    }
}

fn host_key_policy(py: Python<'_>, v: Option<Bound<'_, PyAny>>) -> PyResult<HostKeyPolicy> {
    let Some(v) = v else {
        return Ok(HostKeyPolicy::Strict);
    };
    if let Ok(b) = v.cast::<PyBytes>() {
        return Ok(HostKeyPolicy::Pinned(b.as_bytes().to_vec()));
    }
    if let Ok(s) = v.cast::<PyString>() {
        if let Ok(policy) = s.extract::<String>()?.parse::<HostKeyPolicy>() {
            return Ok(policy);
        }
    }
    Err(to_py(
        py,
        Error::invalid(
            format!("host_keys {v}"),
            "must be \"strict\", \"accept-new\" or the host's public key blob (bytes)",
        ),
    ))
}

/// Publishes over SFTP into a directory on an SSH machine.
#[pyclass(extends = PyPublisher, frozen, module = "hgauto.ssh", name = "SshPublisher")]
pub struct PySshPublisher;

#[pymethods]
impl PySshPublisher {
    /// `mode` is the permission bits of published files (default 0o644).
    #[new]
    #[pyo3(signature = (machine, dir, *, mode=None))]
    fn new(
        machine: PyRef<'_, PySshMachine>,
        dir: String,
        mode: Option<i32>,
    ) -> PyClassInitializer<Self> {
        let mut p = SshPublisher::new(machine.machine.clone(), dir);
        if let Some(m) = mode {
            p = p.with_mode(m);
        }
        PyClassInitializer::from(PyPublisher { inner: Arc::new(p) }).add_subclass(PySshPublisher)
    }
}
