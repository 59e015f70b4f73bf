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
    /// Checks that the policy can be followed: `factor` is a finite number of at least 1
    /// (a policy whose delays shrink or explode into infinity is a typo), and `base_delay`
    /// is not above `max_delay`. `what` names the policy in the error (e.g. `"retry"`, or a
    /// pipeline step).
    pub fn validate(&self, what: &str) -> Result<()> {
        if !(self.factor.is_finite() && self.factor >= 1.0) {
            return Err(Error::invalid(
                format!("{what} factor"),
                format!("{} must be a number >= 1", self.factor),
            ));
        }
        if self.base_delay > self.max_delay {
            return Err(Error::invalid(
                format!("{what} base_delay"),
                format!(
                    "{:?} is above max_delay ({:?})",
                    self.base_delay, self.max_delay
                ),
            ));
        }
        Ok(())
    }

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
        op: F,
    ) -> Result<T>
    where
        F: FnMut(u32) -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        self.run_if_with(clock, rng, what, Error::is_retryable, op)
            .await
    }

    /// Runs `op` (given the 0-based attempt number), retrying under this policy the
    /// failures `retry_if` picks, whatever their error type: for a backend whose one
    /// transient failure is specific (an instance profile IAM has not propagated yet).
    pub async fn run_if<T, E, F, Fut>(
        &self,
        what: &str,
        retry_if: impl Fn(&E) -> bool,
        op: F,
    ) -> std::result::Result<T, E>
    where
        E: std::fmt::Display,
        F: FnMut(u32) -> Fut,
        Fut: Future<Output = std::result::Result<T, E>>,
    {
        self.run_if_with(&TokioClock, &ThreadRng, what, retry_if, op)
            .await
    }

    async fn run_if_with<T, E, F, Fut>(
        &self,
        clock: &dyn Clock,
        rng: &dyn UnitRng,
        what: &str,
        retry_if: impl Fn(&E) -> bool,
        mut op: F,
    ) -> std::result::Result<T, E>
    where
        E: std::fmt::Display,
        F: FnMut(u32) -> Fut,
        Fut: Future<Output = std::result::Result<T, E>>,
    {
        let mut attempt = 0u32;
        loop {
            match op(attempt).await {
                Ok(v) => return Ok(v),
                Err(e) if retry_if(&e) && attempt < self.max_retries => {
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
    async fn run_if_retries_only_the_failures_it_picks() {
        let p = RetryPolicy {
            max_retries: 5,
            base_delay: Duration::from_millis(1),
            factor: 1.0,
            max_delay: Duration::from_millis(1),
            jitter: Jitter::None,
        };
        // "not yet" twice, then success: three attempts.
        let r: std::result::Result<u32, String> = p
            .run_if(
                "t",
                |e: &String| e == "not yet",
                |n| async move {
                    if n < 2 {
                        Err("not yet".to_owned())
                    } else {
                        Ok(n)
                    }
                },
            )
            .await;
        assert_eq!(r, Ok(2));
        // Any other failure ends at once.
        let mut calls = 0;
        let r: std::result::Result<(), String> = p
            .run_if(
                "t",
                |e: &String| e == "not yet",
                |_| {
                    calls += 1;
                    async { Err("denied".to_owned()) }
                },
            )
            .await;
        assert_eq!((r, calls), (Err("denied".to_owned()), 1));
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
