//! [`ListJobSource`]: jobs held in memory, with leases, for scripts, tests and one-off
//! batches.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;

use crate::clock::{self, SharedClock};
use crate::error::{Error, Result};
use crate::job::{Job, JobFilter, JobOutcome, Lease};
use crate::job_source::{Depth, JobSource};

/// The lease a job source gives by default (seed 001's claim TTL).
pub const DEFAULT_LEASE_TTL: Duration = Duration::from_secs(300);

#[derive(Debug, Clone)]
enum Held {
    Pending,
    Leased(Lease),
    Reported { token: String, outcome: JobOutcome },
}

#[derive(Debug)]
struct Entry {
    job: Job,
    held: Held,
}

#[derive(Debug, Default)]
struct State {
    entries: HashMap<String, Entry>,
    history: HashMap<String, JobOutcome>,
    started: HashSet<String>,
    outcomes: Vec<(Job, JobOutcome)>,
    heartbeats: HashMap<String, u64>,
}

/// A [`JobSource`] over jobs given in memory: handed out by priority then age, each under
/// a lease (see the trait's contract).
#[derive(Debug)]
pub struct ListJobSource {
    name: String,
    ttl: Duration,
    clock: SharedClock,
    state: Mutex<State>,
}

impl Default for ListJobSource {
    fn default() -> Self {
        Self::new([])
    }
}

/// A new lease token: unique per hand-out.
pub fn new_token() -> String {
    format!("{:032x}", rand::random::<u128>())
}

/// The error for a lease that is no longer `job`'s holder's.
pub fn lease_lost(source: &str, job: &Job, reason: impl Into<String>) -> Error {
    Error::LeaseLost {
        job: job.id.clone(),
        source_name: source.to_owned(),
        reason: reason.into(),
    }
}

fn token_of(job: &Job) -> &str {
    job.lease.as_ref().map_or("", |l| l.token.as_str())
}

impl ListJobSource {
    /// A source holding `jobs`, with the system clock and [`DEFAULT_LEASE_TTL`].
    pub fn new(jobs: impl IntoIterator<Item = Job>) -> Self {
        let s = ListJobSource {
            name: "list".into(),
            ttl: DEFAULT_LEASE_TTL,
            clock: clock::system(),
            state: Mutex::new(State::default()),
        };
        for j in jobs {
            s.push(j);
        }
        s
    }

    /// Names the source.
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Sets the lease length.
    pub fn with_lease_ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    /// Uses `clock` (e.g. a [`ManualClock`](crate::clock::ManualClock) in tests).
    pub fn with_clock(mut self, clock: SharedClock) -> Self {
        self.clock = clock;
        self
    }

    /// Adds a job (its creation time is now when it has none). A job whose id is already
    /// held is ignored: ids are unique within a source.
    pub fn push(&self, mut job: Job) {
        if job.created_ms == 0 {
            job.created_ms = self.clock.now_ms();
        }
        job.source = self.name.clone();
        job.lease = None;
        job.attempt = 0;
        let mut st = self.lock();
        st.entries.entry(job.id.clone()).or_insert(Entry {
            job,
            held: Held::Pending,
        });
    }

    /// Every reported outcome so far, in report order.
    pub fn outcomes(&self) -> Vec<(Job, JobOutcome)> {
        self.lock().outcomes.clone()
    }

    /// How many heartbeats job `id` has received.
    pub fn heartbeats(&self, id: &str) -> Option<u64> {
        self.lock().heartbeats.get(id).copied()
    }

    /// The (check, revision) keys whose work was marked started.
    pub fn started_builds(&self) -> Vec<String> {
        let mut keys: Vec<String> = self.lock().started.iter().cloned().collect();
        keys.sort();
        keys
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[async_trait]
impl JobSource for ListJobSource {
    fn name(&self) -> &str {
        &self.name
    }

    async fn next(&self, filter: &JobFilter) -> Result<Option<Job>> {
        let now = self.clock.now_ms();
        let mut st = self.lock();
        let best = st
            .entries
            .values()
            .filter(|e| match &e.held {
                Held::Pending => true,
                Held::Leased(l) => l.deadline_ms <= now,
                Held::Reported { .. } => false,
            })
            .filter(|e| filter.matches(&e.job))
            .min_by(|a, b| Job::order(&a.job, &b.job))
            .map(|e| e.job.id.clone());
        let Some(id) = best else {
            return Ok(None);
        };
        let lease = Lease {
            token: new_token(),
            deadline_ms: now + self.ttl.as_millis() as u64,
        };
        let previous = {
            let e = &st.entries[&id];
            st.history.get(&e.job.build_key()).cloned()
        };
        let entry = st.entries.get_mut(&id).expect("chosen above");
        entry.held = Held::Leased(lease.clone());
        entry.job.attempt += 1;
        let mut job = entry.job.clone();
        job.lease = Some(lease);
        job.previous = previous;
        Ok(Some(job))
    }

    async fn depth(&self, filter: &JobFilter) -> Result<Option<Depth>> {
        let now = self.clock.now_ms();
        let st = self.lock();
        let mut depth = Depth::exact(0, 0);
        for e in st.entries.values().filter(|e| filter.matches(&e.job)) {
            match &e.held {
                Held::Leased(l) if l.deadline_ms > now => depth.leased += 1,
                Held::Reported { .. } => {}
                _ => depth.pending += 1,
            }
        }
        Ok(Some(depth))
    }

    async fn started(&self, job: &Job) -> Result<()> {
        self.lock().started.insert(job.build_key());
        Ok(())
    }

    async fn heartbeat(&self, job: &Job) -> Result<Lease> {
        let now = self.clock.now_ms();
        let mut st = self.lock();
        let Some(entry) = st.entries.get_mut(&job.id) else {
            return Err(lease_lost(&self.name, job, "no such job"));
        };
        match &mut entry.held {
            Held::Leased(l) if l.token == token_of(job) && l.deadline_ms > now => {
                l.deadline_ms = now + self.ttl.as_millis() as u64;
                let lease = l.clone();
                *st.heartbeats.entry(job.id.clone()).or_default() += 1;
                Ok(lease)
            }
            Held::Leased(l) if l.token == token_of(job) => {
                Err(lease_lost(&self.name, job, "the lease ran out"))
            }
            _ => Err(lease_lost(&self.name, job, "another holder has it")),
        }
    }

    async fn report(&self, job: &Job, outcome: &JobOutcome) -> Result<()> {
        let mut st = self.lock();
        let Some(entry) = st.entries.get_mut(&job.id) else {
            return Err(lease_lost(&self.name, job, "no such job"));
        };
        match &entry.held {
            Held::Reported { token, outcome: o } if token == token_of(job) => {
                if o == outcome {
                    Ok(())
                } else {
                    Err(Error::Conflict {
                        what: format!("job {}", job.id),
                        reason: format!("already reported as {}", o.status()),
                    })
                }
            }
            // A lease that ran out but that nobody took over still counts.
            Held::Leased(l) if l.token == token_of(job) => {
                let token = l.token.clone();
                entry.held = Held::Reported {
                    token,
                    outcome: outcome.clone(),
                };
                let done = entry.job.clone();
                st.history.insert(done.build_key(), outcome.clone());
                st.outcomes.push((done, outcome.clone()));
                Ok(())
            }
            _ => Err(lease_lost(&self.name, job, "another holder has it")),
        }
    }

    async fn release(&self, job: &Job) -> Result<()> {
        let mut st = self.lock();
        match st.entries.get_mut(&job.id) {
            Some(entry) if matches!(&entry.held, Held::Leased(l) if l.token == token_of(job)) => {
                entry.held = Held::Pending;
                Ok(())
            }
            _ => Err(lease_lost(&self.name, job, "another holder has it")),
        }
    }

    /// Adds the job again under a new id (`<id>~recheck-<n>`), leased to the caller.
    async fn recheck(&self, job: &Job) -> Result<Option<Job>> {
        let now = self.clock.now_ms();
        let mut st = self.lock();
        let mut fresh = (1..)
            .map(|n| job.recheck(n))
            .find(|j| !st.entries.contains_key(&j.id))
            .expect("an unused id");
        let id = fresh.id.clone();
        fresh.source = self.name.clone();
        fresh.attempt = 1;
        let lease = Lease {
            token: new_token(),
            deadline_ms: now + self.ttl.as_millis() as u64,
        };
        st.entries.insert(
            id,
            Entry {
                job: fresh.clone(),
                held: Held::Leased(lease.clone()),
            },
        );
        fresh.previous = st.history.get(&fresh.build_key()).cloned();
        fresh.lease = Some(lease);
        Ok(Some(fresh))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use std::sync::Arc;

    #[tokio::test]
    async fn leases_run_out_and_reports_are_final() {
        let clock = ManualClock::default();
        let s = ListJobSource::new([Job::new("a", "build").with_revision("r1")])
            .with_clock(Arc::new(clock.clone()))
            .with_lease_ttl(Duration::from_secs(10));
        let first = s.next(&JobFilter::any()).await.unwrap().unwrap();
        assert_eq!(first.attempt, 1);
        assert!(s.next(&JobFilter::any()).await.unwrap().is_none());
        clock.advance(Duration::from_secs(11));
        let second = s.next(&JobFilter::any()).await.unwrap().unwrap();
        assert_eq!(second.attempt, 2);
        assert!(matches!(
            s.heartbeat(&first).await,
            Err(Error::LeaseLost { .. })
        ));
        let done = JobOutcome::Succeeded {
            summary: "ok".into(),
        };
        s.report(&second, &done).await.unwrap();
        s.report(&second, &done).await.unwrap();
        assert!(s.report(&first, &done).await.is_err());
        clock.advance(Duration::from_secs(100));
        assert!(s.next(&JobFilter::any()).await.unwrap().is_none());
        assert_eq!(s.outcomes().len(), 1);
    }
}
