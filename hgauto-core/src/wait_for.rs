//! [`WaitFor`]: waiting for a remote state (an instance running, an image available, an agent
//! online) by checking it with backoff, up to a hard deadline.

use std::future::Future;
use std::time::Duration;

use crate::error::{Error, Result};

/// Waiting for a remote state by checking it again and again: [`WaitFor::new`] names what is awaited, the
/// builder methods set the deadline and the backoff, and [`WaitFor::until`] runs the checks.
///
/// ```no_run
/// # async fn demo() -> hgauto_core::Result<()> {
/// use std::time::Duration;
/// use hgauto_core::WaitFor;
/// let state = WaitFor::new("i-0abc", "waiting for state running")
///     .within(Duration::from_secs(600))
///     .first_delay(Duration::from_millis(500))
///     .until(|| async { Ok(Some("running")) })
///     .await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
#[must_use = "a WaitFor does nothing until `until` is awaited"]
pub struct WaitFor<'a> {
    resource: &'a str,
    what: &'a str,
    limit: Duration,
    first_delay: Duration,
    max_delay: Duration,
}

impl<'a> WaitFor<'a> {
    /// Polls for `what` on `resource` (both named in the timeout error): within 10 minutes,
    /// checking after 1 s, then doubling the delay up to 15 s.
    pub fn new(resource: &'a str, what: &'a str) -> Self {
        WaitFor {
            resource,
            what,
            limit: Duration::from_secs(600),
            first_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(15),
        }
    }

    /// The hard deadline, counted from the first check.
    pub fn within(mut self, limit: Duration) -> Self {
        self.limit = limit;
        self
    }

    /// The delay after the first check (it doubles after each one).
    pub fn first_delay(mut self, delay: Duration) -> Self {
        self.first_delay = delay;
        self
    }

    /// The longest delay between two checks.
    pub fn max_delay(mut self, delay: Duration) -> Self {
        self.max_delay = delay;
        self
    }

    /// Runs `check` until it returns `Ok(Some(value))`. `Ok(None)` keeps waiting and `Err`
    /// stops at once. On the deadline the error is [`Error::Timeout`]; a check still running
    /// then is abandoned, so a hung call cannot hold the wait past it, and the last check
    /// happens at the deadline itself, not one delay before it.
    pub async fn until<T, F, Fut>(self, mut check: F) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<Option<T>>>,
    {
        let deadline = tokio::time::Instant::now() + self.limit;
        let timed_out = || Error::Timeout {
            machine: self.resource.to_owned(),
            what: self.what.to_owned(),
            after: self.limit,
        };
        let mut delay = self.first_delay;
        loop {
            match tokio::time::timeout_at(deadline, check()).await {
                Ok(Ok(Some(v))) => return Ok(v),
                Ok(Ok(None)) => {}
                Ok(Err(e)) => return Err(e),
                Err(_) => return Err(timed_out()),
            }
            let now = tokio::time::Instant::now();
            if now >= deadline {
                return Err(timed_out());
            }
            // The last sleep is cut to the deadline, so the final check happens there.
            tokio::time::sleep(delay.min(deadline - now)).await;
            delay = (delay * 2).min(self.max_delay);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    #[tokio::test]
    async fn until_backs_off_and_stops_at_the_deadline() {
        let calls = Mutex::new(0u32);
        let started = std::time::Instant::now();
        let r: Result<()> = WaitFor::new("i-1", "running")
            .within(Duration::from_millis(200))
            .first_delay(Duration::from_millis(20))
            .until(|| {
                *calls.lock().unwrap() += 1;
                async { Ok(None) }
            })
            .await;
        assert!(matches!(r, Err(Error::Timeout { ref machine, .. }) if machine == "i-1"));
        // Checks at 0, 20, 60 and 140 ms; the next sleep (160 ms) is cut to the deadline,
        // where the last check happens: never before it, never long after.
        let n_calls = *calls.lock().unwrap();
        assert!((4..=5).contains(&n_calls), "{n_calls} calls");
        assert!(started.elapsed() >= Duration::from_millis(200));
        assert!(started.elapsed() < Duration::from_secs(2));
        let n = Mutex::new(0);
        let v = WaitFor::new("x", "ready")
            .within(Duration::from_secs(60))
            .first_delay(Duration::from_millis(10))
            .until(|| {
                *n.lock().unwrap() += 1;
                let done = *n.lock().unwrap() == 3;
                async move { Ok(done.then_some(42)) }
            })
            .await
            .unwrap();
        assert_eq!(v, 42);
    }

    #[tokio::test]
    async fn a_check_that_never_answers_is_abandoned_at_the_deadline() {
        let started = std::time::Instant::now();
        let r: Result<()> = WaitFor::new("i-1", "running")
            .within(Duration::from_millis(300))
            .first_delay(Duration::from_millis(10))
            .until(std::future::pending)
            .await;
        assert!(matches!(r, Err(Error::Timeout { .. })), "{r:?}");
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{:?}",
            started.elapsed()
        );
    }
}
