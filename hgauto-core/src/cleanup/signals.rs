//! What happens on SIGINT, SIGTERM and SIGHUP while machines are held, and the hook an
//! embedding program uses instead.
//!
//! By default ([`SignalHandling::Install`]) the first [`TemporaryMachines`] guard installs a
//! handler (on its own thread) that calls [`interrupt`] and then re-raises the signal with
//! its default action, so the process still dies of it and its parent sees that. A program
//! that owns its signals (an agent that finishes or releases its job on SIGTERM) sets
//! [`SignalHandling::Manual`] before creating any guard, and calls [`interrupt`] itself when
//! it wants every guard's machines gone; [`interrupted`] lets its tasks notice.
//!
//! [`TemporaryMachines`]: super::TemporaryMachines

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use crate::error::{Error, Result};
use crate::provider::ResourceProvider;

/// How long [`interrupt`] waits for in-flight provisions to notice it and stop. They stop
/// at their next await (a guard's provision is dropped as soon as the interrupt lands), so
/// this only bounds a provider stuck in blocking code.
const IN_FLIGHT_WAIT: Duration = Duration::from_secs(10);
/// How long [`interrupt`] gives each provider's `terminate`.
const TERMINATE_WAIT: Duration = Duration::from_secs(120);
/// How long [`interrupt`] waits for the undo of abandoned provisions (run in the
/// background, see [`crate::backend::background`]). A CI runner sends SIGKILL about 10 s
/// after its first signal.
const UNDO_WAIT: Duration = Duration::from_secs(20);

static INTERRUPTED: AtomicBool = AtomicBool::new(false);
/// The signal [`interrupt`] was called with (0: not interrupted).
static SIGNAL: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(0);
static IN_FLIGHT: AtomicUsize = AtomicUsize::new(0);
/// Calls of [`interrupt`] still cleaning up.
static CLEANING: AtomicUsize = AtomicUsize::new(0);
static NEXT_KEY: AtomicU64 = AtomicU64::new(1);
/// 0: install on first guard (default); 1: manual; 2: installed.
static HANDLING: AtomicU8 = AtomicU8::new(0);

/// Who handles SIGINT, SIGTERM and SIGHUP while machines are held.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignalHandling {
    /// hgauto installs its handler with the first guard: the signal terminates every
    /// guard's machines, then kills the process as it would have (the default).
    Install,
    /// The program handles its signals and calls [`interrupt`] itself.
    Manual,
}

/// Chooses who handles signals. Call it before the first guard is created: once hgauto's
/// handler is installed it stays, and choosing [`SignalHandling::Manual`] then is an error.
pub fn set_signal_handling(handling: SignalHandling) -> Result<()> {
    let want = match handling {
        SignalHandling::Install => 0,
        SignalHandling::Manual => 1,
    };
    match HANDLING.compare_exchange(0, want, Ordering::SeqCst, Ordering::SeqCst) {
        Ok(_) => Ok(()),
        Err(current) if current == want || (current == 2 && want == 0) => Ok(()),
        Err(1) => {
            HANDLING.store(want, Ordering::SeqCst);
            Ok(())
        }
        Err(_) => Err(Error::invalid(
            "signal handling",
            "hgauto's signal handler is already installed (choose Manual before the first \
             TemporaryMachines or with_machines)",
        )),
    }
}

fn notify() -> &'static Notify {
    static N: OnceLock<Notify> = OnceLock::new();
    N.get_or_init(Notify::new)
}

/// True once [`interrupt`] ran (a signal arrived, or the program asked). Providers check it
/// to stop creating machines.
pub fn is_interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}

/// The signal the process was interrupted with, for [`Error::Interrupted`]: SIGINT when
/// [`interrupt`] has not run (a provider noticing Ctrl-C some other way).
pub fn interrupt_signal() -> i32 {
    match SIGNAL.load(Ordering::SeqCst) {
        0 => libc::SIGINT,
        sig => sig,
    }
}

/// Resolves once the process is interrupted (immediately if it already is).
pub async fn interrupted() {
    wait_until(is_interrupted).await;
}

/// Resolves once `done` holds, checked again each time the signal state is notified.
async fn wait_until(done: impl Fn() -> bool) {
    loop {
        let notified = notify().notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        if done() {
            return;
        }
        notified.await;
    }
}

pub(super) type Live = HashMap<u64, (Arc<dyn ResourceProvider>, Vec<String>)>;

fn live() -> &'static Mutex<Live> {
    static LIVE: OnceLock<Mutex<Live>> = OnceLock::new();
    LIVE.get_or_init(|| Mutex::new(HashMap::new()))
}

pub(super) fn lock_live() -> std::sync::MutexGuard<'static, Live> {
    live().lock().unwrap_or_else(|p| p.into_inner())
}

/// Registers a guard's machines; returns its key.
pub(super) fn register(provider: Arc<dyn ResourceProvider>, ids: Vec<String>) -> u64 {
    let key = NEXT_KEY.fetch_add(1, Ordering::SeqCst);
    lock_live().insert(key, (provider, ids));
    key
}

/// Counts one unit of work on `counter` while alive (a provision in flight, an interrupt
/// cleaning up), however its future ends; waiters are told when it ends.
pub(super) struct Counted(&'static AtomicUsize);

impl Counted {
    fn enter(counter: &'static AtomicUsize) -> Self {
        counter.fetch_add(1, Ordering::SeqCst);
        Counted(counter)
    }

    /// A provision in flight, which [`interrupt`] waits for.
    pub(super) fn in_flight() -> Self {
        Self::enter(&IN_FLIGHT)
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
        notify().notify_waiters();
    }
}

/// Cleans up as a signal would, without exiting: marks the process interrupted (providers
/// stop creating machines, [`interrupted`] resolves, and every guard's provision in flight
/// is dropped, so its provider undoes what it had made), waits up to 10 s for those
/// provisions to stop, terminates the machines of every live guard (each provider gets
/// 120 s), and waits up to 20 s for the undo of the abandoned provisions. Returns how many
/// machine sets were terminated. Guards whose machines it took do nothing more when they
/// drop.
pub async fn interrupt(signal: i32) -> usize {
    let _cleaning = Counted::enter(&CLEANING);
    clean_up(signal).await
}

/// `None` if the process was not interrupted. Otherwise waits until every [`interrupt`]
/// under way has finished its cleanup and returns the signal: what a program's `main`
/// awaits before it exits, so that the exit code is the signal's (128 + N) rather than that
/// of a command the cleanup killed, and the cleanup is never cut short by the exit.
pub async fn interrupt_settled() -> Option<i32> {
    if !is_interrupted() {
        return None;
    }
    wait_until(|| CLEANING.load(Ordering::SeqCst) == 0).await;
    Some(interrupt_signal())
}

async fn clean_up(signal: i32) -> usize {
    let _ = SIGNAL.compare_exchange(0, signal, Ordering::SeqCst, Ordering::SeqCst);
    INTERRUPTED.store(true, Ordering::SeqCst);
    notify().notify_waiters();
    tracing::warn!(signal, "interrupted: terminating machines");
    let started = Instant::now();
    while IN_FLIGHT.load(Ordering::SeqCst) > 0 && started.elapsed() < IN_FLIGHT_WAIT {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let entries: Vec<(Arc<dyn ResourceProvider>, Vec<String>)> =
        lock_live().drain().map(|(_, v)| v).collect();
    let count = entries.len();
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
    wait_for_undo().await;
    count
}

/// Waits (up to 20 s) for the undo of abandoned provisions, run in the background: what a
/// program calls after dropping a provision, before it reports the interrupt or exits.
pub async fn wait_for_undo() {
    if !crate::backend::background::drain(UNDO_WAIT).await {
        tracing::error!("the undo of an interrupted provision did not finish; run purge");
    }
}

/// Installs hgauto's handler once per process, unless the program chose
/// [`SignalHandling::Manual`].
pub(super) fn install_signal_handler() {
    if HANDLING
        .compare_exchange(0, 2, Ordering::SeqCst, Ordering::SeqCst)
        .is_err()
    {
        return; // manual, or already installed
    }
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let spawned = std::thread::Builder::new()
        .name("hgauto-signals".into())
        .spawn(move || signal_thread(ready_tx));
    match spawned {
        // Wait until the handlers are registered, so a signal right after provisioning is
        // never missed.
        Ok(_) => {
            let _ = ready_rx.recv_timeout(Duration::from_secs(5));
        }
        Err(e) => tracing::error!(error = %e, "could not start the signal thread"),
    }
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
        let (Ok(mut int), Ok(mut term), Ok(mut hup)) = (
            signal(SignalKind::interrupt()),
            signal(SignalKind::terminate()),
            signal(SignalKind::hangup()),
        ) else {
            tracing::error!("could not register SIGINT/SIGTERM/SIGHUP handlers");
            return;
        };
        let _ = ready.send(());
        let sig = tokio::select! {
            _ = int.recv() => libc::SIGINT,
            _ = term.recv() => libc::SIGTERM,
            _ = hup.recv() => libc::SIGHUP,
        };
        interrupt(sig).await;
        reraise(sig);
    });
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
