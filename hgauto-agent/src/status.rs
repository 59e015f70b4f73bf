//! What an agent shows without a login: `state/status.json` (the current job, the last
//! outcomes, the config in force, the lease deadline), `state/metrics.prom` (the same
//! figures in Prometheus' text format, for node_exporter's textfile collector) and
//! `state/ready` (after the first successful round). All land by rename, unsynced: they
//! are rewritten every job, and a crash losing one loses nothing.

use std::collections::{BTreeMap, VecDeque};
use std::fmt::Write as _;
use std::path::Path;

use serde::Serialize;

use super::config::AgentConfig;
use hgauto_core::error::Result;
use hgauto_core::job::{Job, JobOutcome};

/// How many finished jobs the status keeps.
pub const KEEP_LAST: usize = 20;

/// The job being built.
#[derive(Debug, Clone, Serialize)]
pub struct CurrentJob {
    /// Its id.
    pub id: String,
    /// Its check.
    pub check: String,
    /// Its revision.
    pub revision: Option<String>,
    /// When the build started, in ms since the epoch.
    pub started_ms: u64,
    /// When the lease ends unless renewed.
    pub lease_deadline_ms: Option<u64>,
    /// The build's log file.
    pub log: String,
}

/// A job the agent finished.
#[derive(Debug, Clone, Serialize)]
pub struct FinishedJob {
    /// Its id.
    pub id: String,
    /// Its check.
    pub check: String,
    /// Its revision.
    pub revision: Option<String>,
    /// How it ended.
    pub outcome: JobOutcome,
    /// Whether the outcome went to the source (not in silent mode, not after a lost lease).
    pub reported: bool,
    /// When it ended, in ms since the epoch.
    pub ended_ms: u64,
    /// How long the build took.
    pub seconds: f64,
}

/// The agent's state, as `status.json` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct AgentStatus {
    /// The agent's name.
    pub agent: String,
    /// Its job source.
    pub source: String,
    /// `shards` or `claims`.
    pub sharing: &'static str,
    /// `starting`, `idle`, `building`, `stopping` or `stopped`.
    pub state: &'static str,
    /// Whether a round has succeeded (`state/ready` exists).
    pub ready: bool,
    /// The settings in force.
    pub config: AgentConfig,
    /// Config files refused in the last reading, by name and reason.
    pub config_problems: Vec<String>,
    /// The job being built.
    pub current: Option<CurrentJob>,
    /// The last finished jobs, newest first.
    pub last: VecDeque<FinishedJob>,
    /// Finished jobs by outcome status.
    pub jobs: BTreeMap<&'static str, u64>,
    /// Lease renewals (heartbeats) sent.
    pub lease_renewals: u64,
    /// Leases lost while building.
    pub leases_lost: u64,
    /// Iterations run.
    pub iterations: u64,
    /// When this status was written, in ms since the epoch.
    pub updated_ms: u64,
}

impl AgentStatus {
    /// A fresh status.
    pub fn new(agent: &str, source: &str, sharing: &'static str, config: AgentConfig) -> Self {
        AgentStatus {
            agent: agent.to_owned(),
            source: source.to_owned(),
            sharing,
            state: "starting",
            ready: false,
            config,
            config_problems: Vec::new(),
            current: None,
            last: VecDeque::new(),
            jobs: BTreeMap::new(),
            lease_renewals: 0,
            leases_lost: 0,
            iterations: 0,
            updated_ms: 0,
        }
    }

    /// Records a finished job.
    pub fn finish(
        &mut self,
        job: &Job,
        outcome: &JobOutcome,
        reported: bool,
        now_ms: u64,
        seconds: f64,
    ) {
        *self.jobs.entry(outcome.status()).or_default() += 1;
        self.last.push_front(FinishedJob {
            id: job.id.clone(),
            check: job.check.clone(),
            revision: job.revision.clone(),
            outcome: outcome.clone(),
            reported,
            ended_ms: now_ms,
            seconds,
        });
        self.last.truncate(KEEP_LAST);
        self.current = None;
    }

    /// The Prometheus text exposition of the figures.
    pub fn metrics(&self, now_ms: u64, source_requests: u64, rate_limit_waits: u64) -> String {
        let labels = format!("agent=\"{}\"", escape(&self.agent));
        let mut m = String::new();
        let mut metric = |name: &str, kind: &str, help: &str, lines: Vec<(String, f64)>| {
            let _ = writeln!(m, "# HELP hgauto_agent_{name} {help}");
            let _ = writeln!(m, "# TYPE hgauto_agent_{name} {kind}");
            for (extra, v) in lines {
                let _ = writeln!(m, "hgauto_agent_{name}{{{labels}{extra}}} {v}");
            }
        };
        metric(
            "jobs_total",
            "counter",
            "Jobs finished, by outcome.",
            ["succeeded", "failed", "skipped"]
                .iter()
                .map(|o| {
                    (
                        format!(",outcome=\"{o}\""),
                        self.jobs.get(o).copied().unwrap_or(0) as f64,
                    )
                })
                .collect(),
        );
        let age = self
            .current
            .as_ref()
            .map_or(0.0, |c| now_ms.saturating_sub(c.started_ms) as f64 / 1000.0);
        metric(
            "current_job_age_seconds",
            "gauge",
            "Age of the job being built (0: none).",
            vec![(String::new(), age)],
        );
        metric(
            "lease_renewals_total",
            "counter",
            "Lease renewals (heartbeats) sent.",
            vec![(String::new(), self.lease_renewals as f64)],
        );
        metric(
            "leases_lost_total",
            "counter",
            "Leases lost while building.",
            vec![(String::new(), self.leases_lost as f64)],
        );
        metric(
            "source_requests_total",
            "counter",
            "Requests the job source made to its service.",
            vec![(String::new(), source_requests as f64)],
        );
        metric(
            "rate_limit_waits_total",
            "counter",
            "Rate limits the job source waited out.",
            vec![(String::new(), rate_limit_waits as f64)],
        );
        metric(
            "ready",
            "gauge",
            "1 once a round has succeeded.",
            vec![(String::new(), f64::from(u8::from(self.ready)))],
        );
        metric(
            "iterations_total",
            "counter",
            "Iterations run.",
            vec![(String::new(), self.iterations as f64)],
        );
        m
    }

    /// Writes `status.json` and `metrics.prom` into `state_dir`, and `ready` once ready.
    pub fn write(
        &mut self,
        state_dir: &Path,
        now_ms: u64,
        source_requests: u64,
        rate_limit_waits: u64,
    ) -> Result<()> {
        self.updated_ms = now_ms;
        let json = serde_json::to_vec_pretty(self)
            .map_err(|e| hgauto_core::Error::invalid("agent status", e.to_string()))?;
        hgauto_core::backend::fs::write_unsynced(&state_dir.join("status.json"), &json)?;
        let prom = self.metrics(now_ms, source_requests, rate_limit_waits);
        hgauto_core::backend::fs::write_unsynced(&state_dir.join("metrics.prom"), prom.as_bytes())?;
        if self.ready && !state_dir.join("ready").exists() {
            hgauto_core::backend::fs::write_unsynced(&state_dir.join("ready"), b"")?;
        }
        Ok(())
    }
}

/// A Prometheus label value: backslash, quote and newline escaped.
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_are_prometheus_text() {
        let mut s = AgentStatus::new("a\"1", "dir:/q", "claims", AgentConfig::default());
        let job = Job::new("j", "build");
        s.finish(
            &job,
            &JobOutcome::Succeeded {
                summary: "ok".into(),
            },
            true,
            5_000,
            1.5,
        );
        s.current = Some(CurrentJob {
            id: "k".into(),
            check: "build".into(),
            revision: None,
            started_ms: 1_000,
            lease_deadline_ms: Some(9_000),
            log: "x.log".into(),
        });
        let m = s.metrics(4_000, 7, 1);
        assert!(
            m.contains("hgauto_agent_jobs_total{agent=\"a\\\"1\",outcome=\"succeeded\"} 1\n"),
            "{m}"
        );
        assert!(
            m.contains("hgauto_agent_current_job_age_seconds{agent=\"a\\\"1\"} 3\n"),
            "{m}"
        );
        assert!(
            m.contains("hgauto_agent_source_requests_total{agent=\"a\\\"1\"} 7\n"),
            "{m}"
        );
        for line in m.lines().filter(|l| !l.starts_with('#')) {
            let (_, value) = line.rsplit_once(' ').unwrap();
            value.parse::<f64>().unwrap();
        }
        let dir = tempfile::tempdir().unwrap();
        s.ready = true;
        s.write(dir.path(), 4_000, 7, 1).unwrap();
        let v: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.path().join("status.json")).unwrap())
                .unwrap();
        assert_eq!(v["current"]["lease_deadline_ms"], 9_000);
        assert_eq!(v["last"][0]["outcome"]["status"], "succeeded");
        assert!(dir.path().join("ready").exists());
    }
}
