//! Rust `tracing` (and `log`) events into Python's `logging`.
//!
//! hgauto's own crates log under `hgauto.core.*`, `hgauto.ssh.*`, `hgauto.aws.*` and
//! `hgauto.py`, so `logging.getLogger("hgauto").setLevel(...)` controls all of them. Other
//! crates (the AWS SDK, hyper) pass on warnings and errors only, under their own names.
//! Each record carries the Rust file and line, and the event's fields as `key=value`.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Mutex;

use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;

/// Installs the bridge as the process's tracing subscriber (once; a no-op if the host
/// program installed its own).
pub(crate) fn install() {
    let targets = Targets::new()
        .with_target("hgauto_core", LevelFilter::TRACE)
        .with_target("hgauto_ssh", LevelFilter::TRACE)
        .with_target("hgauto_aws", LevelFilter::TRACE)
        .with_target("_hgauto", LevelFilter::TRACE)
        .with_default(LevelFilter::WARN);
    let _ = tracing_subscriber::registry()
        .with(PythonLogging::default().with_filter(targets))
        .try_init();
}

/// The Python logger name for a Rust target (`hgauto_ssh::conn` -> `hgauto.ssh.conn`).
fn logger_name(target: &str) -> String {
    let dotted = target.replace("::", ".");
    for (krate, name) in [
        ("hgauto_core", "hgauto.core"),
        ("hgauto_ssh", "hgauto.ssh"),
        ("hgauto_aws", "hgauto.aws"),
        ("_hgauto", "hgauto.py"),
    ] {
        if let Some(rest) = dotted.strip_prefix(krate) {
            return format!("{name}{rest}");
        }
    }
    dotted
}

fn python_level(level: &Level) -> i32 {
    match *level {
        Level::ERROR => 40,
        Level::WARN => 30,
        Level::INFO => 20,
        Level::DEBUG => 10,
        // Below DEBUG, as `logging` has no TRACE.
        Level::TRACE => 5,
    }
}

/// The message and `key=value` fields of one event.
#[derive(Default)]
struct Message {
    text: String,
    fields: String,
}

impl Visit for Message {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.text.push_str(value);
        } else {
            let _ = write!(self.fields, " {}={value:?}", field.name());
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.text, "{value:?}");
        } else if !field.name().starts_with("log.") {
            let _ = write!(self.fields, " {}={value:?}", field.name());
        }
    }
}

/// A tracing layer that hands each event to the Python logger of its target.
#[derive(Default)]
struct PythonLogging {
    loggers: Mutex<HashMap<&'static str, Py<PyAny>>>,
}

impl PythonLogging {
    fn logger<'py>(&self, py: Python<'py>, target: &'static str) -> PyResult<Bound<'py, PyAny>> {
        static GET_LOGGER: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
        // Never hold the cache's lock while Python runs: Python may hand the GIL to a thread
        // that then waits for this lock while holding the GIL.
        let cached = self
            .loggers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(target)
            .map(|l| l.clone_ref(py));
        if let Some(l) = cached {
            return Ok(l.into_bound(py));
        }
        let get = GET_LOGGER.get_or_try_init(py, || -> PyResult<Py<PyAny>> {
            Ok(py.import("logging")?.getattr("getLogger")?.unbind())
        })?;
        let logger = get.bind(py).call1((logger_name(target),))?;
        self.loggers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(target, logger.clone().unbind());
        Ok(logger)
    }

    fn emit(&self, py: Python<'_>, event: &Event<'_>) -> PyResult<()> {
        let meta = event.metadata();
        let level = python_level(meta.level());
        let logger = self.logger(py, meta.target())?;
        if !logger.call_method1("isEnabledFor", (level,))?.is_truthy()? {
            return Ok(());
        }
        let mut msg = Message::default();
        event.record(&mut msg);
        msg.text.push_str(&msg.fields);
        let record = logger.call_method1(
            "makeRecord",
            (
                logger.getattr("name")?,
                level,
                meta.file().unwrap_or("<rust>"),
                meta.line().unwrap_or(0),
                msg.text,
                (),
                py.None(),
            ),
        )?;
        logger.call_method1("handle", (record,))?;
        Ok(())
    }
}

impl<S: Subscriber> Layer<S> for PythonLogging {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        // Not during interpreter shutdown; and a failing handler must not take the
        // operation down with it.
        let _ = Python::try_attach(|py| {
            if let Err(e) = self.emit(py, event) {
                e.print(py);
            }
        });
    }
}
