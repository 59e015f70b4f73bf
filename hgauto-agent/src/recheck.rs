//! Re-checks (seed 001): with nothing untested, an agent builds again a failed build seven
//! times in ten, else a passed one, drawn by a seeded random generator.

use super::Agent;
use hgauto_core::error::Result;
use hgauto_core::job::{Job, JobOutcome};

/// How many reported builds are kept as re-check candidates.
const RECHECK_CANDIDATES: usize = 500;

impl Agent {
    /// A re-check for an agent with nothing untested: a failed build with probability 0.7,
    /// else a passed one, leased through the source. Candidates the source calls done go.
    pub(super) async fn pick_recheck(&self) -> Result<Option<Job>> {
        let Some(rng) = &self.rechecks else {
            return Ok(None);
        };
        loop {
            let candidate = {
                use rand::Rng;
                let reported = self.reported.lock().unwrap_or_else(|p| p.into_inner());
                let of = |failed: bool| -> Vec<&Job> {
                    reported
                        .iter()
                        .filter(|(_, o)| match o {
                            JobOutcome::Failed { .. } => failed,
                            JobOutcome::Succeeded { .. } => !failed,
                            JobOutcome::Skipped { .. } => false,
                        })
                        .map(|(j, _)| j)
                        .collect()
                };
                let (failed, passed) = (of(true), of(false));
                let mut rng = rng.lock().unwrap_or_else(|p| p.into_inner());
                let want_failed = rng.gen_bool(0.7);
                let pool = match (want_failed, failed.is_empty(), passed.is_empty()) {
                    (_, true, true) => return Ok(None),
                    (true, false, _) | (false, false, true) => &failed,
                    _ => &passed,
                };
                pool[rng.gen_range(0..pool.len())].clone()
            };
            match self.source.recheck(&candidate).await? {
                Some(job) => return Ok(Some(job)),
                None => self
                    .reported
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .retain(|(j, _)| j.build_key() != candidate.build_key()),
            }
        }
    }

    /// Keeps `outcome` as the latest of `job`'s (check, revision), a re-check candidate.
    pub(super) fn remember(&self, job: &Job, outcome: &JobOutcome) {
        if self.rechecks.is_none() {
            return;
        }
        let mut reported = self.reported.lock().unwrap_or_else(|p| p.into_inner());
        reported.retain(|(j, _)| j.build_key() != job.build_key());
        let mut kept = job.clone();
        kept.lease = None;
        reported.push((kept, outcome.clone()));
        if reported.len() > RECHECK_CANDIDATES {
            reported.remove(0);
        }
    }
}
