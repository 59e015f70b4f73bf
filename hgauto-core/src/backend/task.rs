//! Running blocking work (filesystem walks, libssh2 calls) off the async worker threads.

use crate::error::{Error, Result};

/// Runs `f` on tokio's blocking pool and returns its result. A panic in `f` becomes an
/// [`Error::Backend`] naming `backend`.
pub async fn run_blocking<T: Send + 'static>(
    backend: &str,
    f: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::Backend {
            backend: backend.to_owned(),
            message: format!("blocking task failed: {e}"),
            retryable: false,
            source: None,
        })?
}

/// [`run_blocking`] for the local backend and the engines.
pub async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    run_blocking("local", f).await
}
