//! Choosing the next job: a consumer's sorted view of `queue/`, listed again only when the
//! directory changed and the view is older than [`REFRESH`] (or when it has no job left
//! to offer), so that a queue of thousands of jobs is not listed for every job.

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

use super::files::{
    file_id, id_part, key_file, queue_name, read_json, refuse_outright, replace, Claim,
};
use super::DirJobSource;
use crate::error::{Error, IoContext, Result};
use crate::job::{Job, JobFilter, Lease};
use crate::job_source::Depth;
use crate::local::jobs::new_token;

/// How stale a consumer's view of the queue may be. A job added meanwhile is seen by the
/// next listing; one with a higher priority than what is being handed out waits at most
/// this long.
pub(super) const REFRESH: Duration = Duration::from_millis(250);

/// A consumer's sorted list of queue file names, and what it learnt about each.
#[derive(Debug, Default)]
pub(super) struct QueueView {
    names: Vec<String>,
    /// The check and revision of files already read, for filters.
    known: HashMap<String, Job>,
    listed: Option<Instant>,
    mtime: Option<SystemTime>,
}

impl QueueView {
    fn needs_listing(&self, queue: &Path) -> bool {
        let Some(listed) = self.listed else {
            return true;
        };
        let changed = std::fs::metadata(queue).and_then(|m| m.modified()).ok() != self.mtime;
        self.names.is_empty() || (changed && listed.elapsed() >= REFRESH)
    }

    /// Makes the next hand-out list the queue again.
    pub(super) fn forget_listing(&mut self) {
        self.listed = None;
    }

    fn list(&mut self, queue: &Path) -> Result<()> {
        self.mtime = std::fs::metadata(queue).and_then(|m| m.modified()).ok();
        let mut names = Vec::new();
        for entry in std::fs::read_dir(queue).at("list", queue, "localhost")? {
            let entry = entry.at("list", queue, "localhost")?;
            if let Some(n) = entry.file_name().to_str() {
                if n.ends_with(".json") && !n.starts_with('.') {
                    names.push(n.to_owned());
                }
            }
        }
        names.sort();
        self.known.retain(|n, _| names.binary_search(n).is_ok());
        self.names = names;
        self.listed = Some(Instant::now());
        Ok(())
    }
}

impl DirJobSource {
    /// Leases the best job that passes `filter`, from a fresh listing when the view has none.
    pub(super) fn next_blocking(&self, filter: &JobFilter) -> Result<Option<Job>> {
        let _lock = self.lock()?;
        let queue = self.root.join("queue");
        let mut view = self.view.lock().unwrap_or_else(|p| p.into_inner());
        let mut fresh = false;
        if view.needs_listing(&queue) {
            view.list(&queue)?;
            fresh = true;
        }
        loop {
            if let Some(job) = self.scan(&mut view, filter)? {
                return Ok(Some(job));
            }
            if fresh {
                return Ok(None);
            }
            view.list(&queue)?;
            fresh = true;
        }
    }

    /// Walks the view in order and leases the first free job that passes `filter`,
    /// dropping names whose files are gone.
    fn scan(&self, view: &mut QueueView, filter: &JobFilter) -> Result<Option<Job>> {
        let now = self.clock.now_ms();
        let mut gone = Vec::new();
        let mut chosen = None;
        for name in &view.names {
            if view.known.get(name).is_some_and(|j| !filter.matches(j)) {
                continue;
            }
            // Reported already (a report cut short before it removed the queue file): its
            // file is only a leftover.
            if self.is_done(id_part(name)) {
                let _ = std::fs::remove_file(self.root.join("queue").join(name));
                gone.push(name.clone());
                continue;
            }
            let claim: Option<Claim> = read_json(&self.claim_path(id_part(name))).unwrap_or(None);
            if claim.as_ref().is_some_and(|c| c.deadline_ms > now) {
                continue;
            }
            let path = self.root.join("queue").join(name);
            let Some(job) = self.read_job(&path, name)? else {
                gone.push(name.clone());
                continue;
            };
            view.known.insert(
                name.clone(),
                Job {
                    revision: job.revision.clone(),
                    ..Job::new(job.id.clone(), job.check.clone())
                },
            );
            if !filter.matches(&job) {
                continue;
            }
            // A dropped file was renamed: its claim is under its id, read it again.
            let claim: Option<Claim> = if *name == queue_name(&job) {
                claim
            } else {
                gone.push(name.clone());
                read_json(&self.claim_path(&file_id(&job.id))).unwrap_or(None)
            };
            if claim.as_ref().is_some_and(|c| c.deadline_ms > now) {
                continue;
            }
            chosen = Some((job, claim.map_or(0, |c| c.attempt) + 1));
            break;
        }
        view.names.retain(|n| !gone.contains(n));
        let Some((job, attempt)) = chosen else {
            return Ok(None);
        };
        self.lease(job, attempt).map(Some)
    }

    /// Counts the queue for [`JobSource::depth`](crate::JobSource::depth): the jobs that
    /// pass `filter`, leased while their claim runs. It only reads: a file that is not a
    /// job (yet) is not counted, and is left for a hand-out to quarantine.
    pub(super) fn depth_blocking(&self, filter: &JobFilter) -> Result<Depth> {
        let now = self.clock.now_ms();
        let mut depth = Depth::exact(0, 0);
        for name in self.queue_files()? {
            let path = self.root.join("queue").join(&name);
            if self.is_done(id_part(&name)) || refuse_outright(&path).is_some() {
                continue;
            }
            let Ok(Some(job)) = read_json::<Job>(&path) else {
                continue;
            };
            if job.id.is_empty() || !filter.matches(&job) {
                continue;
            }
            let claim: Option<Claim> =
                read_json(&self.claim_path(&file_id(&job.id))).unwrap_or(None);
            if claim.is_some_and(|c| c.deadline_ms > now) {
                depth.leased += 1;
            } else {
                depth.pending += 1;
            }
        }
        Ok(depth)
    }

    /// Writes a claim on `job` (its `attempt`-th hand-out) and returns it leased, with its
    /// history. The caller holds the queue lock and has checked the job is free.
    pub(super) fn lease(&self, mut job: Job, attempt: u32) -> Result<Job> {
        let now = self.clock.now_ms();
        let lease = Lease {
            token: new_token(),
            deadline_ms: now + self.ttl.as_millis() as u64,
        };
        let claim = serde_json::to_vec(&Claim {
            token: lease.token.clone(),
            deadline_ms: lease.deadline_ms,
            attempt,
        })
        .map_err(|e| Error::invalid("claim", e.to_string()))?;
        replace(&self.claim_path(&file_id(&job.id)), &claim)?;
        // An enqueue cut short after its file landed left the id unmarked: mark it now,
        // so the id is never queued twice.
        let _ = self.mark_id(&job);
        let history = self
            .root
            .join("history")
            .join(format!("{}.json", key_file(&job.build_key())));
        job.previous = read_json(&history).unwrap_or(None);
        job.source = self.name.clone();
        job.lease = Some(lease);
        job.attempt = attempt;
        Ok(job)
    }

    /// The job in queue file `name`: `None` when the file is gone, was quarantined, or is a
    /// duplicate. A dropped file gets its canonical name, so claims and reports find it.
    fn read_job(&self, path: &Path, name: &str) -> Result<Option<Job>> {
        if let Some(reason) = refuse_outright(path) {
            let e = Error::invalid(format!("job file {}", path.display()), reason);
            self.quarantine(path, &e, true);
            return Ok(None);
        }
        let mut job: Job = match read_json(path) {
            Ok(Some(j)) => j,
            Ok(None) => return Ok(None),
            Err(e) => {
                self.quarantine(path, &e, false);
                return Ok(None);
            }
        };
        if job.id.is_empty() || job.check.is_empty() {
            self.quarantine(
                path,
                &Error::invalid("job", "needs an id and a check"),
                false,
            );
            return Ok(None);
        }
        if job.created_ms == 0 {
            job.created_ms = std::fs::metadata(path)
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map_or(0, |d| d.as_millis() as u64);
        }
        let canonical = queue_name(&job);
        if name != canonical {
            if !self.mark_id(&job)? {
                let dup = Error::invalid(format!("job {}", job.id), "is already queued or done");
                tracing::warn!(file = %path.display(), error = %dup, "quarantined a duplicate job file");
                let _ = std::fs::rename(path, self.root.join("failed").join(name));
                return Ok(None);
            }
            let target = self.root.join("queue").join(&canonical);
            std::fs::rename(path, &target).at("rename into place", &target, "localhost")?;
        }
        Ok(Some(job))
    }
}
