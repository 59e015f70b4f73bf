//! [`DirJobSource`]: a job queue in a directory, shared by processes on one host (or on a
//! filesystem whose `flock` and `rename` are atomic).
//!
//! ```text
//! DIR/queue/<order>~<id>.json   jobs waiting or in flight (order: priority, then age)
//! DIR/claims/<id>.json          leases: token, deadline, attempt
//! DIR/done/<id>.json            reported jobs, with their outcome
//! DIR/history/<key>.json        the last outcome of each (check, revision)
//! DIR/started/<key>             marks a (check, revision) whose work began
//! DIR/failed/<name>             job files that could not be read, and why (<name>.reason)
//! DIR/ids/<id>                  every id ever queued, so an id is queued once
//! DIR/lock                      flock'ed while a claim, heartbeat, report or release decides
//! ```
//!
//! Each consumer keeps a sorted view of `queue/` and lists it again only when the
//! directory changed and the view is older than 250 ms, or when the view has no free job
//! left (so `None` always comes from a fresh listing).
//!
//! Every file lands by rename, so no reader sees half of one. A plain file drop is a job
//! too: write `*.json` under another name (a dotfile, or outside `queue/`) and rename it in.
//! A file that does not parse is left alone while it is young (it may still be being
//! written by hand) and moved to `failed/` with the reason once it is a minute old; the
//! source goes on with the other jobs. What cannot be a job file at all (a FIFO, a device,
//! a symlink, anything over 1 MiB) is moved there at once: files are opened with
//! `O_NOFOLLOW | O_NONBLOCK` and read only up to the cap, so no entry can wedge or exhaust
//! a consumer.
//!
//! Crash safety: `enqueue` writes the job file before it marks the id (a crash between
//! leaves a job that runs, and the scan marks it); `report` writes `done/` first and the
//! scan never hands out a job that is done, so a report cut short cannot run a job again.

mod files;
mod scan;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;

use super::jobs::{lease_lost, DEFAULT_LEASE_TTL};
use crate::backend::task::blocking;
use crate::clock::{self, SharedClock};
use crate::error::{Error, IoContext, Result};
use crate::job::{Job, JobFilter, JobOutcome, Lease};
use crate::job_source::{Depth, JobSource};
use files::{file_id, id_part, key_file, queue_name, read_json, replace, Claim, Done};
use scan::QueueView;

/// How old an unreadable job file must be before it is quarantined.
const QUARANTINE_AFTER: Duration = Duration::from_secs(60);

/// A job queue in a directory (see the [module docs](self)).
#[derive(Debug, Clone)]
pub struct DirJobSource {
    root: PathBuf,
    name: String,
    ttl: Duration,
    clock: SharedClock,
    view: Arc<Mutex<QueueView>>,
}

impl DirJobSource {
    /// A queue in `root` (its directories are created), with the system clock and
    /// [`DEFAULT_LEASE_TTL`].
    pub fn new(root: impl Into<PathBuf>) -> Result<Self> {
        let root = root.into();
        for d in [
            "queue", "claims", "done", "history", "started", "failed", "ids",
        ] {
            let p = root.join(d);
            std::fs::create_dir_all(&p).at("create directory", &p, "localhost")?;
        }
        Ok(DirJobSource {
            name: format!("dir:{}", root.display()),
            root,
            ttl: DEFAULT_LEASE_TTL,
            clock: clock::system(),
            view: Arc::default(),
        })
    }

    /// Sets the lease length.
    pub fn with_lease_ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    /// Uses `clock` for leases (e.g. a [`ManualClock`](crate::clock::ManualClock)).
    pub fn with_clock(mut self, clock: SharedClock) -> Self {
        self.clock = clock;
        self
    }

    /// Holds `DIR/lock` while a claim, heartbeat, report or release decides.
    fn lock(&self) -> Result<crate::backend::fs::ExclusiveLock> {
        crate::backend::fs::ExclusiveLock::acquire(&self.root.join("lock"))
    }

    /// The queue's directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Adds `job` (its creation time is now when it has none). A job whose id is already
    /// queued or done is not added again; returns whether it was added.
    pub fn enqueue(&self, mut job: Job) -> Result<bool> {
        if job.id.is_empty() || job.check.is_empty() {
            return Err(Error::invalid("job", "needs an id and a check"));
        }
        if job.created_ms == 0 {
            job.created_ms = self.clock.now_ms();
        }
        job.lease = None;
        job.attempt = 0;
        job.previous = None;
        let _lock = self.lock()?;
        let fid = file_id(&job.id);
        if self.has_job(&job.id) || self.is_done(&fid) {
            return Ok(false);
        }
        // The file lands first and the id is marked after: a crash or a full disk in
        // between leaves a job that runs (the scan marks its id), never an id without a job.
        let data = serde_json::to_vec_pretty(&job)
            .map_err(|e| Error::invalid(format!("job {}", job.id), e.to_string()))?;
        let queued = self.root.join("queue").join(queue_name(&job));
        replace(&queued, &data)?;
        if let Err(e) = self.mark_id(&job) {
            let _ = std::fs::remove_file(&queued);
            return Err(e);
        }
        // This consumer knows its queue changed: its next hand-out lists it again, so a
        // job it just added with a higher priority is not passed over.
        self.view
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .forget_listing();
        Ok(true)
    }

    /// Records that a job with `job`'s id exists (queued or done): `false` if one did.
    fn mark_id(&self, job: &Job) -> Result<bool> {
        let marker = self.root.join("ids").join(file_id(&job.id));
        match crate::backend::fs::create_private(&marker) {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
            Err(e) => Err(Error::io("create", &marker, "localhost", e)),
        }
    }

    /// Whether the job with file id `fid` was reported.
    fn is_done(&self, fid: &str) -> bool {
        self.root.join("done").join(format!("{fid}.json")).exists()
    }

    /// Whether a job with id `id` was ever queued here (it may be done by now).
    pub fn has_job(&self, id: &str) -> bool {
        self.root.join("ids").join(file_id(id)).exists()
    }

    /// The outcomes reported so far, by job id.
    pub fn outcomes(&self) -> Result<BTreeMap<String, JobOutcome>> {
        let dir = self.root.join("done");
        let mut out = BTreeMap::new();
        for entry in std::fs::read_dir(&dir).at("list", &dir, "localhost")? {
            let path = entry.at("list", &dir, "localhost")?.path();
            if path.extension().is_some_and(|e| e == "json") {
                if let Some(d) = read_json::<Done>(&path)? {
                    out.insert(d.job.id, d.outcome);
                }
            }
        }
        Ok(out)
    }

    fn queue_files(&self) -> Result<Vec<String>> {
        let dir = self.root.join("queue");
        let mut names = Vec::new();
        for entry in std::fs::read_dir(&dir).at("list", &dir, "localhost")? {
            let entry = entry.at("list", &dir, "localhost")?;
            if let Some(n) = entry.file_name().to_str() {
                if n.ends_with(".json") && !n.starts_with('.') {
                    names.push(n.to_owned());
                }
            }
        }
        names.sort();
        Ok(names)
    }

    fn find_queued(&self, fid: &str) -> Result<Option<PathBuf>> {
        Ok(self
            .queue_files()?
            .into_iter()
            .find(|n| id_part(n) == fid)
            .map(|n| self.root.join("queue").join(n)))
    }

    fn claim_path(&self, fid: &str) -> PathBuf {
        self.root.join("claims").join(format!("{fid}.json"))
    }

    /// Moves an unreadable job file to `failed/` with the reason, once it is old enough
    /// not to be a file still being written.
    fn quarantine(&self, path: &Path, error: &Error, at_once: bool) {
        let young = !at_once
            && std::fs::metadata(path)
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|age| age < QUARANTINE_AFTER);
        if young {
            return;
        }
        let Some(name) = path.file_name() else { return };
        let target = self.root.join("failed").join(name);
        tracing::warn!(file = %path.display(), %error, "quarantined an unreadable job file");
        if std::fs::rename(path, &target).is_ok() {
            let reason = target.with_file_name(format!("{}.reason", name.to_string_lossy()));
            let _ = replace(&reason, format!("{error}\n").as_bytes());
        }
    }

    /// The claim on `job` if it is still this holder's: `Ok((claim, fid))`, else `LeaseLost`.
    fn held(&self, job: &Job) -> Result<(Claim, String)> {
        let fid = file_id(&job.id);
        let token = job.lease.as_ref().map(|l| l.token.as_str()).unwrap_or("");
        match read_json::<Claim>(&self.claim_path(&fid))? {
            Some(c) if c.token == token && !token.is_empty() => Ok((c, fid)),
            _ => Err(lease_lost(&self.name, job, "another holder has it")),
        }
    }

    fn heartbeat_blocking(&self, job: &Job) -> Result<Lease> {
        let _lock = self.lock()?;
        let now = self.clock.now_ms();
        let (mut claim, fid) = self.held(job)?;
        if claim.deadline_ms <= now {
            return Err(lease_lost(&self.name, job, "the lease ran out"));
        }
        claim.deadline_ms = now + self.ttl.as_millis() as u64;
        let data =
            serde_json::to_vec(&claim).map_err(|e| Error::invalid("claim", e.to_string()))?;
        replace(&self.claim_path(&fid), &data)?;
        Ok(Lease {
            token: claim.token,
            deadline_ms: claim.deadline_ms,
        })
    }

    fn report_blocking(&self, job: &Job, outcome: &JobOutcome) -> Result<()> {
        let _lock = self.lock()?;
        let fid = file_id(&job.id);
        let done_path = self.root.join("done").join(format!("{fid}.json"));
        let token = job.lease.as_ref().map(|l| l.token.as_str()).unwrap_or("");
        if let Some(done) = read_json::<Done>(&done_path)? {
            return match (done.token == token, &done.outcome == outcome) {
                (true, true) => Ok(()),
                (true, false) => Err(Error::Conflict {
                    what: format!("job {}", job.id),
                    reason: format!("already reported as {}", done.outcome.status()),
                }),
                (false, _) => Err(lease_lost(&self.name, job, "another holder reported it")),
            };
        }
        self.held(job)?;
        let named = self.root.join("queue").join(queue_name(job));
        let queued = if named.exists() {
            Some(named)
        } else {
            self.find_queued(&fid)?
        };
        let mut record = job.clone();
        record.lease = None;
        let data = serde_json::to_vec(&Done {
            job: record,
            token: token.to_owned(),
            outcome: outcome.clone(),
        })
        .map_err(|e| Error::invalid("job outcome", e.to_string()))?;
        replace(&done_path, &data)?;
        let history = self
            .root
            .join("history")
            .join(format!("{}.json", key_file(&job.build_key())));
        let outcome_json = serde_json::to_vec(outcome)
            .map_err(|e| Error::invalid("job outcome", e.to_string()))?;
        replace(&history, &outcome_json)?;
        if let Some(q) = queued {
            let _ = std::fs::remove_file(q);
        }
        let _ = std::fs::remove_file(self.claim_path(&fid));
        Ok(())
    }

    /// Queues `job` again under a new id (`<id>~recheck-<n>`) and leases it to the caller.
    fn recheck_blocking(&self, job: &Job) -> Result<Option<Job>> {
        let mut fresh = job.recheck(1);
        let mut queued = false;
        for n in 1..=10_000u32 {
            fresh = job.recheck(n);
            if self.enqueue(fresh.clone())? {
                queued = true;
                break;
            }
        }
        if !queued {
            return Err(Error::invalid(
                format!("job {}", job.id),
                "was re-checked 10,000 times",
            ));
        }
        let _lock = self.lock()?;
        let fid = file_id(&fresh.id);
        let free = read_json::<Claim>(&self.claim_path(&fid))?
            .is_none_or(|c| c.deadline_ms <= self.clock.now_ms());
        if !free || !self.root.join("queue").join(queue_name(&fresh)).exists() {
            return Ok(None); // another consumer took it in between
        }
        self.lease(fresh, 1).map(Some)
    }

    /// Takes the job the caller holds out of the queue as if it had never been queued, so
    /// that the same id may be queued again later (a pull request whose approval was
    /// dismissed, and may be given again). The id's mark goes first: a crash midway leaves
    /// a queued job (whose id the scan marks again), never a mark without a job.
    pub fn withdraw(&self, job: &Job) -> Result<()> {
        let _lock = self.lock()?;
        let (_, fid) = self.held(job)?;
        let marker = self.root.join("ids").join(&fid);
        crate::backend::fs::remove_if_exists(&marker, "remove job id mark")?;
        if let Some(q) = self.find_queued(&fid)? {
            crate::backend::fs::remove_if_exists(&q, "remove queued job")?;
        }
        crate::backend::fs::remove_if_exists(&self.claim_path(&fid), "remove job claim")?;
        self.view
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .forget_listing();
        Ok(())
    }

    fn release_blocking(&self, job: &Job) -> Result<()> {
        let _lock = self.lock()?;
        let (mut claim, fid) = self.held(job)?;
        // The claim stays, expired, so the next hand-out counts its attempt.
        claim.deadline_ms = 0;
        claim.token = String::new();
        let data =
            serde_json::to_vec(&claim).map_err(|e| Error::invalid("claim", e.to_string()))?;
        replace(&self.claim_path(&fid), &data)
    }
}

#[async_trait]
impl JobSource for DirJobSource {
    fn name(&self) -> &str {
        &self.name
    }

    async fn next(&self, filter: &JobFilter) -> Result<Option<Job>> {
        let (me, filter) = (self.clone(), filter.clone());
        blocking(move || me.next_blocking(&filter)).await
    }

    async fn depth(&self, filter: &JobFilter) -> Result<Option<Depth>> {
        let (this, filter) = (self.clone(), filter.clone());
        blocking(move || this.depth_blocking(&filter))
            .await
            .map(Some)
    }

    async fn started(&self, job: &Job) -> Result<()> {
        let marker = self.root.join("started").join(key_file(&job.build_key()));
        blocking(move || match crate::backend::fs::create_private(&marker) {
            Ok(_) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
            Err(e) => Err(Error::io("create", &marker, "localhost", e)),
        })
        .await
    }

    async fn heartbeat(&self, job: &Job) -> Result<Lease> {
        let (me, job) = (self.clone(), job.clone());
        blocking(move || me.heartbeat_blocking(&job)).await
    }

    async fn report(&self, job: &Job, outcome: &JobOutcome) -> Result<()> {
        let (me, job, outcome) = (self.clone(), job.clone(), outcome.clone());
        blocking(move || me.report_blocking(&job, &outcome)).await
    }

    async fn release(&self, job: &Job) -> Result<()> {
        let (me, job) = (self.clone(), job.clone());
        blocking(move || me.release_blocking(&job)).await
    }

    async fn recheck(&self, job: &Job) -> Result<Option<Job>> {
        let (me, job) = (self.clone(), job.clone());
        blocking(move || me.recheck_blocking(&job)).await
    }
}
