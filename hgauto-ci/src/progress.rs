//! Step-by-step progress for long helpers ([`checkout`](crate::checkout()),
//! [`create_virtualenv`](crate::create_virtualenv())): a callback that receives one short
//! line per step ("cloning https://...", "installing requirements with uv"), for a CI log
//! or a progress display. Byte-level download progress is
//! [`download::Progress`](crate::download::Progress).

use std::sync::Arc;

/// Receives a one-line description of each step as it starts.
#[derive(Clone)]
pub struct StepProgress(Arc<dyn Fn(&str) + Send + Sync>);

impl StepProgress {
    /// Calls `f` with each step.
    pub fn new(f: impl Fn(&str) + Send + Sync + 'static) -> Self {
        StepProgress(Arc::new(f))
    }
}

impl std::fmt::Debug for StepProgress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StepProgress(..)")
    }
}

/// Reports a step to `progress` (if any) and to the log.
pub(crate) fn step(progress: &Option<StepProgress>, text: &str) {
    tracing::info!("{text}");
    if let Some(p) = progress {
        (p.0)(text);
    }
}
