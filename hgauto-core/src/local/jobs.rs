//! [`ListJobSource`]: a fixed list of jobs, handed out in order.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use async_trait::async_trait;

use crate::error::{Error, Result};
use crate::job::{Job, JobOutcome};
use crate::job_source::JobSource;

#[derive(Debug, Default)]
struct State {
    pending: VecDeque<Job>,
    in_flight: HashMap<String, u64>,
    reported: HashMap<String, JobOutcome>,
    outcomes: Vec<(Job, JobOutcome)>,
}

/// A [`JobSource`] over a list given up front: each job is handed out once, in order.
/// Useful for scripts, tests and one-off batches.
#[derive(Debug, Default)]
pub struct ListJobSource {
    state: Mutex<State>,
}

impl ListJobSource {
    /// A source that hands out `jobs` in order.
    pub fn new(jobs: impl IntoIterator<Item = Job>) -> Self {
        ListJobSource {
            state: Mutex::new(State {
                pending: jobs.into_iter().collect(),
                ..State::default()
            }),
        }
    }

    /// Adds a job at the end of the queue.
    pub fn push(&self, job: Job) {
        self.lock().pending.push_back(job);
    }

    /// Every reported outcome so far, in report order.
    pub fn outcomes(&self) -> Vec<(Job, JobOutcome)> {
        self.lock().outcomes.clone()
    }

    /// How many heartbeats the in-flight job `id` has received.
    pub fn heartbeats(&self, id: &str) -> Option<u64> {
        self.lock().in_flight.get(id).copied()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[async_trait]
impl JobSource for ListJobSource {
    async fn next(&self) -> Result<Option<Job>> {
        let mut st = self.lock();
        let job = st.pending.pop_front();
        if let Some(j) = &job {
            st.in_flight.insert(j.id.clone(), 0);
        }
        Ok(job)
    }

    async fn report(&self, job: &Job, outcome: &JobOutcome) -> Result<()> {
        let mut st = self.lock();
        if st.in_flight.remove(&job.id).is_some() {
            st.reported.insert(job.id.clone(), outcome.clone());
            st.outcomes.push((job.clone(), outcome.clone()));
            return Ok(());
        }
        match st.reported.get(&job.id) {
            Some(previous) if previous == outcome => Ok(()),
            Some(previous) => Err(Error::Conflict {
                what: format!("job {}", job.id),
                reason: format!("already reported as {previous:?}"),
            }),
            None => Err(Error::NotFound {
                what: format!("in-flight job {}", job.id),
            }),
        }
    }

    async fn heartbeat(&self, job: &Job) -> Result<()> {
        match self.lock().in_flight.get_mut(&job.id) {
            Some(n) => {
                *n += 1;
                Ok(())
            }
            None => Err(Error::NotFound {
                what: format!("in-flight job {}", job.id),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hands_out_in_order_and_records_outcomes() {
        let src = ListJobSource::new([Job::new("a", "branch"), Job::new("b", "branch")]);
        let a = src.next().await.unwrap().unwrap();
        assert_eq!(a.id, "a");
        src.heartbeat(&a).await.unwrap();
        assert_eq!(src.heartbeats("a"), Some(1));
        let ok = JobOutcome::Succeeded {
            summary: "built".into(),
        };
        src.report(&a, &ok).await.unwrap();
        src.report(&a, &ok).await.unwrap(); // same outcome twice: harmless
        let other = JobOutcome::Skipped { reason: "x".into() };
        assert!(matches!(
            src.report(&a, &other).await,
            Err(Error::Conflict { .. })
        ));
        assert!(matches!(
            src.heartbeat(&a).await,
            Err(Error::NotFound { .. })
        ));
        assert_eq!(src.next().await.unwrap().unwrap().id, "b");
        assert!(src.next().await.unwrap().is_none());
        assert_eq!(src.outcomes().len(), 1);
    }
}
