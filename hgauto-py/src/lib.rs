//! The native half of the Python module `hgauto` (`hgauto._hgauto`).
//!
//! A thin binding: every operation is hgauto-core's (or a backend crate's) Rust, run on one
//! tokio runtime with the GIL released ([`runtime`]). Errors become the exception classes
//! of `hgauto/errors.py` ([`errors`]); `tracing` events become `logging` records
//! ([`logging`]). The Python package (`python/hgauto/`) re-exports these classes and
//! carries the type stubs.

#![warn(unreachable_pub)]

mod agent;
mod convert;
mod errors;
mod github;
mod helpers;
mod jobs;
mod logging;
mod machine;
mod pipeline;
mod provider;
mod publisher;
mod release;
mod runtime;
mod selfupdate;

#[cfg(feature = "aws")]
mod aws;
#[cfg(feature = "ssh")]
mod ssh;

use pyo3::prelude::*;

/// Runs the `hgauto` command line (the same code as the Rust binary) with `argv`, program
/// name first, and returns its exit code. The wheel's `hgauto` console script calls it.
#[pyfunction]
fn _cli_main(py: Python<'_>, argv: Vec<String>) -> i32 {
    // The command line is the whole program here, so it handles its signals as the Rust
    // binary does: SIGINT, SIGTERM and SIGHUP terminate its machines, then end the process
    // (importing the module chose manual handling, for scripts).
    if let Err(e) =
        hgauto_core::cleanup::set_signal_handling(hgauto_core::cleanup::SignalHandling::Install)
    {
        tracing::warn!(error = %e, "signals are handled by the embedding program");
    }
    py.detach(|| hgauto_cli::main_with_args(argv))
}

#[pymodule]
fn _hgauto(m: &Bound<'_, PyModule>) -> PyResult<()> {
    logging::install();
    // Python owns its signals (KeyboardInterrupt, and hgauto._signals for SIGTERM and
    // SIGHUP): core's guards must not install a handler of their own.
    hgauto_core::cleanup::set_signal_handling(hgauto_core::cleanup::SignalHandling::Manual)
        .map_err(|e| errors::to_py(m.py(), e))?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add_function(wrap_pyfunction!(_cli_main, m)?)?;
    #[allow(unused_mut)] // without features, nothing is pushed
    let mut features: Vec<&str> = Vec::new();
    m.add_class::<convert::PyRetryPolicy>()?;
    m.add_class::<machine::PyMachine>()?;
    m.add_class::<machine::RunResult>()?;
    m.add_class::<machine::PySyncReport>()?;
    m.add_class::<machine::HostResult>()?;
    m.add_function(wrap_pyfunction!(machine::fan_out, m)?)?;
    m.add_class::<provider::PyMachineSpec>()?;
    m.add_class::<provider::PyProvider>()?;
    m.add_class::<provider::PyLocalProvider>()?;
    m.add_class::<provider::MachineSet>()?;
    m.add_class::<provider::PyManagedResource>()?;
    m.add_class::<publisher::PyArtifact>()?;
    m.add_class::<publisher::PyPublisher>()?;
    m.add_class::<publisher::PyDirPublisher>()?;
    m.add_class::<publisher::PublishReport>()?;
    m.add_class::<release::PyPypiPublisher>()?;
    m.add_class::<jobs::PyJob>()?;
    m.add_class::<jobs::PyJobSource>()?;
    m.add_class::<jobs::PyDirJobSource>()?;
    m.add_class::<jobs::PyListJobSource>()?;
    m.add_class::<jobs::PyVcsBranchSource>()?;
    m.add_class::<github::PyGithubPrSource>()?;
    m.add_class::<agent::PyAgent>()?;
    m.add_class::<selfupdate::PySelfUpdate>()?;
    m.add_class::<pipeline::PyPipeline>()?;
    m.add_class::<release::PyRelease>()?;
    m.add_class::<release::PyReleaseReport>()?;
    m.add_class::<release::ReleaseEntry>()?;
    m.add_class::<helpers::DownloadReport>()?;
    m.add_class::<helpers::CheckoutReport>()?;
    m.add_class::<helpers::VenvReport>()?;
    m.add_function(wrap_pyfunction!(helpers::download, m)?)?;
    m.add_function(wrap_pyfunction!(helpers::checkout, m)?)?;
    m.add_function(wrap_pyfunction!(helpers::create_virtualenv, m)?)?;
    m.add_function(wrap_pyfunction!(runtime::_shutdown, m)?)?;
    #[cfg(feature = "ssh")]
    {
        features.push("ssh");
        m.add_class::<ssh::PySshMachine>()?;
        m.add_class::<ssh::PySshPublisher>()?;
    }
    #[cfg(feature = "aws")]
    {
        features.push("aws");
        m.add_class::<aws::PyEc2Provider>()?;
        m.add_class::<aws::PySsmMachine>()?;
        m.add_class::<aws::PyS3Publisher>()?;
        m.add_class::<aws::PySqsJobSource>()?;
    }
    m.add("FEATURES", features)?;
    Ok(())
}
