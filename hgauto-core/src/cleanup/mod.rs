//! Machines that are terminated on every exit path: [`TemporaryMachines`] and
//! [`with_machines`].
//!
//! - Normal return and error: [`with_machines`] terminates before returning.
//! - Panic, or a dropped future: the guard's `Drop` terminates. `Drop` cannot `.await`, so
//!   on a multi-thread runtime it blocks in place (other workers keep the provider's
//!   connections going); elsewhere it waits for a helper thread with its own runtime.
//! - SIGINT / SIGTERM / SIGHUP: see [`SignalHandling`]; by default the first
//!   guard installs a handler that terminates every live guard's machines and then lets the
//!   signal kill the process; a program can handle signals itself and call [`interrupt`].
//! - SIGKILL: nothing can run; the ledger lists what was created, and
//!   [`ResourceProvider::purge`] (or a sweep) removes it.

mod signals;

use std::future::Future;
use std::sync::Arc;

use signals::{install_signal_handler, lock_live, register, Counted};
pub use signals::{
    interrupt, interrupt_settled, interrupt_signal, interrupted, is_interrupted,
    set_signal_handling, wait_for_undo, SignalHandling,
};

use crate::error::{Error, Result};
use crate::machine::RemoteMachine;
use crate::provider::ResourceProvider;
use crate::spec::MachineSpec;

/// Machines that are terminated when this guard goes away, however it goes away.
///
/// Prefer [`with_machines`]; use the guard directly when the machines must outlive one
/// closure. Call [`terminate`](Self::terminate) to clean up with error reporting; dropping
/// the guard cleans up too, but can only log failures.
pub struct TemporaryMachines {
    provider: Arc<dyn ResourceProvider>,
    machines: Vec<Arc<dyn RemoteMachine>>,
    key: Option<u64>,
}

impl std::fmt::Debug for TemporaryMachines {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TemporaryMachines")
            .field("provider", &self.provider.name())
            .field("machines", &self.ids())
            .finish()
    }
}

impl TemporaryMachines {
    /// Provisions `count` machines of `spec` under a guard.
    pub async fn provision(
        provider: Arc<dyn ResourceProvider>,
        spec: &MachineSpec,
        count: usize,
    ) -> Result<Self> {
        install_signal_handler();
        if is_interrupted() {
            return Err(Error::Interrupted {
                signal: interrupt_signal(),
            });
        }
        let flight = Counted::in_flight();
        // An interrupt drops the provision at once, whatever it is waiting for (EC2 waits
        // minutes for host keys): the provider's contract is that a dropped provision
        // undoes what it made, in the background that `interrupt` drains.
        let made = tokio::select! {
            made = provider.provision(spec, count) => Some(made),
            () = interrupted() => None,
        };
        // The provision future is gone here; the undo it handed over runs, and the caller
        // learns of the interrupt only once it is done (or given up on), so a program that
        // exits on this error leaves nothing behind.
        let Some(made) = made else {
            drop(flight);
            wait_for_undo().await;
            return Err(Error::Interrupted {
                signal: interrupt_signal(),
            });
        };
        let machines = made?;
        let ids: Vec<String> = machines.iter().map(|m| m.id().to_owned()).collect();
        let key = register(provider.clone(), ids);
        drop(flight);
        Ok(TemporaryMachines {
            provider,
            machines,
            key: Some(key),
        })
    }

    /// The machines.
    pub fn machines(&self) -> &[Arc<dyn RemoteMachine>] {
        &self.machines
    }

    /// The machine ids.
    pub fn ids(&self) -> Vec<String> {
        self.machines.iter().map(|m| m.id().to_owned()).collect()
    }

    /// Keeps the machines in `keep` (they stay up, and in the ledger, for a look and a later
    /// `terminate` or `purge`; an interrupt no longer touches them) and terminates the
    /// others now. Returns the ids kept, those of `keep` that are this guard's.
    pub async fn keep(mut self, keep: &[String]) -> Result<Vec<String>> {
        let (kept, others): (Vec<String>, Vec<String>) =
            self.ids().into_iter().partition(|id| keep.contains(id));
        if let Some(key) = self.key.take() {
            lock_live().remove(&key);
        }
        if !others.is_empty() {
            self.provider.terminate(&others).await?;
        }
        Ok(kept)
    }

    /// Terminates the machines now.
    pub async fn terminate(mut self) -> Result<()> {
        match self.key.take() {
            Some(key) => {
                lock_live().remove(&key);
                self.provider.terminate(&self.ids()).await
            }
            None => Ok(()),
        }
    }
}

impl Drop for TemporaryMachines {
    fn drop(&mut self) {
        let Some(key) = self.key.take() else { return };
        // An interrupt may already have taken (and be terminating) these machines.
        if lock_live().remove(&key).is_none() {
            return;
        }
        let provider = self.provider.clone();
        let ids = self.ids();
        if let Err(e) = terminate_from_drop(provider, ids.clone()) {
            tracing::error!(machines = ?ids, error = %e, "could not terminate machines on drop; run purge");
        }
    }
}

/// Runs `provider.terminate(ids)` from synchronous code (see the [module docs](self) for
/// how it waits on each kind of runtime).
fn terminate_from_drop(provider: Arc<dyn ResourceProvider>, ids: Vec<String>) -> Result<()> {
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current() {
        Ok(h) if h.runtime_flavor() == RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(|| h.block_on(provider.terminate(&ids)))
        }
        _ => on_helper_thread(provider, ids),
    }
}

/// Terminates on a new thread with its own runtime and waits for it.
fn on_helper_thread(provider: Arc<dyn ResourceProvider>, ids: Vec<String>) -> Result<()> {
    let backend_error = |message: String| Error::Backend {
        backend: "cleanup".into(),
        message,
        retryable: false,
        source: None,
    };
    let helper = std::thread::Builder::new()
        .name("hgauto-terminate".into())
        .spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| {
                    backend_error(format!(
                        "could not start a runtime to terminate machines: {e}"
                    ))
                })
                .and_then(|rt| rt.block_on(provider.terminate(&ids)))
        })
        .map_err(|e| {
            backend_error(format!(
                "could not start a thread to terminate machines: {e}"
            ))
        })?;
    helper
        .join()
        .unwrap_or_else(|_| Err(backend_error("terminate panicked".into())))
}

/// Provisions `count` machines, runs `f` with them, and terminates them on every exit path
/// (see the [module docs](self)). The result of `f` is returned; if `f` succeeded but
/// termination failed, the termination error is returned instead.
///
/// ```no_run
/// # async fn demo() -> hgauto_core::Result<()> {
/// use std::sync::Arc;
/// use hgauto_core::{with_machines, Command, LocalProvider, MachineSpec, RemoteMachine};
/// let provider = Arc::new(LocalProvider::from_env()?);
/// let uname = with_machines(provider, &MachineSpec::linux(), 2, |ms| async move {
///     let out = ms[0].exec(&Command::new("uname")).await?;
///     Ok(out.stdout_str())
/// })
/// .await?;
/// # Ok(()) }
/// ```
pub async fn with_machines<T, F, Fut>(
    provider: Arc<dyn ResourceProvider>,
    spec: &MachineSpec,
    count: usize,
    f: F,
) -> Result<T>
where
    F: FnOnce(Vec<Arc<dyn RemoteMachine>>) -> Fut,
    Fut: Future<Output = Result<T>>,
{
    let guard = TemporaryMachines::provision(provider, spec, count).await?;
    let result = f(guard.machines().to_vec()).await;
    let terminated = guard.terminate().await;
    match (result, terminated) {
        (Ok(v), Ok(())) => Ok(v),
        (Ok(_), Err(t)) => Err(t),
        (Err(e), Ok(())) => Err(e),
        (Err(e), Err(t)) => {
            tracing::error!(error = %t, "terminate failed after an error; run purge");
            Err(e)
        }
    }
}
