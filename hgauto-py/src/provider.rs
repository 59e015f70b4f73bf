//! `hgauto.Provider` and `hgauto.LocalProvider`: create and destroy machines;
//! `hgauto.MachineSpec`; the `machines(...)` context manager.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use pyo3::prelude::*;
use pyo3::types::{PyList, PyString};

use hgauto_core::spec::ImageFile;
use hgauto_core::{
    Error, ImageRecipe, LocalProvider, MachineSpec, ManagedResource, RemoteMachine,
    ResourceProvider, TemporaryMachines,
};

use crate::convert::{platform_name, seconds};
use crate::errors::{to_py, IntoPyResult};
use crate::machine::PyMachine;
use crate::runtime::{wait, wait_abandoning, wait_finishing};

/// What kind of machine to provision.
#[pyclass(frozen, from_py_object, module = "hgauto", name = "MachineSpec")]
#[derive(Clone)]
pub struct PyMachineSpec {
    pub inner: MachineSpec,
}

#[pymethods]
impl PyMachineSpec {
    #[new]
    #[pyo3(signature = (platform="linux", *, image=None, instance_type=None, lifetime=7200.0, labels=None))]
    fn new(
        py: Python<'_>,
        platform: &str,
        image: Option<String>,
        instance_type: Option<String>,
        lifetime: f64,
        labels: Option<BTreeMap<String, String>>,
    ) -> PyResult<Self> {
        let mut spec = MachineSpec::for_platform(crate::convert::platform(py, platform)?);
        spec.image = image;
        spec.instance_type = instance_type;
        spec.lifetime = seconds(py, "lifetime", lifetime)?;
        spec.labels = labels.unwrap_or_default();
        Ok(PyMachineSpec { inner: spec })
    }

    /// `"linux"` or `"windows"`.
    #[getter]
    fn platform(&self) -> &'static str {
        platform_name(self.inner.platform)
    }
    /// The image id, or `None` for the provider's default.
    #[getter]
    fn image(&self) -> Option<String> {
        self.inner.image.clone()
    }
    /// The instance type, or `None` for the provider's default.
    #[getter]
    fn instance_type(&self) -> Option<String> {
        self.inner.instance_type.clone()
    }
    /// Seconds after which a sweep may remove the machine.
    #[getter]
    fn lifetime(&self) -> f64 {
        self.inner.lifetime.as_secs_f64()
    }
    /// Labels, recorded as tags where the provider has them.
    #[getter]
    fn labels(&self) -> BTreeMap<String, String> {
        self.inner.labels.clone()
    }

    fn __repr__(&self) -> String {
        format!(
            "MachineSpec({:?}, image={:?}, instance_type={:?}, lifetime={})",
            self.platform(),
            self.inner.image,
            self.inner.instance_type,
            self.inner.lifetime.as_secs_f64()
        )
    }
}

fn spec_or_default(spec: Option<PyMachineSpec>) -> MachineSpec {
    spec.map(|s| s.inner).unwrap_or_else(MachineSpec::linux)
}

/// Creates and destroys machines. Subclassed by `LocalProvider` and `hgauto.aws.Ec2Provider`.
#[pyclass(subclass, frozen, module = "hgauto", name = "Provider")]
pub struct PyProvider {
    pub inner: Arc<dyn ResourceProvider>,
}

/// Provisions; an interrupt (Ctrl-C, SIGTERM) drops the provision at once and the provider
/// undoes what it had made before the exception is raised (see [`wait_abandoning`]).
fn provision_guarded(
    py: Python<'_>,
    provider: Arc<dyn ResourceProvider>,
    spec: MachineSpec,
    count: usize,
) -> PyResult<Vec<Arc<dyn RemoteMachine>>> {
    wait_abandoning(py, async move { provider.provision(&spec, count).await })?.py_err(py)
}

fn terminate_guarded(
    py: Python<'_>,
    provider: Arc<dyn ResourceProvider>,
    ids: Vec<String>,
) -> PyResult<()> {
    wait_finishing(py, async move { provider.terminate(&ids).await })?.py_err(py)
}

/// Machine ids from a list of `Machine`s or strings.
fn ids_of(items: &Bound<'_, PyAny>) -> PyResult<Vec<String>> {
    let mut ids = Vec::new();
    for item in items.try_iter()? {
        let item = item?;
        if let Ok(m) = item.cast::<PyMachine>() {
            ids.push(m.get().inner.id().to_owned());
        } else if let Ok(s) = item.cast::<PyString>() {
            ids.push(s.extract::<String>()?);
        } else {
            return Err(to_py(
                item.py(),
                Error::invalid(
                    "machines",
                    "must be a sequence of Machine objects or machine ids",
                ),
            ));
        }
    }
    Ok(ids)
}

#[pymethods]
impl PyProvider {
    /// The provider's name (`"local"`, `"ec2"`).
    #[getter]
    fn name(&self) -> String {
        self.inner.name().to_owned()
    }

    /// Creates `count` machines of `spec` (default: Linux). You own them: terminate them,
    /// or use `machines(...)`, which does it for you.
    #[pyo3(signature = (spec=None, count=1))]
    fn provision(
        &self,
        py: Python<'_>,
        spec: Option<PyMachineSpec>,
        count: usize,
    ) -> PyResult<Vec<PyMachine>> {
        let ms = provision_guarded(py, self.inner.clone(), spec_or_default(spec), count)?;
        Ok(ms.into_iter().map(PyMachine::new).collect())
    }

    /// Destroys machines (given as `Machine` objects or ids). Unknown ids are ignored.
    fn terminate(&self, py: Python<'_>, machines: &Bound<'_, PyAny>) -> PyResult<()> {
        let ids = ids_of(machines)?;
        terminate_guarded(py, self.inner.clone(), ids)
    }

    /// A context manager: `with provider.machines(spec, count=2) as ms:` provisions on
    /// entry and terminates on every exit (return, exception, KeyboardInterrupt).
    #[pyo3(signature = (spec=None, count=1))]
    fn machines(&self, spec: Option<PyMachineSpec>, count: usize) -> MachineSet {
        MachineSet {
            provider: self.inner.clone(),
            spec: spec_or_default(spec),
            count,
            guard: std::sync::Mutex::new(None),
            entered: AtomicBool::new(false),
        }
    }

    /// Returns the id of an image built from a recipe, building it only when no image
    /// with the recipe's fingerprint exists.
    #[pyo3(signature = (name, *, base, platform="linux", scripts=Vec::new(), files=Vec::new(), instance_type=None, user_data=None))]
    #[allow(clippy::too_many_arguments)]
    fn ensure_image(
        &self,
        py: Python<'_>,
        name: String,
        base: String,
        platform: &str,
        scripts: Vec<String>,
        files: Vec<(PathBuf, String)>,
        instance_type: Option<String>,
        user_data: Option<String>,
    ) -> PyResult<String> {
        let mut recipe = ImageRecipe::new(name, crate::convert::platform(py, platform)?, base);
        recipe.bootstrap = scripts;
        recipe.files = files
            .into_iter()
            .map(|(source, dest)| ImageFile { source, dest })
            .collect();
        recipe.instance_type = instance_type;
        recipe.user_data = user_data;
        let p = self.inner.clone();
        wait(py, async move { p.ensure_image(&recipe).await })?.py_err(py)
    }

    /// Everything this provider created and has not removed (from its ledger and the backend).
    fn list_managed(&self, py: Python<'_>) -> PyResult<Vec<PyManagedResource>> {
        let p = self.inner.clone();
        let list = wait(py, async move { p.list_managed().await })?.py_err(py)?;
        Ok(list.into_iter().map(PyManagedResource::from).collect())
    }

    /// Removes everything this provider created, even what a crashed run left behind.
    /// Returns the removed ids.
    fn purge(&self, py: Python<'_>) -> PyResult<Vec<String>> {
        let p = self.inner.clone();
        let report = wait_finishing(py, async move { p.purge().await })?.py_err(py)?;
        Ok(report.removed)
    }

    fn __repr__(&self) -> String {
        format!("<Provider {}>", self.inner.name())
    }
}

/// Machines that exist only inside a `with` block: a thin wrapper over core's
/// [`TemporaryMachines`] guard, so the block's machines are registered like every Rust
/// caller's (a dropped set, or one the garbage collector takes without `__exit__`, still
/// terminates them).
#[pyclass(frozen, module = "hgauto")]
pub struct MachineSet {
    provider: Arc<dyn ResourceProvider>,
    spec: MachineSpec,
    count: usize,
    guard: std::sync::Mutex<Option<TemporaryMachines>>,
    entered: AtomicBool,
}

impl MachineSet {
    fn guard(&self) -> std::sync::MutexGuard<'_, Option<TemporaryMachines>> {
        self.guard.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Drop for MachineSet {
    /// A set dropped while its machines live (never exited) lets core's guard terminate
    /// them, with the GIL released: the guard waits for a helper thread whose log records
    /// reach Python's `logging`, which needs the GIL.
    fn drop(&mut self) {
        let Some(set) = self.guard().take() else {
            return;
        };
        Python::attach(|py| py.detach(move || drop(set)));
    }
}

/// Provisions a guarded set; an interrupt drops the provision at once and the provider
/// undoes what it had made before the exception is raised (see [`wait_abandoning`]).
fn provision_set(
    py: Python<'_>,
    provider: Arc<dyn ResourceProvider>,
    spec: MachineSpec,
    count: usize,
) -> PyResult<TemporaryMachines> {
    wait_abandoning(py, async move {
        TemporaryMachines::provision(provider, &spec, count).await
    })?
    .py_err(py)
}

#[pymethods]
impl MachineSet {
    fn __enter__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        if self.entered.swap(true, Ordering::SeqCst) {
            return Err(to_py(
                py,
                Error::invalid("machines()", "this context manager was already entered"),
            ));
        }
        // SIGTERM/SIGHUP clean up like Ctrl-C while the block is open (hgauto._signals).
        let signals = py.import("hgauto._signals")?;
        signals.call_method0("enter")?;
        let set = match provision_set(py, self.provider.clone(), self.spec.clone(), self.count) {
            Ok(set) => set,
            Err(e) => {
                signals.call_method0("leave")?;
                return Err(e);
            }
        };
        let objs = set
            .machines()
            .iter()
            .map(|m| Py::new(py, PyMachine::new(m.clone())))
            .collect::<PyResult<Vec<_>>>()?;
        *self.guard() = Some(set);
        PyList::new(py, objs)
    }

    #[pyo3(signature = (exc_type=None, _exc=None, _tb=None))]
    fn __exit__(
        &self,
        py: Python<'_>,
        exc_type: Option<Bound<'_, PyAny>>,
        _exc: Option<Bound<'_, PyAny>>,
        _tb: Option<Bound<'_, PyAny>>,
    ) -> PyResult<bool> {
        let Some(set) = self.guard().take() else {
            py.import("hgauto._signals")?.call_method0("leave")?;
            return Ok(false);
        };
        let ids = set.ids();
        let result =
            wait_finishing(py, async move { set.terminate().await }).and_then(|r| r.py_err(py));
        py.import("hgauto._signals")?.call_method0("leave")?;
        match (result, exc_type) {
            (Ok(()), _) => Ok(false),
            // Do not hide the exception that ended the block; say what leaked.
            (Err(e), Some(_)) => {
                tracing::error!(machines = ?ids, error = %e, "terminate failed; run purge");
                Ok(false)
            }
            (Err(e), None) => Err(e),
        }
    }

    /// The ids of the machines alive in this block.
    #[getter]
    fn ids(&self) -> Vec<String> {
        self.guard()
            .as_ref()
            .map(TemporaryMachines::ids)
            .unwrap_or_default()
    }
}

#[pyclass(frozen, get_all, module = "hgauto", name = "ManagedResource")]
pub struct PyManagedResource {
    id: String,
    kind: String,
    created_at: u64,
    deadline: Option<u64>,
    exists: bool,
}

impl From<ManagedResource> for PyManagedResource {
    fn from(r: ManagedResource) -> Self {
        PyManagedResource {
            id: r.id,
            kind: r.kind.as_str().to_owned(),
            created_at: r.created_at,
            deadline: r.deadline,
            exists: r.exists,
        }
    }
}

#[pymethods]
impl PyManagedResource {
    fn __repr__(&self) -> String {
        format!(
            "ManagedResource({:?}, kind={:?}, exists={})",
            self.id, self.kind, self.exists
        )
    }
}

/// Machines on this host: each a sandboxed home directory, its processes in their own
/// process groups, recorded in a ledger like any cloud machine.
#[pyclass(extends = PyProvider, frozen, module = "hgauto", name = "LocalProvider")]
pub struct PyLocalProvider;

#[pymethods]
impl PyLocalProvider {
    #[new]
    #[pyo3(signature = (state_dir=None, *, prefix=None))]
    fn new(
        py: Python<'_>,
        state_dir: Option<PathBuf>,
        prefix: Option<String>,
    ) -> PyResult<PyClassInitializer<Self>> {
        let mut p = match state_dir {
            Some(dir) => LocalProvider::new(dir),
            None => LocalProvider::from_env(),
        }
        .py_err(py)?;
        if let Some(prefix) = prefix {
            p = p.with_prefix(prefix).py_err(py)?;
        }
        Ok(PyClassInitializer::from(PyProvider { inner: Arc::new(p) })
            .add_subclass(PyLocalProvider))
    }
}
