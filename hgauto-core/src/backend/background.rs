//! Undo work that must outlive the future that started it.
//!
//! A `Drop` cannot await. When a caller stops waiting for an operation (its future is
//! dropped: a `select!`, a caller-side timeout, Ctrl-C in Python), a backend that still has
//! something to undo on the far side (a command running on an instance, an object staged in
//! a bucket) hands that work to [`spawn`], which runs it on the current tokio runtime. A
//! program about to exit calls [`drain`] so the work gets a bounded chance to finish; the
//! Python module does that from its exit hook.

use std::future::Future;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use tokio::sync::Notify;

/// How many tasks are running, per process (a forked child inherits the count but not the
/// tasks, so a count recorded by another process id is void).
struct Pending {
    pid: u32,
    count: usize,
}

fn pending() -> &'static (Mutex<Pending>, Notify) {
    static PENDING: OnceLock<(Mutex<Pending>, Notify)> = OnceLock::new();
    PENDING.get_or_init(|| {
        let zero = Pending {
            pid: std::process::id(),
            count: 0,
        };
        (Mutex::new(zero), Notify::new())
    })
}

fn adjust(delta: isize) -> usize {
    let (lock, notify) = pending();
    let mut p = lock.lock().unwrap_or_else(|e| e.into_inner());
    if p.pid != std::process::id() {
        *p = Pending {
            pid: std::process::id(),
            count: 0,
        };
    }
    p.count = p.count.saturating_add_signed(delta);
    if p.count == 0 {
        notify.notify_waiters();
    }
    p.count
}

/// Counts a task as finished however it ends, including being dropped at runtime shutdown.
struct Finished;

impl Drop for Finished {
    fn drop(&mut self) {
        adjust(-1);
    }
}

/// Runs `work` (the undo of `what`, e.g. "stopping SSM command cmd-1 on i-0abc") in the
/// background on the current tokio runtime. Without a runtime nothing can run it: the
/// failure is logged with `what` and `false` is returned.
pub fn spawn<F>(what: impl Into<String>, work: F) -> bool
where
    F: Future<Output = ()> + Send + 'static,
{
    let what = what.into();
    let Ok(handle) = tokio::runtime::Handle::try_current() else {
        tracing::warn!(work = %what, "no tokio runtime left to clean up on; skipped");
        return false;
    };
    adjust(1);
    let done = Finished;
    handle.spawn(async move {
        let _done = done;
        tracing::info!(work = %what, "cleaning up after an abandoned operation");
        work.await;
        tracing::debug!(work = %what, "background cleanup finished");
    });
    true
}

/// Runs `work` as [`spawn`] does and waits for its result. If the caller stops waiting
/// (its future is dropped), the work still runs to the end, counted for [`drain`]: for an
/// undo that a cancelled caller must not cut in half. `None` when there is no runtime to
/// run it on, or the work panicked.
pub async fn run_detached<T, F>(what: impl Into<String>, work: F) -> Option<T>
where
    T: Send + 'static,
    F: Future<Output = T> + Send + 'static,
{
    let (tx, rx) = tokio::sync::oneshot::channel();
    let spawned = spawn(what, async move {
        let _ = tx.send(work.await);
    });
    if !spawned {
        return None;
    }
    rx.await.ok()
}

/// How many background tasks of this process are still running.
pub fn in_flight() -> usize {
    adjust(0)
}

/// Waits until every background task has finished, or `timeout` has passed. Returns whether
/// all finished.
pub async fn drain(timeout: Duration) -> bool {
    let all_done = async {
        loop {
            let notified = pending().1.notified();
            tokio::pin!(notified);
            // Register before reading the count, so a task finishing in between still wakes us.
            notified.as_mut().enable();
            if in_flight() == 0 {
                return;
            }
            notified.await;
        }
    };
    tokio::time::timeout(timeout, all_done).await.is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    /// The count is process-wide: tests that read it take turns, or one would see the
    /// other's tasks (`cargo test` runs a binary's tests on parallel threads).
    fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
        static TURN: Mutex<()> = Mutex::new(());
        TURN.lock().unwrap_or_else(|p| p.into_inner())
    }

    #[tokio::test]
    #[allow(clippy::await_holding_lock)] // the lock orders tests; no task here takes it
    async fn drain_waits_for_spawned_work_and_gives_up_at_its_timeout() {
        let _turn = one_at_a_time();
        let ran = Arc::new(AtomicBool::new(false));
        let r = ran.clone();
        assert!(spawn("test work", async move {
            tokio::time::sleep(Duration::from_millis(200)).await;
            r.store(true, Ordering::SeqCst);
        }));
        assert!(drain(Duration::from_secs(10)).await);
        assert!(ran.load(Ordering::SeqCst));
        assert_eq!(in_flight(), 0);

        spawn("slow work", tokio::time::sleep(Duration::from_secs(30)));
        let started = std::time::Instant::now();
        assert!(!drain(Duration::from_millis(100)).await);
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn without_a_runtime_nothing_is_spawned() {
        let _turn = one_at_a_time();
        assert!(!spawn("orphan work", async {}));
    }

    #[test]
    fn a_task_dropped_with_its_runtime_is_no_longer_counted() {
        let _turn = one_at_a_time();
        let rt = tokio::runtime::Runtime::new().unwrap();
        let before = in_flight();
        rt.block_on(async {
            spawn("never finishes", std::future::pending::<()>());
        });
        drop(rt);
        assert!(in_flight() <= before);
    }
}
