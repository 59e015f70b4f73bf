//! `hgauto.Machine`: run commands and move files on any backend; `hgauto.fan_out`.

use std::path::PathBuf;
use std::sync::Arc;

use pyo3::prelude::*;
use pyo3::types::PyBytes;

use hgauto_core::{Command, ExitStatus, Output, RemoteMachine, Stream, SyncOptions, SyncReport};

use crate::convert::{platform_name, seconds, CommandArgs};
use crate::errors::{to_py_with, IntoPyResult};
use crate::runtime::{wait, wait_calling};

/// One machine: local sandbox, SSH host, SSM instance. Subclassed by `hgauto.ssh.SshMachine`
/// and `hgauto.aws.SsmMachine`; providers hand out plain `Machine`s.
#[pyclass(subclass, frozen, module = "hgauto", name = "Machine")]
pub struct PyMachine {
    pub inner: Arc<dyn RemoteMachine>,
}

impl PyMachine {
    pub fn new(inner: Arc<dyn RemoteMachine>) -> Self {
        PyMachine { inner }
    }
}

#[pymethods]
impl PyMachine {
    /// The machine's id, unique within its provider.
    #[getter]
    fn id(&self) -> &str {
        self.inner.id()
    }

    /// `"linux"` or `"windows"`.
    #[getter]
    fn platform(&self) -> &'static str {
        platform_name(self.inner.platform())
    }

    /// Runs a command and returns its result.
    #[pyo3(signature = (cmd, *, check=true, env=None, cwd=None, timeout=None, stdin=None, on_line=None, idempotent=false))]
    #[allow(clippy::too_many_arguments)]
    fn run(
        &self,
        py: Python<'_>,
        cmd: &Bound<'_, PyAny>,
        check: bool,
        env: Option<std::collections::BTreeMap<String, String>>,
        cwd: Option<String>,
        timeout: Option<f64>,
        stdin: Option<&Bound<'_, PyAny>>,
        on_line: Option<Bound<'_, PyAny>>,
        idempotent: bool,
    ) -> PyResult<Py<RunResult>> {
        let command = CommandArgs {
            cmd,
            env,
            cwd,
            timeout,
            stdin,
            idempotent,
        }
        .build(py)?;
        let machine = self.inner.clone();
        let cmd2 = command.clone();
        let output = wait_calling(
            py,
            on_line,
            |events| async move {
                match events {
                    None => machine.exec(&cmd2).await,
                    Some(events) => {
                        let mut sink =
                            move |s: Stream, line: &[u8]| events.send((s, line.to_vec()));
                        machine.exec_streaming(&cmd2, &mut sink).await
                    }
                }
            },
            |callback, (stream, line): (Stream, Vec<u8>)| {
                let name = match stream {
                    Stream::Stdout => "stdout",
                    Stream::Stderr => "stderr",
                };
                callback.call1((name, String::from_utf8_lossy(&line)))
            },
        )?
        .py_err(py)?;
        let result = Bound::new(py, RunResult::new(self.inner.id(), &command, output))?;
        if check {
            RunResult::check_status(&result)?;
        }
        Ok(result.unbind())
    }

    /// Copies the local file `local` to `remote` on the machine (atomically, keeping its mode).
    fn put(&self, py: Python<'_>, local: PathBuf, remote: String) -> PyResult<()> {
        let m = self.inner.clone();
        wait(py, async move { m.put(&local, &remote).await })?.py_err(py)
    }

    /// Copies `remote` on the machine to the local file `local`.
    fn get(&self, py: Python<'_>, remote: String, local: PathBuf) -> PyResult<()> {
        let m = self.inner.clone();
        wait(py, async move { m.get(&remote, &local).await })?.py_err(py)
    }

    /// Makes `remote_dir` mirror `local_dir`, sending only what changed.
    #[pyo3(signature = (local_dir, remote_dir, *, delete=false, compress=false))]
    fn sync_tree(
        &self,
        py: Python<'_>,
        local_dir: PathBuf,
        remote_dir: String,
        delete: bool,
        compress: bool,
    ) -> PyResult<PySyncReport> {
        let m = self.inner.clone();
        let opts = SyncOptions { delete, compress };
        let report = wait(py, async move {
            m.sync_tree(&local_dir, &remote_dir, &opts).await
        })?
        .py_err(py)?;
        Ok(report.into())
    }

    /// Waits until the machine accepts commands (at most `timeout` seconds).
    #[pyo3(signature = (timeout=300.0))]
    fn wait_ready(&self, py: Python<'_>, timeout: f64) -> PyResult<()> {
        let limit = seconds(py, "timeout", timeout)?;
        let m = self.inner.clone();
        wait(py, async move { m.wait_ready(limit).await })?.py_err(py)
    }

    fn __repr__(&self) -> String {
        format!("<Machine {} ({})>", self.inner.id(), self.platform())
    }
}

/// How a command ended, and what it wrote.
#[pyclass(frozen, module = "hgauto")]
pub struct RunResult {
    #[pyo3(get)]
    machine: String,
    cmd: Command,
    output: Output,
}

impl RunResult {
    fn new(machine: &str, cmd: &Command, output: Output) -> Self {
        RunResult {
            machine: machine.to_owned(),
            cmd: cmd.clone(),
            output,
        }
    }

    /// `CommandFailed` (naming the machine, the command and the end of stderr) unless
    /// the command succeeded, with this result attached as `.result`.
    fn check_status(slf: &Bound<'_, Self>) -> PyResult<()> {
        let r = slf.get();
        let Err(err) = r.output.clone().check(&r.machine, &r.cmd) else {
            return Ok(());
        };
        let obj = slf.clone().unbind();
        Err(to_py_with(slf.py(), err, |attrs| {
            attrs.set_item("result", obj)
        }))
    }
}

#[pymethods]
impl RunResult {
    /// The command line, for display.
    #[getter]
    fn command(&self) -> String {
        self.cmd.display()
    }

    /// The exit code, or `None` when a signal ended the command.
    #[getter]
    fn exit_code(&self) -> Option<i32> {
        self.output.status.code()
    }

    /// The signal that ended the command, if one did.
    #[getter]
    fn signal(&self) -> Option<i32> {
        match self.output.status {
            ExitStatus::Signal(s) => Some(s),
            ExitStatus::Code(_) => None,
        }
    }

    /// True for exit code 0.
    #[getter]
    fn ok(&self) -> bool {
        self.output.status.success()
    }

    /// Standard output as text (invalid UTF-8 replaced).
    #[getter]
    fn stdout(&self) -> String {
        self.output.stdout_str()
    }

    /// Standard error as text (invalid UTF-8 replaced).
    #[getter]
    fn stderr(&self) -> String {
        self.output.stderr_str()
    }

    /// Standard output, exactly as received.
    #[getter]
    fn stdout_bytes<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.output.stdout)
    }

    /// Standard error, exactly as received.
    #[getter]
    fn stderr_bytes<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.output.stderr)
    }

    /// Seconds from start to exit.
    #[getter]
    fn duration(&self) -> f64 {
        self.output.duration.as_secs_f64()
    }

    /// The transport kept only part of the output (SSM without an output bucket).
    #[getter]
    fn truncated(&self) -> bool {
        self.output.truncated
    }

    /// Raises `CommandFailed` unless the command succeeded; returns the result otherwise.
    fn check(slf: Bound<'_, Self>) -> PyResult<Bound<'_, Self>> {
        Self::check_status(&slf)?;
        Ok(slf)
    }

    fn __repr__(&self) -> String {
        format!(
            "RunResult(machine={:?}, command={:?}, {}, duration={:.3})",
            self.machine,
            self.cmd.display(),
            self.output.status,
            self.duration()
        )
    }
}

/// What a `sync_tree` did.
#[pyclass(frozen, get_all, module = "hgauto", name = "SyncReport")]
pub struct PySyncReport {
    files_sent: u64,
    bytes_sent: u64,
    files_unchanged: u64,
    symlinks: u64,
    deleted: u64,
}

impl From<SyncReport> for PySyncReport {
    fn from(r: SyncReport) -> Self {
        PySyncReport {
            files_sent: r.files_sent,
            bytes_sent: r.bytes_sent,
            files_unchanged: r.files_unchanged,
            symlinks: r.symlinks,
            deleted: r.deleted,
        }
    }
}

#[pymethods]
impl PySyncReport {
    fn __repr__(&self) -> String {
        format!(
            "SyncReport(files_sent={}, bytes_sent={}, files_unchanged={}, symlinks={}, deleted={})",
            self.files_sent, self.bytes_sent, self.files_unchanged, self.symlinks, self.deleted
        )
    }
}

/// One machine's outcome of a `fan_out`: a result, or the error that kept it from running.
#[pyclass(frozen, get_all, module = "hgauto")]
pub struct HostResult {
    machine: String,
    result: Option<Py<RunResult>>,
    error: Option<Py<PyAny>>,
}

#[pymethods]
impl HostResult {
    /// True when the command ran and exited 0.
    #[getter]
    fn ok(&self, py: Python<'_>) -> bool {
        self.result.as_ref().is_some_and(|r| r.bind(py).get().ok())
    }

    fn __repr__(&self, py: Python<'_>) -> String {
        match (&self.result, &self.error) {
            (Some(r), _) => format!(
                "HostResult({:?}, {})",
                self.machine,
                r.bind(py).get().output.status
            ),
            (None, Some(e)) => format!("HostResult({:?}, error={})", self.machine, e.bind(py)),
            (None, None) => format!("HostResult({:?})", self.machine),
        }
    }
}

/// Runs one command on every machine, at most `parallelism` at once. One machine failing
/// does not stop the others; results come back in the order of `machines`.
#[pyfunction]
#[pyo3(signature = (machines, cmd, *, parallelism=32, env=None, cwd=None, timeout=None, idempotent=false))]
#[allow(clippy::too_many_arguments)]
pub(crate) fn fan_out(
    py: Python<'_>,
    machines: Vec<Bound<'_, PyMachine>>,
    cmd: &Bound<'_, PyAny>,
    parallelism: usize,
    env: Option<std::collections::BTreeMap<String, String>>,
    cwd: Option<String>,
    timeout: Option<f64>,
    idempotent: bool,
) -> PyResult<Vec<HostResult>> {
    let command = CommandArgs {
        cmd,
        env,
        cwd,
        timeout,
        stdin: None,
        idempotent,
    }
    .build(py)?;
    let ms: Vec<Arc<dyn RemoteMachine>> = machines.iter().map(|m| m.get().inner.clone()).collect();
    let c = command.clone();
    let results = wait(py, async move {
        hgauto_core::fan_out(&ms, &c, parallelism).await
    })?;
    results
        .into_iter()
        .map(|h| {
            Ok(match h.result {
                Ok(out) => HostResult {
                    result: Some(Py::new(py, RunResult::new(&h.machine, &command, out))?),
                    machine: h.machine,
                    error: None,
                },
                Err(e) => HostResult {
                    machine: h.machine,
                    result: None,
                    error: Some(crate::errors::to_py(py, e).into_value(py).into_any()),
                },
            })
        })
        .collect()
}
