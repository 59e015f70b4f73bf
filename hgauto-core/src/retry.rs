//! One retry policy for everything: API calls, connections, downloads, pipeline steps.
//!
//! An operation is retried only when its error says so ([`Error::is_retryable`]); an
//! integrity failure, a conflict or bad input ends it at once. The clock and the random
//! source are injectable, so tests run the real state machine without sleeping.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use rand::Rng as _;

use crate::error::{Error, Result};

/// How a computed delay is randomised.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Jitter {
    /// Exactly the computed delay.
    None,
    /// Uniform in `[0, delay]` ("full jitter"): spreads out a herd of clients best.
    Full,
    /// The computed delay plus a uniform extra in `[min, max]` (robustcheckout's 1-5 s).
    Add {
        /// Smallest extra delay.
        min: Duration,
        /// Largest extra delay.
        max: Duration,
    },
}

/// When and how often to try an operation again.
///
/// The delay before retry `n` (0-based) is `min(base_delay * factor^n, max_delay)`, then
/// jittered. The [`Default`] is 3 retries from 1 s, doubling, capped at 30 s, full jitter.
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    /// Retries after the first attempt (so `max_retries + 1` attempts in all).
    pub max_retries: u32,
    /// Delay before the first retry.
    pub base_delay: Duration,
    /// Growth factor per retry.
    pub factor: f64,
    /// Upper bound of the un-jittered delay.
    pub max_delay: Duration,
    /// Randomisation applied to each delay.
    pub jitter: Jitter,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_retries: 3,
            base_delay: Duration::from_secs(1),
            factor: 2.0,
            max_delay: Duration::from_secs(30),
            jitter: Jitter::Full,
        }
    }
}

impl RetryPolicy {
    /// Cheap, often-flaky operations (API calls that get throttled): 5 retries after
    /// 5, 10, 20, 40 and 80 s. HHVM's policy for its Lambda steps.
    pub fn cheap() -> Self {
        RetryPolicy {
            max_retries: 5,
            base_delay: Duration::from_secs(5),
            factor: 2.0,
            max_delay: Duration::from_secs(80),
            jitter: Jitter::None,
        }
    }

    /// Long steps that can fail for real reasons (builds): 2 retries, after 60 s then
    /// 300 s. HHVM's policy for its activities.
    pub fn heavy() -> Self {
        RetryPolicy {
            max_retries: 2,
            base_delay: Duration::from_secs(60),
            factor: 5.0,
            max_delay: Duration::from_secs(300),
            jitter: Jitter::None,
        }
    }

    /// Network operations: 3 retries with exponential backoff (2, 4, 8 s) plus 1-5 s of
    /// jitter. robustcheckout's policy for network errors.
    pub fn network() -> Self {
        RetryPolicy {
            max_retries: 3,
            base_delay: Duration::from_secs(2),
            factor: 2.0,
            max_delay: Duration::from_secs(60),
            jitter: Jitter::Add {
                min: Duration::from_secs(1),
                max: Duration::from_secs(5),
            },
        }
    }

    /// No retries at all.
    pub fn none() -> Self {
        RetryPolicy {
            max_retries: 0,
            ..Self::default()
        }
    }

    /// The delay before retry `retry` (0-based), given a uniform sample `unit` in `[0, 1)`.
    pub fn delay(&self, retry: u32, unit: f64) -> Duration {
        let exp = self.factor.max(1.0).powi(retry.min(64) as i32);
        let raw = self.base_delay.as_secs_f64() * exp;
        let capped = Duration::from_secs_f64(raw.min(self.max_delay.as_secs_f64()));
        let unit = unit.clamp(0.0, 1.0);
        match self.jitter {
            Jitter::None => capped,
            Jitter::Full => capped.mul_f64(unit),
            Jitter::Add { min, max } => {
                let span = max.saturating_sub(min);
                capped + min + span.mul_f64(unit)
            }
        }
    }

    /// Runs `op` until it succeeds, fails with a non-retryable error, or retries run out.
    /// `op` gets the 0-based attempt number.
    pub async fn run<T, F, Fut>(&self, what: &str, op: F) -> Result<T>
    where
        F: FnMut(u32) -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        self.run_with(&TokioClock, &ThreadRng, what, op).await
    }

    /// [`run`](Self::run) with an explicit clock and random source (for tests).
    pub async fn run_with<T, F, Fut>(
        &self,
        clock: &dyn Clock,
        rng: &dyn UnitRng,
        what: &str,
        mut op: F,
    ) -> Result<T>
    where
        F: FnMut(u32) -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let mut attempt = 0u32;
        loop {
            match op(attempt).await {
                Ok(v) => return Ok(v),
                Err(e) if e.is_retryable() && attempt < self.max_retries => {
                    let delay = self.delay(attempt, rng.unit());
                    tracing::warn!(
                        %what, attempt = attempt + 1, retry_in = ?delay, error = %e,
                        "retryable failure"
                    );
                    clock.sleep(delay).await;
                    attempt += 1;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Runs a blocking `op` with retries on the current thread (for code that already runs
    /// on a blocking thread, such as an SSH session thread).
    pub fn run_blocking<T>(&self, what: &str, mut op: impl FnMut(u32) -> Result<T>) -> Result<T> {
        let mut attempt = 0u32;
        loop {
            match op(attempt) {
                Ok(v) => return Ok(v),
                Err(e) if e.is_retryable() && attempt < self.max_retries => {
                    let delay = self.delay(attempt, ThreadRng.unit());
                    tracing::warn!(%what, attempt = attempt + 1, retry_in = ?delay, error = %e, "retryable failure");
                    std::thread::sleep(delay);
                    attempt += 1;
                }
                Err(e) => return Err(e),
            }
        }
    }
}

/// Polls `check` until it returns `Ok(Some(value))`, with exponential backoff from
/// `first_delay` (doubling, at most 15 s) and a hard deadline of `limit`. `check` returns
/// `Ok(None)` to keep waiting and `Err` to stop at once. On the deadline the error is
/// [`Error::Timeout`] naming `resource` and `what` was awaited; a check still running at
/// the deadline is abandoned, so a hung call cannot hold the wait past it.
pub async fn poll_until<T, F, Fut>(
    resource: &str,
    what: &str,
    limit: Duration,
    first_delay: Duration,
    check: F,
) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Option<T>>>,
{
    poll_until_capped(
        resource,
        what,
        limit,
        first_delay,
        Duration::from_secs(15),
        check,
    )
    .await
}

/// [`poll_until`] with the longest delay between checks set to `max_delay`. The last check
/// happens at the deadline itself, not one delay before it.
pub async fn poll_until_capped<T, F, Fut>(
    resource: &str,
    what: &str,
    limit: Duration,
    first_delay: Duration,
    max_delay: Duration,
    mut check: F,
) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Option<T>>>,
{
    let deadline = tokio::time::Instant::now() + limit;
    let timed_out = || Error::Timeout {
        machine: resource.to_owned(),
        what: what.to_owned(),
        after: limit,
    };
    let mut delay = first_delay;
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
        // The last sleep is cut to the deadline, so the final check happens at the deadline.
        tokio::time::sleep(delay.min(deadline - now)).await;
        delay = (delay * 2).min(max_delay);
    }
}

/// A source of time for [`RetryPolicy`]: sleeps for a duration.
pub trait Clock: Send + Sync {
    /// Waits for `d`.
    fn sleep(&self, d: Duration) -> Pin<Box<dyn Future<Output = ()> + Send + '_>>;
}

/// A source of uniform samples in `[0, 1)` for jitter.
pub trait UnitRng: Send + Sync {
    /// One sample.
    fn unit(&self) -> f64;
}

/// The real clock: `tokio::time::sleep`.
#[derive(Debug, Default, Clone, Copy)]
pub struct TokioClock;

impl Clock for TokioClock {
    fn sleep(&self, d: Duration) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        Box::pin(tokio::time::sleep(d))
    }
}

/// The real random source: the thread-local RNG.
#[derive(Debug, Default, Clone, Copy)]
pub struct ThreadRng;

impl UnitRng for ThreadRng {
    fn unit(&self) -> f64 {
        rand::thread_rng().gen::<f64>()
    }
}

impl<T: UnitRng + ?Sized> UnitRng for Arc<T> {
    fn unit(&self) -> f64 {
        (**self).unit()
    }
}

/// Whether an error can be retried, for error types outside this crate.
pub trait Retryable {
    /// True when trying again can help.
    fn is_retryable(&self) -> bool;
}

impl Retryable for Error {
    fn is_retryable(&self) -> bool {
        Error::is_retryable(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// Records sleeps instead of sleeping.
    #[derive(Default)]
    struct FakeClock(Mutex<Vec<Duration>>);
    impl Clock for FakeClock {
        fn sleep(&self, d: Duration) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
            self.0.lock().unwrap().push(d);
            Box::pin(async {})
        }
    }
    struct FixedRng(f64);
    impl UnitRng for FixedRng {
        fn unit(&self) -> f64 {
            self.0
        }
    }

    fn flaky() -> Error {
        Error::Timeout {
            machine: "m".into(),
            what: "x".into(),
            after: Duration::from_secs(1),
        }
    }

    #[tokio::test]
    async fn cheap_sleeps_5_10_20_40_80() {
        let clock = FakeClock::default();
        let r: Result<()> = RetryPolicy::cheap()
            .run_with(&clock, &FixedRng(0.5), "t", |_| async { Err(flaky()) })
            .await;
        assert!(r.is_err());
        let secs: Vec<u64> = clock
            .0
            .lock()
            .unwrap()
            .iter()
            .map(|d| d.as_secs())
            .collect();
        assert_eq!(secs, [5, 10, 20, 40, 80]);
    }

    #[tokio::test]
    async fn heavy_sleeps_60_then_300() {
        let clock = FakeClock::default();
        let _ = RetryPolicy::heavy()
            .run_with(&clock, &FixedRng(0.0), "t", |_| async {
                Err::<(), _>(flaky())
            })
            .await;
        let secs: Vec<u64> = clock
            .0
            .lock()
            .unwrap()
            .iter()
            .map(|d| d.as_secs())
            .collect();
        assert_eq!(secs, [60, 300]);
    }

    #[tokio::test]
    async fn network_adds_one_to_five_seconds() {
        let p = RetryPolicy::network();
        assert_eq!(p.delay(0, 0.0), Duration::from_secs(3));
        assert_eq!(p.delay(0, 1.0), Duration::from_secs(7));
        assert_eq!(p.delay(2, 0.0), Duration::from_secs(9));
        let clock = FakeClock::default();
        let calls = Mutex::new(0);
        let _ = p
            .run_with(&clock, &FixedRng(0.25), "t", |_| {
                *calls.lock().unwrap() += 1;
                async { Err::<(), _>(flaky()) }
            })
            .await;
        assert_eq!(*calls.lock().unwrap(), 4, "1 attempt + 3 retries");
    }

    #[tokio::test]
    async fn integrity_failure_is_never_retried() {
        let clock = FakeClock::default();
        let calls = Mutex::new(0);
        let r: Result<()> = RetryPolicy::cheap()
            .run_with(&clock, &FixedRng(0.5), "t", |_| {
                *calls.lock().unwrap() += 1;
                async {
                    Err(Error::Integrity {
                        what: "f".into(),
                        expected: "a".into(),
                        actual: "b".into(),
                    })
                }
            })
            .await;
        assert!(matches!(r, Err(Error::Integrity { .. })));
        assert_eq!(*calls.lock().unwrap(), 1);
        assert!(clock.0.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn succeeds_after_transient_failures() {
        let clock = FakeClock::default();
        let r = RetryPolicy::default()
            .run_with(&clock, &FixedRng(1.0), "t", |attempt| async move {
                if attempt < 2 {
                    Err(flaky())
                } else {
                    Ok(attempt)
                }
            })
            .await;
        assert_eq!(r.unwrap(), 2);
        let slept = clock.0.lock().unwrap().clone();
        assert_eq!(slept, [Duration::from_secs(1), Duration::from_secs(2)]);
    }

    #[tokio::test]
    async fn poll_until_backs_off_and_stops_at_the_deadline() {
        let calls = Mutex::new(0u32);
        let started = std::time::Instant::now();
        let r: Result<()> = poll_until(
            "i-1",
            "running",
            Duration::from_millis(200),
            Duration::from_millis(20),
            || {
                *calls.lock().unwrap() += 1;
                async { Ok(None) }
            },
        )
        .await;
        assert!(matches!(r, Err(Error::Timeout { ref machine, .. }) if machine == "i-1"));
        // Checks at 0, 20, 60 and 140 ms; the next sleep (160 ms) is cut to the deadline,
        // where the last check happens: never before it, never long after.
        let n_calls = *calls.lock().unwrap();
        assert!((4..=5).contains(&n_calls), "{n_calls} calls");
        assert!(started.elapsed() >= Duration::from_millis(200));
        assert!(started.elapsed() < Duration::from_secs(2));
        let n = Mutex::new(0);
        let v = poll_until(
            "x",
            "ready",
            Duration::from_secs(60),
            Duration::from_millis(10),
            || {
                *n.lock().unwrap() += 1;
                let done = *n.lock().unwrap() == 3;
                async move { Ok(done.then_some(42)) }
            },
        )
        .await
        .unwrap();
        assert_eq!(v, 42);
    }

    #[tokio::test]
    async fn a_check_that_never_answers_is_abandoned_at_the_deadline() {
        let started = std::time::Instant::now();
        let r: Result<()> = poll_until(
            "i-1",
            "running",
            Duration::from_millis(300),
            Duration::from_millis(10),
            std::future::pending,
        )
        .await;
        assert!(matches!(r, Err(Error::Timeout { .. })), "{r:?}");
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{:?}",
            started.elapsed()
        );
    }

    #[test]
    fn full_jitter_stays_within_bounds_and_cap() {
        let p = RetryPolicy::default();
        for retry in 0..20 {
            for unit in [0.0, 0.3, 0.999] {
                assert!(p.delay(retry, unit) <= p.max_delay);
            }
        }
        assert_eq!(p.delay(10, 0.0), Duration::ZERO);
    }
}
