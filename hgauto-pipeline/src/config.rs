//! How a run behaves ([`Config`], set through [`Runner`](crate::Runner)), and the hooks a
//! caller gives it.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use hgauto_core::command::Stream;

use super::results::{Mode, TaskState};

/// Called with (task, stream, line) for every output line of a command step.
pub type LineHook = Arc<dyn Fn(&str, Stream, &str) + Send + Sync>;

/// Called with (task, state, tasks still to finish) whenever a task ends.
pub type TaskHook = Arc<dyn Fn(&str, TaskState, usize) + Send + Sync>;

/// How a run behaves; set through [`Runner`].
#[derive(Clone)]
pub(crate) struct Config {
    pub out_dir: PathBuf,
    pub mode: Mode,
    pub inputs: BTreeMap<String, String>,
    /// Values of inputs declared secret: scrubbed from every error text written out.
    pub secrets: hgauto_core::redact::Secrets,
    pub health_check: Duration,
    pub idle_timeout: Duration,
    pub ready_timeout: Duration,
    /// The longest a `should_run` check may take.
    pub check_timeout: Duration,
    pub time_scale: f64,
    pub function_limit: usize,
    pub on_line: Option<LineHook>,
    pub on_task: Option<TaskHook>,
}
