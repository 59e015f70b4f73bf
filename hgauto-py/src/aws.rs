//! `hgauto.aws`: `Ec2Provider`, `SsmMachine`, `S3Publisher` and `SqsJobSource` (feature
//! `aws`).
//!
//! Settings are `AwsConfig`'s fields as keyword arguments; they are checked by the same
//! code (and with the same messages) as a TOML config file.

use std::path::PathBuf;
use std::sync::Arc;

use pyo3::prelude::*;
use pyo3::types::PyDict;

use hgauto_aws::{AwsConfig, Ec2Provider, S3Publisher, SqsJobSource, SsmMachine};
use hgauto_core::Error;

use crate::errors::{to_py, IntoPyResult};
use crate::machine::PyMachine;
use crate::provider::PyProvider;
use crate::publisher::PyPublisher;
use crate::runtime::wait;

/// An `AwsConfig` from keyword arguments; without `region`, from the environment
/// (`HGAUTO_AWS_REGION` / `AWS_REGION` and the other `HGAUTO_*` variables) first.
fn config(py: Python<'_>, settings: Option<&Bound<'_, PyDict>>) -> PyResult<AwsConfig> {
    let mut fields = serde_json::Map::new();
    if let Some(kw) = settings {
        for (k, v) in kw.iter() {
            let key: String = k.extract()?;
            let value = if v.is_none() {
                continue;
            } else if let Ok(b) = v.extract::<bool>() {
                serde_json::Value::Bool(b)
            } else if let Ok(n) = v.extract::<u64>() {
                serde_json::Value::from(n)
            } else if let Ok(p) = v.extract::<PathBuf>() {
                // str and os.PathLike alike.
                serde_json::Value::String(p.to_string_lossy().into_owned())
            } else {
                return Err(to_py(
                    py,
                    Error::invalid(
                        format!("AWS setting {key}"),
                        "must be a string, a bool or a whole number",
                    ),
                ));
            };
            fields.insert(key, value);
        }
    }
    AwsConfig::from_settings(fields).py_err(py)
}

/// Machines on EC2 (Linux over SSH or SSM, Windows over SSM), from fingerprinted images,
/// tagged and recorded in a ledger before they are created.
#[pyclass(extends = PyProvider, frozen, module = "hgauto.aws", name = "Ec2Provider")]
pub struct PyEc2Provider {
    provider: Arc<Ec2Provider>,
}

#[pymethods]
impl PyEc2Provider {
    /// Keyword arguments are `AwsConfig` fields: `region`, `endpoint_url`, `profile`,
    /// `prefix`, `state_dir`, `allowed_cidr`, `instance_type`, `linux_image`, `ssh_user`,
    /// `owner`, `allow_unknown_region`, `linux_access` (`"ssh"`/`"ssm"`), `windows_image`,
    /// `ssm_bucket`.
    #[new]
    #[pyo3(signature = (**settings))]
    fn new(
        py: Python<'_>,
        settings: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<PyClassInitializer<Self>> {
        let cfg = config(py, settings)?;
        let provider = Arc::new(wait(py, Ec2Provider::new(cfg))?.py_err(py)?);
        Ok(PyClassInitializer::from(PyProvider {
            inner: provider.clone(),
        })
        .add_subclass(PyEc2Provider { provider }))
    }

    /// An SSM machine for an instance of this provider.
    #[pyo3(signature = (instance_id, *, platform="linux"))]
    fn ssm_machine(
        &self,
        py: Python<'_>,
        instance_id: &str,
        platform: &str,
    ) -> PyResult<Py<PySsmMachine>> {
        let m = self
            .provider
            .ssm_machine(instance_id, crate::convert::platform(py, platform)?);
        Py::new(py, PySsmMachine::wrap(m))
    }

    /// Where this state directory's key pair's private key lives (mode 0600).
    #[getter]
    fn private_key_path(&self, py: Python<'_>) -> PyResult<PathBuf> {
        self.provider.private_key_path().py_err(py)
    }
}

/// An instance driven through SSM Run Command; full output and file transfer go through
/// the `ssm_bucket` when one is set.
#[pyclass(extends = PyMachine, frozen, module = "hgauto.aws", name = "SsmMachine")]
pub struct PySsmMachine;

impl PySsmMachine {
    fn wrap(m: SsmMachine) -> PyClassInitializer<Self> {
        PyClassInitializer::from(PyMachine::new(Arc::new(m))).add_subclass(PySsmMachine)
    }
}

#[pymethods]
impl PySsmMachine {
    /// Keyword arguments after `platform` are `AwsConfig` fields, as for `Ec2Provider`.
    #[new]
    #[pyo3(signature = (instance_id, *, platform="linux", **settings))]
    fn new(
        py: Python<'_>,
        instance_id: String,
        platform: &str,
        settings: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<PyClassInitializer<Self>> {
        let platform = crate::convert::platform(py, platform)?;
        let cfg = config(py, settings)?;
        let m = wait(py, async move {
            SsmMachine::from_config(&cfg, instance_id, platform).await
        })?
        .py_err(py)?;
        Ok(Self::wrap(m))
    }
}

/// Publishes to `s3://bucket/prefix/name` with the sha256 checked by S3 itself; an
/// existing object with other content is a conflict, never overwritten.
#[pyclass(extends = PyPublisher, frozen, module = "hgauto.aws", name = "S3Publisher")]
pub struct PyS3Publisher;

#[pymethods]
impl PyS3Publisher {
    /// Keyword arguments after `prefix` are `AwsConfig` fields, as for `Ec2Provider`.
    #[new]
    #[pyo3(signature = (bucket, prefix="", **settings))]
    fn new(
        py: Python<'_>,
        bucket: String,
        prefix: &str,
        settings: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<PyClassInitializer<Self>> {
        let cfg = config(py, settings)?;
        let prefix = prefix.to_owned();
        let p = wait(py, async move {
            S3Publisher::from_config(&cfg, bucket, prefix).await
        })?
        .py_err(py)?;
        Ok(
            PyClassInitializer::from(PyPublisher { inner: Arc::new(p) })
                .add_subclass(PyS3Publisher),
        )
    }
}

/// Jobs from an SQS queue: the visibility timeout is the lease, a report deletes the
/// message, and unreadable messages go to the dead-letter queue.
#[pyclass(extends = crate::jobs::PyJobSource, frozen, module = "hgauto.aws", name = "SqsJobSource")]
pub struct PySqsJobSource {
    source: Arc<SqsJobSource>,
}

#[pymethods]
impl PySqsJobSource {
    /// `lease_ttl` and `wait` in seconds (`wait`: long polling, at most 20). `prefetch`:
    /// how many messages one `next` may take, the extra ones handed out by later calls
    /// (for many short jobs; 1, the default, prefetches nothing). Other keyword arguments
    /// are `AwsConfig` fields, as for `Ec2Provider`.
    #[new]
    #[pyo3(signature = (queue_url, *, dead_letter_url=None, lease_ttl=300.0, wait=20.0, prefetch=1, **settings))]
    fn new(
        py: Python<'_>,
        queue_url: String,
        dead_letter_url: Option<String>,
        lease_ttl: f64,
        wait: f64,
        prefetch: usize,
        settings: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<PyClassInitializer<Self>> {
        let cfg = config(py, settings)?;
        let ttl = crate::convert::seconds(py, "lease_ttl", lease_ttl)?;
        let poll = crate::convert::seconds(py, "wait", wait)?;
        let mut source = crate::runtime::wait(py, async move {
            SqsJobSource::from_config(&cfg, queue_url).await
        })?
        .with_lease_ttl(ttl)
        .with_wait(poll)
        .with_prefetch(prefetch);
        if let Some(d) = dead_letter_url {
            source = source.with_dead_letter_queue(d);
        }
        let source = Arc::new(source);
        Ok(PyClassInitializer::from(crate::jobs::PyJobSource {
            inner: source.clone(),
        })
        .add_subclass(PySqsJobSource { source }))
    }

    /// Sends a job to the queue.
    fn enqueue(&self, py: Python<'_>, job: crate::jobs::PyJob) -> PyResult<()> {
        let s = self.source.clone();
        crate::runtime::wait(py, async move { s.enqueue(&job.inner).await })?.py_err(py)
    }

    /// Gives back every prefetched message now (e.g. before the agent stops).
    fn release_prefetched(&self, py: Python<'_>) -> PyResult<()> {
        let s = self.source.clone();
        crate::runtime::wait(py, async move { s.release_prefetched().await })?.py_err(py)
    }

    /// Creates (or finds) queue `name` and `name-dead-letter`, which takes a message after
    /// `max_receives` receives. Returns both URLs.
    #[staticmethod]
    #[pyo3(signature = (name, max_receives=5, **settings))]
    fn create_queues(
        py: Python<'_>,
        name: String,
        max_receives: u32,
        settings: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<(String, String)> {
        let cfg = config(py, settings)?;
        crate::runtime::wait(py, async move {
            let client = SqsJobSource::client(&cfg.sdk_config().await);
            SqsJobSource::create_queues(&client, &name, max_receives).await
        })?
        .py_err(py)
    }
}
