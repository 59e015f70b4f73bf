//! Running hgauto's async Rust from Python threads: one tokio runtime per process, and a
//! wait loop that releases the GIL, delivers events (output lines, progress) on the calling
//! thread, and turns Ctrl-C into `KeyboardInterrupt`.
//!
//! Why a loop instead of `block_on`: Python delivers SIGINT by running its handler on the
//! main thread the next time that thread holds the GIL. A thread parked in `block_on` with
//! the GIL released would never notice, so the waiter wakes every [`SIGNAL_POLL`] to run
//! `check_signals`. Callbacks run on the caller's thread too, so a callback's exception
//! propagates like any other.

use std::future::Future;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pyo3::prelude::*;
use tokio::runtime::Runtime;

/// How often a waiting thread looks for Python signals (Ctrl-C).
const SIGNAL_POLL: Duration = Duration::from_millis(50);

/// The process's runtime, rebuilt in a forked child (whose copy has no worker threads).
static RT: Mutex<Option<(u32, Arc<Runtime>)>> = Mutex::new(None);

fn runtime() -> Arc<Runtime> {
    let pid = std::process::id();
    let mut slot = RT.lock().unwrap_or_else(|p| p.into_inner());
    if let Some((owner, rt)) = slot.as_ref() {
        if *owner == pid {
            return rt.clone();
        }
    }
    let rt = Arc::new(
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .thread_name("hgauto-rt")
            .build()
            .expect("the tokio runtime starts (threads and an epoll instance)"),
    );
    if let Some((_, stale)) = slot.replace((pid, rt.clone())) {
        // A forked copy: its threads do not exist here, so it must never be dropped (that
        // would wait for them).
        std::mem::forget(stale);
    }
    rt
}

/// How long interpreter exit waits for cancelled work to wind down: a command interrupted
/// over SSH is killed by its blocking thread, an SSM command by a background task
/// ([`hgauto_core::backend::background`]), and either must get to run.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Stops the runtime at interpreter exit (registered with `atexit` by `hgauto/__init__.py`),
/// giving background cleanup and blocking work, such as the remote kill of a command
/// interrupted by Ctrl-C, up to [`SHUTDOWN_GRACE`] each to finish.
#[pyfunction]
pub(crate) fn _shutdown(py: Python<'_>) {
    let taken = RT.lock().unwrap_or_else(|p| p.into_inner()).take();
    if let Some((owner, rt)) = taken {
        if owner != std::process::id() {
            std::mem::forget(rt);
            return;
        }
        py.detach(|| rt.block_on(hgauto_core::backend::background::drain(SHUTDOWN_GRACE)));
        if let Ok(rt) = Arc::try_unwrap(rt) {
            py.detach(move || rt.shutdown_timeout(SHUTDOWN_GRACE));
        }
    }
}

/// What to do when Ctrl-C arrives while a call is in flight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OnInterrupt {
    /// Drop the operation (which kills a running command) and raise `KeyboardInterrupt`
    /// once it is gone.
    Cancel,
    /// Let the operation finish; raise
    /// `KeyboardInterrupt` afterwards. For provisioning and termination, which must not
    /// be torn in half.
    Finish,
}

enum Msg<E, T> {
    Event(E),
    Done(T),
}

/// Sends events from the operation to the waiting Python thread.
pub(crate) struct Events<E>(Arc<dyn Fn(E) + Send + Sync>);

impl<E> Clone for Events<E> {
    fn clone(&self) -> Self {
        Events(self.0.clone())
    }
}

impl<E> Events<E> {
    /// Queues an event for the caller's thread (dropped if the caller is gone).
    pub(crate) fn send(&self, event: E) {
        (self.0)(event)
    }
}

/// Runs `fut`, an operation that undoes itself when dropped (provisioning, by the
/// provider's contract), under [`OnInterrupt::Cancel`]: Ctrl-C or SIGTERM drops it at once,
/// whatever it waits for, and its undo gets up to 20 s ([`hgauto_core::cleanup::wait_for_undo`]) before the exception is
/// raised, so the caller's cleanup (and the process's exit) finds nothing left running.
pub(crate) fn wait_abandoning<T, F>(py: Python<'_>, fut: F) -> PyResult<T>
where
    T: Send + 'static,
    F: Future<Output = T> + Send + 'static,
{
    let out = wait(py, fut);
    if out.is_err() {
        let rt = runtime();
        py.detach(|| rt.block_on(hgauto_core::cleanup::wait_for_undo()));
    }
    out
}

/// Runs `fut` on the runtime and waits for it with the GIL released; Ctrl-C cancels it.
pub(crate) fn wait<T, F>(py: Python<'_>, fut: F) -> PyResult<T>
where
    T: Send + 'static,
    F: Future<Output = T> + Send + 'static,
{
    wait_with(py, OnInterrupt::Cancel, |_: Events<()>| fut, |_, ()| Ok(()))
}

/// Runs `fut` under [`OnInterrupt::Finish`]: Ctrl-C is raised once it has completed.
pub(crate) fn wait_finishing<T, F>(py: Python<'_>, fut: F) -> PyResult<T>
where
    T: Send + 'static,
    F: Future<Output = T> + Send + 'static,
{
    wait_with(py, OnInterrupt::Finish, |_: Events<()>| fut, |_, ()| Ok(()))
}

/// Runs the future `make(events)` builds, handing each event to the optional Python
/// `callback` through `call` on this thread. Without a callback `make` gets `None`, so the
/// operation can skip producing events.
pub(crate) fn wait_calling<'py, E, T, F>(
    py: Python<'py>,
    callback: Option<Bound<'py, PyAny>>,
    make: impl FnOnce(Option<Events<E>>) -> F,
    call: impl Fn(&Bound<'py, PyAny>, E) -> PyResult<Bound<'py, PyAny>>,
) -> PyResult<T>
where
    E: Send + 'static,
    T: Send + 'static,
    F: Future<Output = T> + Send + 'static,
{
    match callback {
        None => wait(py, make(None)),
        Some(cb) => wait_with(
            py,
            OnInterrupt::Cancel,
            |events| make(Some(events)),
            |_, e| call(&cb, e).map(drop),
        ),
    }
}

/// Runs the future that `make(events)` builds, calling `on_event` on this
/// thread (with the GIL) for every event it sends, in order, before the result. An error
/// from `on_event`, or Ctrl-C under [`OnInterrupt::Cancel`], cancels the operation; the
/// error is raised once the operation is gone (a running command has been killed).
pub(crate) fn wait_with<E, T, F, M>(
    py: Python<'_>,
    policy: OnInterrupt,
    make: M,
    mut on_event: impl FnMut(Python<'_>, E) -> PyResult<()>,
) -> PyResult<T>
where
    E: Send + 'static,
    T: Send + 'static,
    F: Future<Output = T> + Send + 'static,
    M: FnOnce(Events<E>) -> F,
{
    let (tx, rx) = mpsc::channel::<Msg<E, T>>();
    let events = {
        let tx = tx.clone();
        Events(Arc::new(move |e| {
            let _ = tx.send(Msg::Event(e));
        }))
    };
    let fut = make(events);
    let rt = runtime();
    let mut task = rt.spawn(async move {
        let out = fut.await;
        let _ = tx.send(Msg::Done(out));
    });
    // Raised when the operation has ended (a callback's error, or KeyboardInterrupt).
    let mut raise: Option<PyErr> = None;
    let mut rx = rx;
    loop {
        // The receiver is not `Sync`: move it into the GIL-free closure and back.
        let (got, back) = py.detach(move || (rx.recv_timeout(SIGNAL_POLL), rx));
        rx = back;
        match got {
            Ok(Msg::Event(e)) => {
                if raise.is_none() {
                    if let Err(err) = on_event(py, e) {
                        raise = Some(err);
                        task.abort();
                    }
                }
            }
            Ok(Msg::Done(out)) => {
                return match raise {
                    Some(err) => Err(err),
                    None => Ok(out),
                }
            }
            Err(RecvTimeoutError::Timeout) => {
                if raise.is_none() {
                    if let Err(err) = py.check_signals() {
                        raise = Some(err);
                        if policy == OnInterrupt::Cancel {
                            task.abort();
                        }
                    }
                }
                if raise.is_some() && task.is_finished() {
                    break;
                }
            }
            // Only the task holds the result sender besides the event closure, which
            // callers may have moved elsewhere; the join handle is the authority.
            Err(RecvTimeoutError::Disconnected) => break,
        }
    }
    // A result sent just before the task finished is still in the channel.
    while let Ok(msg) = rx.try_recv() {
        if let Msg::Done(out) = msg {
            return match raise {
                Some(err) => Err(err),
                None => Ok(out),
            };
        }
    }
    // The task is gone without a result: cancelled by us, or it panicked.
    let joined = py.detach(|| rt.block_on(&mut task));
    if let Some(err) = raise {
        return Err(err);
    }
    Err(match joined {
        Err(e) if e.is_panic() => {
            let payload = e.into_panic();
            let msg = payload
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| payload.downcast_ref::<&str>().copied())
                .unwrap_or("(no message)")
                .to_owned();
            pyo3::exceptions::PyRuntimeError::new_err(format!("hgauto internal error: {msg}"))
        }
        _ => pyo3::exceptions::PyRuntimeError::new_err("hgauto operation ended without a result"),
    })
}
