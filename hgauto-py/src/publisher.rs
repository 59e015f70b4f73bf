//! `hgauto.Publisher`, `hgauto.DirPublisher` and `hgauto.Artifact`.

use std::path::PathBuf;
use std::sync::Arc;

use pyo3::prelude::*;

use hgauto_core::{Artifact, DirPublisher, Publisher};

use crate::errors::IntoPyResult;
use crate::runtime::wait;

/// A file to publish under a name, with its sha256 and size computed when it is described.
#[pyclass(frozen, from_py_object, module = "hgauto", name = "Artifact")]
#[derive(Clone)]
pub struct PyArtifact {
    pub inner: Artifact,
}

#[pymethods]
impl PyArtifact {
    /// Describes `path`, published as `name` (default: its file name).
    #[new]
    #[pyo3(signature = (path, name=None))]
    fn new(py: Python<'_>, path: PathBuf, name: Option<String>) -> PyResult<Self> {
        // Hashing reads the whole file: on a blocking thread, waited for like any other call,
        // so the GIL is free and Ctrl-C interrupts it.
        let hashed = wait(py, async move {
            tokio::task::spawn_blocking(move || match name {
                Some(n) => Artifact::named(&path, n),
                None => Artifact::from_file(&path),
            })
            .await
            .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))
        })?;
        hashed.py_err(py).map(|inner| PyArtifact { inner })
    }

    /// The file on this host.
    #[getter]
    fn path(&self) -> PathBuf {
        self.inner.path.clone()
    }
    /// The published name.
    #[getter]
    fn name(&self) -> &str {
        &self.inner.name
    }
    /// Lowercase hex sha256 of the content.
    #[getter]
    fn sha256(&self) -> &str {
        &self.inner.sha256
    }
    /// Size in bytes.
    #[getter]
    fn size(&self) -> u64 {
        self.inner.size
    }

    fn __repr__(&self) -> String {
        format!(
            "Artifact({:?}, name={:?}, sha256={:?}, size={})",
            self.inner.path.display().to_string(),
            self.inner.name,
            self.inner.sha256,
            self.inner.size
        )
    }
}

/// An `Artifact`, or a path to describe as one.
#[derive(FromPyObject)]
pub(crate) enum ArtifactLike {
    Artifact(PyArtifact),
    Path(PathBuf),
}

impl ArtifactLike {
    fn resolve(self) -> hgauto_core::Result<Artifact> {
        match self {
            ArtifactLike::Artifact(a) => Ok(a.inner),
            ArtifactLike::Path(p) => Artifact::from_file(&p),
        }
    }
}

/// What a `publish` did.
#[pyclass(frozen, get_all, module = "hgauto")]
pub struct PublishReport {
    /// Names uploaded by this call.
    published: Vec<String>,
    /// Names that were already there with the same content.
    already_present: Vec<String>,
}

#[pymethods]
impl PublishReport {
    fn __repr__(&self) -> String {
        format!(
            "PublishReport(published={:?}, already_present={:?})",
            self.published, self.already_present
        )
    }
}

/// Puts artifacts somewhere, idempotently. Subclassed by `DirPublisher`,
/// `hgauto.ssh.SshPublisher` and `hgauto.aws.S3Publisher`.
#[pyclass(subclass, frozen, module = "hgauto", name = "Publisher")]
pub struct PyPublisher {
    pub inner: Arc<dyn Publisher>,
}

#[pymethods]
impl PyPublisher {
    /// Publishes every artifact (`Artifact`s or paths). Names already published with the
    /// same sha256 are skipped; with another sha256 they raise `ConflictError`.
    fn publish(&self, py: Python<'_>, artifacts: Vec<ArtifactLike>) -> PyResult<PublishReport> {
        let p = self.inner.clone();
        let report = wait(py, async move {
            let list = artifacts
                .into_iter()
                .map(ArtifactLike::resolve)
                .collect::<hgauto_core::Result<Vec<_>>>()?;
            p.publish(&list).await
        })?
        .py_err(py)?;
        Ok(PublishReport {
            published: report.published,
            already_present: report.already_present,
        })
    }

    /// Whether the artifact is already published with the same content.
    fn exists(&self, py: Python<'_>, artifact: ArtifactLike) -> PyResult<bool> {
        let p = self.inner.clone();
        wait(py, async move { p.exists(&artifact.resolve()?).await })?.py_err(py)
    }
}

/// Publishes into a local directory (atomic renames, sha256 sidecar files).
#[pyclass(extends = PyPublisher, frozen, module = "hgauto", name = "DirPublisher")]
pub struct PyDirPublisher;

#[pymethods]
impl PyDirPublisher {
    #[new]
    fn new(dir: PathBuf) -> PyClassInitializer<Self> {
        PyClassInitializer::from(PyPublisher {
            inner: Arc::new(DirPublisher::new(dir)),
        })
        .add_subclass(PyDirPublisher)
    }
}
