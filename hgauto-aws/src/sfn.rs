//! [`SfnActivitySource`]: the tasks of one AWS Step Functions activity as jobs, so a builder
//! agent (or any [`JobSource`] consumer) serves a pipeline exported with
//! [`hgauto_pipeline::asl`].
//!
//! - `next` is GetActivityTask (a long poll of up to 60 s on the service side). The task's
//!   JSON input becomes the job: `task` is its id, `check` its check (default: the
//!   activity's name), `cell` values its attributes, `retry` + 1 its attempt. The task
//!   token is the lease token.
//! - `heartbeat` is SendTaskHeartbeat; the lease lasts the Task state's `HeartbeatSeconds`
//!   (`with_heartbeat_timeout`, default 300 s as the export writes it). A token the service
//!   no longer knows (timed out, closed) is [`Error::LeaseLost`].
//! - `report` is SendTaskSuccess, or SendTaskFailure with error `hgauto.Fatal` (never
//!   retried by the exported Retry rules) or `States.TaskFailed` for a retryable failure.
//!   Reporting a token this source already closed is harmless.
//! - `release` is SendTaskFailure with `hgauto.Released`, which the export retries at once.
//! - [`serve_control`] answers the pipeline's control activity with a
//!   [`Control`](hgauto_pipeline::Control) (checks, worker starts, function steps,
//!   the health check), sending the answer as the task's output.
//!   A task outside the caller's filter is released the same way: an activity has no other
//!   way to give a task back.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_sfn::config::http::HttpResponse;
use aws_sdk_sfn::error::SdkError;
use hgauto_core::clock::{self, SharedClock};
use hgauto_core::{Error, Job, JobFilter, JobOutcome, JobSource, Lease, Result};
use hgauto_pipeline::asl::{FATAL_ERROR, RELEASED_ERROR};
use hgauto_pipeline::control::{request_of, Control};
use hgauto_pipeline::StepFailure;
use serde_json::Value;

use crate::error::sdk_error;

/// Jobs from one Step Functions activity (see the [module docs](self)).
#[derive(Debug)]
pub struct SfnActivitySource {
    client: aws_sdk_sfn::Client,
    activity_arn: String,
    /// `sfn:` and the activity's name.
    name: String,
    worker_name: String,
    ttl: Duration,
    clock: SharedClock,
    /// Tokens this source closed (reported or released), so a second report is harmless.
    closed: Mutex<HashSet<String>>,
    /// Lease deadlines this source handed out, by token.
    leases: Mutex<HashMap<String, u64>>,
    /// Polls one `next` may spend on tasks outside its filter before it gives up.
    max_skips: usize,
}

impl SfnActivitySource {
    /// A source over the activity `activity_arn`, naming itself after this host.
    pub fn new(client: aws_sdk_sfn::Client, activity_arn: impl Into<String>) -> Self {
        let activity_arn: String = activity_arn.into();
        let activity = activity_arn.rsplit(':').next().unwrap_or(&activity_arn);
        SfnActivitySource {
            client,
            name: format!("sfn:{activity}"),
            activity_arn,
            worker_name: hgauto_core::session::hostname(),
            ttl: Duration::from_secs(300),
            clock: clock::system(),
            closed: Mutex::new(HashSet::new()),
            leases: Mutex::new(HashMap::new()),
            max_skips: 64,
        }
    }

    /// A source over `activity_arn` with a client made from `config`.
    pub async fn from_config(config: &crate::AwsConfig, activity_arn: impl Into<String>) -> Self {
        Self::new(
            aws_sdk_sfn::Client::new(&config.sdk_config().await),
            activity_arn,
        )
    }

    /// The worker name the service records (default: this host's name).
    pub fn with_worker_name(mut self, name: impl Into<String>) -> Self {
        self.worker_name = name.into();
        self
    }

    /// The Task states' `HeartbeatSeconds`: how long a lease lasts without a heartbeat.
    pub fn with_heartbeat_timeout(mut self, ttl: Duration) -> Self {
        self.ttl = ttl.max(Duration::from_secs(1));
        self
    }

    /// The clock leases are measured with (tests move it).
    pub fn with_clock(mut self, clock: SharedClock) -> Self {
        self.clock = clock;
        self
    }

    /// The activity's name: the last part of its ARN.
    pub fn activity_name(&self) -> &str {
        self.name.strip_prefix("sfn:").unwrap_or(&self.name)
    }

    fn lease(&self, token: &str) -> Lease {
        let deadline_ms = self.clock.now_ms() + self.ttl.as_millis() as u64;
        self.leases
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(token.to_owned(), deadline_ms);
        Lease {
            token: token.to_owned(),
            deadline_ms,
        }
    }

    fn token<'a>(&self, job: &'a Job) -> Result<&'a str> {
        job.lease
            .as_ref()
            .map(|l| l.token.as_str())
            .ok_or_else(|| self.lost(job, "the job has no lease"))
    }

    fn lost(&self, job: &Job, reason: &str) -> Error {
        Error::LeaseLost {
            job: job.id.clone(),
            source_name: self.name().to_owned(),
            reason: reason.to_owned(),
        }
    }

    fn is_closed(&self, token: &str) -> bool {
        self.closed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(token)
    }

    fn close(&self, token: &str) {
        self.closed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(token.to_owned());
        self.leases
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(token);
    }

    /// The job a task's input describes.
    fn job(&self, token: &str, input: &str) -> Result<Job> {
        let v: Value = serde_json::from_str(input).map_err(|e| {
            Error::invalid(
                format!("input of a task from {}", self.activity_arn),
                e.to_string(),
            )
        })?;
        let text = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_owned);
        let id = text("task").or_else(|| text("id")).unwrap_or_else(|| {
            use sha2::{Digest, Sha256};
            format!(
                "task-{}",
                &hex::encode(Sha256::digest(token.as_bytes()))[..16]
            )
        });
        let mut job = Job::new(
            id,
            text("check").unwrap_or_else(|| self.activity_name().to_owned()),
        );
        job.source = self.name().to_owned();
        job.revision = text("revision");
        job.priority = v.get("priority").and_then(Value::as_i64).unwrap_or(0) as i32;
        job.created_ms = v.get("created_ms").and_then(Value::as_u64).unwrap_or(0);
        job.attempt = v.get("retry").and_then(Value::as_u64).unwrap_or(0) as u32 + 1;
        if let Some(step) = text("step") {
            job.attributes.insert("step".into(), step);
        }
        if let Some(cell) = v.get("cell").and_then(Value::as_object) {
            for (k, val) in cell {
                if let Some(s) = val.as_str() {
                    job.attributes.insert(k.clone(), s.to_owned());
                }
            }
        }
        job.payload = Some(v);
        job.lease = Some(self.lease(token));
        Ok(job)
    }

    async fn fail(
        &self,
        token: &str,
        error: &str,
        cause: &str,
    ) -> std::result::Result<
        (),
        SdkError<
            aws_sdk_sfn::operation::send_task_failure::SendTaskFailureError,
            aws_sdk_sfn::config::http::HttpResponse,
        >,
    > {
        self.client
            .send_task_failure()
            .task_token(token)
            .error(error)
            .cause(truncate(cause, 32_768))
            .send()
            .await
            .map(|_| ())
    }
}

impl SfnActivitySource {
    /// Ends `job` successfully with `output` as the task's output (what the state machine
    /// reads, e.g. a control answer). Like `report`: harmless again, `LeaseLost` when the
    /// service no longer holds the task open.
    pub async fn complete(&self, job: &Job, output: &Value) -> Result<()> {
        let token = self.token(job)?;
        if self.is_closed(token) {
            return Ok(());
        }
        let sent = self
            .client
            .send_task_success()
            .task_token(token)
            .output(output.to_string())
            .send()
            .await;
        match sent {
            Ok(_) => {
                self.close(token);
                Ok(())
            }
            Err(e) if gone(&e) => Err(self.lost(job, "the service no longer holds the task open")),
            Err(e) => Err(sdk_error("sfn", "send task success", &job.id, e)),
        }
    }
}

/// Serves one task of a pipeline's control activity with `control`: `Ok(false)` when
/// there was none. A request the control worker cannot answer fails the task (retryably
/// when another attempt may help), so the state machine's Catch records it.
pub async fn serve_control(source: &SfnActivitySource, control: &Control) -> Result<bool> {
    let Some(job) = source.next(&JobFilter::default()).await? else {
        return Ok(false);
    };
    let answer = match request_of(&job) {
        Ok(request) => control.handle(request).await,
        Err(e) => Err(StepFailure::fatal(e.to_string())),
    };
    match answer {
        Ok(output) => source.complete(&job, &output).await?,
        Err(f) => {
            let outcome = JobOutcome::Failed {
                summary: f.message,
                retryable: f.retry,
            };
            source.report(&job, &outcome).await?
        }
    }
    Ok(true)
}

/// Errors of the calls that take a task token: some say the token is no longer open.
trait TokenErrors {
    /// The service no longer holds the task open (timed out, closed, unknown).
    fn token_gone(&self) -> bool;
}

macro_rules! token_errors {
    ($($t:ty),*) => {$(
        impl TokenErrors for $t {
            fn token_gone(&self) -> bool {
                self.is_task_timed_out() || self.is_task_does_not_exist() || self.is_invalid_token()
            }
        }
    )*};
}

token_errors!(
    aws_sdk_sfn::operation::send_task_heartbeat::SendTaskHeartbeatError,
    aws_sdk_sfn::operation::send_task_success::SendTaskSuccessError,
    aws_sdk_sfn::operation::send_task_failure::SendTaskFailureError
);

/// Whether a call failed because the task's token is no longer open.
fn gone<E: TokenErrors>(e: &SdkError<E, HttpResponse>) -> bool {
    e.as_service_error().is_some_and(TokenErrors::token_gone)
}

fn truncate(s: &str, max: usize) -> String {
    hgauto_core::text::clip(s, max).to_owned()
}

#[async_trait]
impl JobSource for SfnActivitySource {
    fn name(&self) -> &str {
        &self.name
    }

    async fn next(&self, filter: &JobFilter) -> Result<Option<Job>> {
        let mut passed = HashSet::new();
        for _ in 0..=self.max_skips {
            let got = self
                .client
                .get_activity_task()
                .activity_arn(&self.activity_arn)
                .worker_name(&self.worker_name)
                .send()
                .await
                .map_err(|e| sdk_error("sfn", "get activity task", &self.activity_arn, e))?;
            let Some(token) = got.task_token().filter(|t| !t.is_empty()) else {
                return Ok(None);
            };
            let job = match self.job(token, got.input().unwrap_or("{}")) {
                Ok(job) => job,
                Err(e) => {
                    // Not a task this source understands: fail it for good, and go on.
                    tracing::warn!(activity = %self.activity_arn, error = %e, "unreadable task input");
                    let _ = self.fail(token, FATAL_ERROR, &e.to_string()).await;
                    continue;
                }
            };
            if filter.matches(&job) {
                return Ok(Some(job));
            }
            // Give it back for another worker; a task seen twice means the queue holds
            // nothing for this filter.
            let again = !passed.insert(job.id.clone());
            self.release(&job).await?;
            if again {
                return Ok(None);
            }
        }
        Ok(None)
    }

    async fn heartbeat(&self, job: &Job) -> Result<Lease> {
        let token = self.token(job)?;
        if self.is_closed(token) {
            return Err(self.lost(job, "the task was already reported or released"));
        }
        match self
            .client
            .send_task_heartbeat()
            .task_token(token)
            .send()
            .await
        {
            Ok(_) => Ok(self.lease(token)),
            Err(e) if gone(&e) => Err(self.lost(job, "the service no longer holds the task open")),
            Err(e) => Err(sdk_error("sfn", "send task heartbeat", &job.id, e)),
        }
    }

    async fn report(&self, job: &Job, outcome: &JobOutcome) -> Result<()> {
        let token = self.token(job)?;
        if self.is_closed(token) {
            return Ok(());
        }
        let sent = match outcome {
            JobOutcome::Succeeded { summary } | JobOutcome::Skipped { reason: summary } => {
                let output = serde_json::json!({
                    "task": job.id,
                    "status": outcome.status(),
                    "summary": summary,
                    "worker": self.worker_name,
                });
                return self.complete(job, &output).await;
            }
            JobOutcome::Failed { summary, retryable } => {
                let error = if *retryable {
                    "States.TaskFailed"
                } else {
                    FATAL_ERROR
                };
                self.fail(token, error, summary)
                    .await
                    .map_err(|e| (gone(&e), sdk_error("sfn", "send task failure", &job.id, e)))
            }
        };
        match sent {
            Ok(()) => {
                self.close(token);
                Ok(())
            }
            Err((true, _)) => Err(self.lost(job, "the service no longer holds the task open")),
            Err((_, e)) => Err(e),
        }
    }

    async fn release(&self, job: &Job) -> Result<()> {
        let token = self.token(job)?;
        if self.is_closed(token) {
            return Ok(());
        }
        match self
            .fail(token, RELEASED_ERROR, "given back untouched")
            .await
        {
            Ok(()) => {
                self.close(token);
                Ok(())
            }
            Err(e) if gone(&e) => Err(self.lost(job, "the service no longer holds the task open")),
            Err(e) => Err(sdk_error("sfn", "release task", &job.id, e)),
        }
    }
}
