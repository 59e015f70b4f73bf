//! One build under its lease: renewed while the build runs, given up when it is lost,
//! bounded by the config's timeout and by a stop request; then the outcome told to the
//! source (or not, in silent mode).

use std::path::Path;
use std::time::Duration;

use tokio::sync::watch;

use super::{Agent, AgentConfig, AgentContext};
use hgauto_core::error::{Error, Result};
use hgauto_core::job::{Job, JobOutcome};

/// Renewals after a failed one: 100 ms doubling, at most 51.2 s (and never past a third of
/// what is left of the lease).
const RENEW_BACKOFF: hgauto_core::retry::RetryPolicy = hgauto_core::retry::RetryPolicy {
    max_retries: u32::MAX,
    base_delay: Duration::from_millis(100),
    factor: 2.0,
    max_delay: Duration::from_millis(51_200),
    jitter: hgauto_core::retry::Jitter::None,
};

/// How a build ended, before it is reported.
pub(super) enum Ended {
    Done(Result<JobOutcome>),
    TimedOut(Duration),
    LeaseLost(Error),
    Abandoned,
}

impl Agent {
    /// Runs the build, renewing the lease, until it ends, times out, loses its lease, or
    /// outlives a stop request by `stop_bound`.
    pub(super) async fn build_with_lease(
        &self,
        job: &mut Job,
        config: &AgentConfig,
        log: &Path,
    ) -> Ended {
        let (cancel_tx, cancel_rx) = watch::channel(false);
        let ctx = AgentContext {
            debug: config.debug,
            log: log.to_owned(),
            provider: self.provider.clone(),
            cancel: cancel_rx,
        };
        let mut build = self.build.build(job.clone(), ctx);
        let timeout_at = config.timeout.map(|t| tokio::time::Instant::now() + t);
        let mut deadline_ms = job.lease.as_ref().map(|l| l.deadline_ms);
        let mut stop_rx = self.stop.subscribe();
        let mut abandon_at: Option<tokio::time::Instant> = None;
        if self.stopping() {
            cancel_tx.send_replace(true);
            abandon_at = Some(tokio::time::Instant::now() + self.stop_bound);
        }
        let mut failures = 0u32;
        loop {
            // Renew when a third of the lease is left... of what remains: every third. After
            // failed renewals, back off (100 ms, 200 ms, ... at most a third of what is left).
            let left = deadline_ms.map(|d| d.saturating_sub(self.clock.now_ms()));
            let renew_in = left.map(|left| {
                let regular = Duration::from_millis((left / 3).max(20));
                if failures == 0 {
                    regular
                } else {
                    RENEW_BACKOFF.delay(failures - 1, 0.0).min(regular)
                }
            });
            // The lease's end as the agent knows it: past it the source may hand the job to
            // another agent, so the build stops there without waiting for the source.
            let lease_end = left.map(|l| tokio::time::Instant::now() + Duration::from_millis(l));
            tokio::select! {
                out = &mut build => return Ended::Done(out),
                _ = sleep_until_opt(lease_end) => {
                    cancel_tx.send_replace(true);
                    return Ended::LeaseLost(Error::LeaseLost {
                        job: job.id.clone(),
                        source_name: self.source.name().to_owned(),
                        reason: format!(
                            "its lease ran out while renewals failed ({failures} in a row); the build was stopped"
                        ),
                    });
                }
                _ = sleep_opt(renew_in) => {
                    match self.source.heartbeat(job).await {
                        Ok(lease) => {
                            failures = 0;
                            deadline_ms = Some(lease.deadline_ms);
                            job.lease = Some(lease.clone());
                            self.with_status(|s| {
                                s.lease_renewals += 1;
                                if let Some(c) = &mut s.current {
                                    c.lease_deadline_ms = Some(lease.deadline_ms);
                                }
                            });
                        }
                        Err(e @ Error::LeaseLost { .. }) => {
                            cancel_tx.send_replace(true);
                            return Ended::LeaseLost(e);
                        }
                        Err(e) => {
                            failures = failures.saturating_add(1);
                            tracing::warn!(agent = %self.name, job = %job.id, error = %e, failures, "renewing the lease failed; trying again");
                        }
                    }
                }
                _ = sleep_until_opt(timeout_at) => {
                    cancel_tx.send_replace(true);
                    return Ended::TimedOut(config.timeout.unwrap_or_default());
                }
                _ = until_set(&mut stop_rx), if abandon_at.is_none() => {
                    cancel_tx.send_replace(true);
                    abandon_at = Some(tokio::time::Instant::now() + self.stop_bound);
                }
                _ = sleep_until_opt(abandon_at) => return Ended::Abandoned,
            }
        }
    }

    /// Turns how the build ended into an outcome, and tells the source unless silent.
    pub(super) async fn finish(
        &self,
        job: &Job,
        config: &AgentConfig,
        ended: Ended,
    ) -> (JobOutcome, bool) {
        let outcome = match ended {
            Ended::Done(Ok(o)) => o,
            Ended::Done(Err(e)) => JobOutcome::Failed {
                summary: e.to_string(),
                retryable: e.is_retryable(),
            },
            Ended::TimedOut(t) => JobOutcome::Failed {
                summary: format!("timed out after {} s", t.as_secs_f64()),
                retryable: true,
            },
            Ended::LeaseLost(e) => {
                self.with_status(|s| s.leases_lost += 1);
                tracing::warn!(agent = %self.name, job = %job.id, error = %e, "lease lost: the build was abandoned");
                return (
                    JobOutcome::Skipped {
                        reason: "the lease was lost".into(),
                    },
                    false,
                );
            }
            Ended::Abandoned => {
                if let Err(e) = self.source.release(job).await {
                    tracing::warn!(agent = %self.name, job = %job.id, error = %e, "giving the job back failed");
                }
                return (
                    JobOutcome::Skipped {
                        reason: "given back: the agent stopped".into(),
                    },
                    false,
                );
            }
        };
        if config.silent {
            if let Err(e) = self.source.release(job).await {
                tracing::warn!(agent = %self.name, job = %job.id, error = %e, "giving the job back failed");
            }
            return (outcome, false);
        }
        match self.source.report(job, &outcome).await {
            Ok(()) => (outcome, true),
            Err(e) => {
                if matches!(e, Error::LeaseLost { .. }) {
                    self.with_status(|s| s.leases_lost += 1);
                }
                tracing::warn!(agent = %self.name, job = %job.id, error = %e, "reporting the outcome failed");
                (outcome, false)
            }
        }
    }
}

/// Resolves once the flag behind `rx` is set (or its sender is gone). The guard `wait_for`
/// returns is dropped here, so callers' futures stay `Send`.
pub(super) async fn until_set(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|set| *set).await;
}

async fn sleep_opt(d: Option<Duration>) {
    match d {
        Some(d) => tokio::time::sleep(d).await,
        None => std::future::pending().await,
    }
}

async fn sleep_until_opt(t: Option<tokio::time::Instant>) {
    match t {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}
