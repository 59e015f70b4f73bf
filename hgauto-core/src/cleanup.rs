//! Machines that are terminated on every exit path: [`TemporaryMachines`] and
//! [`with_machines`].
//!
//! - Normal return and error: [`with_machines`] terminates before returning.
//! - Panic: the guard's `Drop` terminates (on a helper thread with its own runtime, since
//!   `Drop` cannot `.await`).
//! - SIGINT / SIGTERM: the first guard installs a handler (on its own thread) that waits
//!   briefly for provisions in flight, terminates every live guard's machines, and then
//!   re-raises the signal with its default action, so the process still dies of it and its
//!   parent sees that.
//! - SIGKILL: nothing can run; the ledger lists what was created, and
//!   [`ResourceProvider::purge`] (or a sweep) removes it.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::machine::RemoteMachine;
use crate::provider::ResourceProvider;
use crate::spec::MachineSpec;

/// How long the signal handler waits for in-flight provisions before cleaning up anyway.
const IN_FLIGHT_WAIT: Duration = Duration::from_secs(60);
/// How long the signal handler gives each provider's `terminate`.
const TERMINATE_WAIT: Duration = Duration::from_secs(120);

static INTERRUPTED: AtomicBool = AtomicBool::new(false);
static IN_FLIGHT: AtomicUsize = AtomicUsize::new(0);
static NEXT_KEY: AtomicU64 = AtomicU64::new(1);

type Live = HashMap<u64, (Arc<dyn ResourceProvider>, Vec<String>)>;

fn live() -> &'static Mutex<Live> {
    static LIVE: OnceLock<Mutex<Live>> = OnceLock::new();
    LIVE.get_or_init(|| Mutex::new(HashMap::new()))
}

fn lock_live() -> std::sync::MutexGuard<'static, Live> {
    live().lock().unwrap_or_else(|p| p.into_inner())
}

/// True once this process received SIGINT or SIGTERM while a guard was installed.
/// Providers check it to stop creating machines.
pub fn is_interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}

/// Counts a provision in flight while alive.
struct InFlight;

impl InFlight {
    fn enter() -> Self {
        IN_FLIGHT.fetch_add(1, Ordering::SeqCst);
        InFlight
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        IN_FLIGHT.fetch_sub(1, Ordering::SeqCst);
    }
}

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
                signal: libc::SIGINT,
            });
        }
        let flight = InFlight::enter();
        let machines = provider.provision(spec, count).await?;
        let ids: Vec<String> = machines.iter().map(|m| m.id().to_owned()).collect();
        let key = NEXT_KEY.fetch_add(1, Ordering::SeqCst);
        lock_live().insert(key, (provider.clone(), ids));
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
        // The signal handler may already have taken (and be terminating) these machines.
        if lock_live().remove(&key).is_none() {
            return;
        }
        let provider = self.provider.clone();
        let ids = self.ids();
        if let Err(e) = terminate_blocking(provider, ids.clone()) {
            tracing::error!(machines = ?ids, error = %e, "could not terminate machines on drop; run purge");
        }
    }
}

/// Runs `provider.terminate(ids)` to completion from synchronous code, on a helper thread
/// with its own runtime (safe to call from inside an async context, e.g. in `Drop`).
fn terminate_blocking(provider: Arc<dyn ResourceProvider>, ids: Vec<String>) -> Result<()> {
    let handle = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| Error::Backend {
                backend: "cleanup".into(),
                message: format!("could not start a runtime to terminate machines: {e}"),
                retryable: false,
                source: None,
            })?;
        rt.block_on(provider.terminate(&ids))
    });
    handle.join().unwrap_or_else(|_| {
        Err(Error::Backend {
            backend: "cleanup".into(),
            message: "terminate panicked".into(),
            retryable: false,
            source: None,
        })
    })
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

/// Installs the SIGINT/SIGTERM cleanup handler once per process.
fn install_signal_handler() {
    static INSTALLED: OnceLock<()> = OnceLock::new();
    INSTALLED.get_or_init(|| {
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let spawned = std::thread::Builder::new()
            .name("hgauto-signals".into())
            .spawn(move || signal_thread(ready_tx));
        match spawned {
            // Wait until the handlers are registered, so a signal right after
            // provisioning is never missed.
            Ok(_) => {
                let _ = ready_rx.recv_timeout(Duration::from_secs(5));
            }
            Err(e) => tracing::error!(error = %e, "could not start the signal thread"),
        }
    });
}

fn signal_thread(ready: std::sync::mpsc::Sender<()>) {
    use tokio::signal::unix::{signal, SignalKind};
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!(error = %e, "no runtime for signal handling");
            return;
        }
    };
    rt.block_on(async move {
        let (Ok(mut int), Ok(mut term)) = (
            signal(SignalKind::interrupt()),
            signal(SignalKind::terminate()),
        ) else {
            tracing::error!("could not register SIGINT/SIGTERM handlers");
            return;
        };
        let _ = ready.send(());
        let sig = tokio::select! {
            _ = int.recv() => libc::SIGINT,
            _ = term.recv() => libc::SIGTERM,
        };
        INTERRUPTED.store(true, Ordering::SeqCst);
        tracing::warn!(signal = sig, "interrupted: terminating machines");
        cleanup_all().await;
        reraise(sig);
    });
}

async fn cleanup_all() {
    let started = Instant::now();
    while IN_FLIGHT.load(Ordering::SeqCst) > 0 && started.elapsed() < IN_FLIGHT_WAIT {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let entries: Vec<(Arc<dyn ResourceProvider>, Vec<String>)> =
        lock_live().drain().map(|(_, v)| v).collect();
    let jobs = entries.into_iter().map(|(provider, ids)| async move {
        match tokio::time::timeout(TERMINATE_WAIT, provider.terminate(&ids)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::error!(machines = ?ids, error = %e, "terminate failed; run purge")
            }
            Err(_) => tracing::error!(machines = ?ids, "terminate timed out; run purge"),
        }
    });
    futures::future::join_all(jobs).await;
}

/// Restores the default action for `sig` and raises it, so the process ends as if the
/// signal had not been caught.
fn reraise(sig: i32) -> ! {
    // SAFETY: resetting a disposition and raising a signal have no memory-safety
    // preconditions.
    unsafe {
        libc::signal(sig, libc::SIG_DFL);
        libc::raise(sig);
    }
    std::process::exit(128 + sig)
}
