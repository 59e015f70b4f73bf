//! [`SqsJobSource`]: jobs are SQS messages whose body is a JSON [`Job`].
//!
//! - The visibility timeout is the lease: `next` receives a message for `lease_ttl`,
//!   `heartbeat` extends it, `release` makes it visible at once, and a successful `report`
//!   deletes it. The receipt handle is the lease token.
//! - SQS accepts a stale receipt handle (the message may then be someone else's), so the
//!   source also keeps each lease's deadline: a heartbeat or report after it, or after a
//!   release, is [`Error::LeaseLost`], never a call that might touch another holder's job.
//! - `next` long-polls (`wait`), and holds every message it looks at while it picks the first
//!   that passes the filter; the others are forwarded (sent again and deleted, in batches)
//!   before it returns, so passing over another shard's job does not count as a receive
//!   toward the dead-letter queue (see [`receive`]). With [`SqsJobSource::with_prefetch`], up to that many messages that pass
//!   the filter are kept leased for the following calls, which then need no receive: a
//!   throughput setting for short jobs, since a prefetched job waits for its holder.
//! - After `max_receives` attempts a message goes to the dead-letter queue
//!   ([`SqsJobSource::create_queues`] sets that up). The source reads the queue's redrive
//!   policy and moves it itself, counting attempts over forwarded copies; SQS's own redrive
//!   stays as a backstop. A message that is not a job (not JSON,
//!   no id or check) is sent to the dead-letter queue at once and deleted, and the source
//!   goes on.
//! - Standard queues have no order and keep no history: jobs come in SQS's order, without
//!   `previous`.

mod receive;

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_sqs::types::QueueAttributeName;
use hgauto_core::clock::{self, SharedClock};
use hgauto_core::{Depth, Error, Job, JobFilter, JobOutcome, JobSource, Lease, Result};

use crate::error::sdk_error;
use receive::Received;

/// How a lease this source handed out ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ended {
    /// Given back with `release`.
    Released,
    /// Reported: the message is deleted.
    Reported,
}

/// Jobs from an SQS queue (see the [module docs](self)).
#[derive(Debug)]
pub struct SqsJobSource {
    client: aws_sdk_sqs::Client,
    queue_url: String,
    /// `sqs:` and the queue URL.
    name: String,
    dead_letter_url: Option<String>,
    ttl: Duration,
    wait: Duration,
    clock: SharedClock,
    /// Deadlines of the leases this source handed out, by receipt handle.
    leases: Mutex<HashMap<String, u64>>,
    /// Receipt handles whose leases are over, and how they ended.
    ended: Mutex<HashMap<String, Ended>>,
    /// How many messages one `next` may take for itself and the calls after it.
    prefetch: usize,
    /// Messages received and leased but not handed out yet (see `with_prefetch`).
    prefetched: Mutex<VecDeque<Received>>,
    /// The queue's redrive policy, read once: its `maxReceiveCount`, and the dead-letter
    /// queue's URL when none was given.
    redrive: tokio::sync::OnceCell<Option<(u32, String)>>,
}

impl SqsJobSource {
    /// A source over the queue at `queue_url`, leasing for 5 minutes and long-polling 20 s.
    pub fn new(client: aws_sdk_sqs::Client, queue_url: impl Into<String>) -> Self {
        let queue_url = queue_url.into();
        SqsJobSource {
            client,
            name: format!("sqs:{queue_url}"),
            queue_url,
            dead_letter_url: None,
            ttl: Duration::from_secs(300),
            wait: Duration::from_secs(20),
            clock: clock::system(),
            leases: Mutex::new(HashMap::new()),
            ended: Mutex::new(HashMap::new()),
            prefetch: 1,
            prefetched: Mutex::new(VecDeque::new()),
            redrive: tokio::sync::OnceCell::new(),
        }
    }

    /// A source over `queue_url` with a client made from `config`.
    pub async fn from_config(config: &crate::AwsConfig, queue_url: impl Into<String>) -> Self {
        Self::new(Self::client(&config.sdk_config().await), queue_url)
    }

    /// A client for `sdk`.
    pub fn client(sdk: &aws_config::SdkConfig) -> aws_sdk_sqs::Client {
        aws_sdk_sqs::Client::new(sdk)
    }

    /// Creates (or finds) queue `name` and its dead-letter queue `name-dead-letter`, which
    /// takes a message after `max_receives` receives. Returns both URLs.
    pub async fn create_queues(
        client: &aws_sdk_sqs::Client,
        name: &str,
        max_receives: u32,
    ) -> Result<(String, String)> {
        let dlq_name = format!("{name}-dead-letter");
        let dlq = client
            .create_queue()
            .queue_name(&dlq_name)
            .send()
            .await
            .map_err(|e| sdk_error("sqs", "create queue", &dlq_name, e))?;
        let dlq_url = dlq.queue_url().unwrap_or_default().to_owned();
        let attrs = client
            .get_queue_attributes()
            .queue_url(&dlq_url)
            .attribute_names(QueueAttributeName::QueueArn)
            .send()
            .await
            .map_err(|e| sdk_error("sqs", "read queue attributes", &dlq_name, e))?;
        let arn = attrs
            .attributes()
            .and_then(|a| a.get(&QueueAttributeName::QueueArn))
            .cloned()
            .unwrap_or_default();
        let policy = serde_json::json!({
            "deadLetterTargetArn": arn,
            "maxReceiveCount": max_receives.to_string(),
        })
        .to_string();
        let main = client
            .create_queue()
            .queue_name(name)
            .attributes(QueueAttributeName::RedrivePolicy, policy)
            .send()
            .await
            .map_err(|e| sdk_error("sqs", "create queue", name, e))?;
        Ok((main.queue_url().unwrap_or_default().to_owned(), dlq_url))
    }

    /// Where unreadable messages go (default: none, they are only deleted and logged).
    pub fn with_dead_letter_queue(mut self, url: impl Into<String>) -> Self {
        self.dead_letter_url = Some(url.into());
        self
    }

    /// Sets the lease (visibility timeout), whole seconds, at least one.
    pub fn with_lease_ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl.max(Duration::from_secs(1));
        self
    }

    /// Lets one `next` take up to `n` messages (at most 10, SQS's batch) that pass its
    /// filter, and hand the extra ones out from later calls without a receive. They stay
    /// leased to this source meanwhile, so another agent cannot take them until this one
    /// asks again or their lease runs out: use it for many short jobs, not for long
    /// builds. One (the default) prefetches nothing. A prefetched message whose lease is
    /// half gone is given back instead of handed out.
    pub fn with_prefetch(mut self, n: usize) -> Self {
        self.prefetch = n.clamp(1, 10);
        self
    }

    /// Gives back every prefetched message now (e.g. before the agent stops).
    pub async fn release_prefetched(&self) -> Result<()> {
        let held: Vec<Received> = self
            .prefetched
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain(..)
            .collect();
        self.forward(held).await
    }

    /// Sets how long `next` waits for a message (long polling, at most 20 s).
    pub fn with_wait(mut self, wait: Duration) -> Self {
        self.wait = wait.min(Duration::from_secs(20));
        self
    }

    /// Sends `job` to the queue.
    pub async fn enqueue(&self, job: &Job) -> Result<()> {
        if job.id.is_empty() || job.check.is_empty() {
            return Err(Error::invalid("job", "needs an id and a check"));
        }
        let body = serde_json::to_string(job)
            .map_err(|e| Error::invalid(format!("job {}", job.id), e.to_string()))?;
        self.client
            .send_message()
            .queue_url(&self.queue_url)
            .message_body(body)
            .send()
            .await
            .map_err(|e| sdk_error("sqs", "send message", &job.id, e))?;
        Ok(())
    }

    fn ttl_secs(&self) -> i32 {
        self.ttl.as_secs().clamp(1, 43_200) as i32
    }

    async fn set_visibility(&self, receipt: &str, secs: i32) -> Result<()> {
        self.client
            .change_message_visibility()
            .queue_url(&self.queue_url)
            .receipt_handle(receipt)
            .visibility_timeout(secs)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| sdk_error("sqs", "change message visibility", &self.queue_url, e))
    }

    /// The queue's `maxReceiveCount` and dead-letter queue URL, from its redrive policy
    /// (read once; `None` without one).
    async fn redrive(&self) -> Result<Option<(u32, String)>> {
        self.redrive
            .get_or_try_init(|| async {
                let attrs = self
                    .client
                    .get_queue_attributes()
                    .queue_url(&self.queue_url)
                    .attribute_names(QueueAttributeName::RedrivePolicy)
                    .send()
                    .await
                    .map_err(|e| sdk_error("sqs", "read queue attributes", &self.queue_url, e))?;
                let Some(policy) = attrs
                    .attributes()
                    .and_then(|a| a.get(&QueueAttributeName::RedrivePolicy))
                    .and_then(|p| serde_json::from_str::<serde_json::Value>(p).ok())
                else {
                    return Ok(None);
                };
                let max = match &policy["maxReceiveCount"] {
                    serde_json::Value::String(s) => s.parse().ok(),
                    v => v.as_u64().and_then(|n| u32::try_from(n).ok()),
                };
                let Some(max) = max else { return Ok(None) };
                let url = match &self.dead_letter_url {
                    Some(u) => u.clone(),
                    None => {
                        self.queue_url_of(policy["deadLetterTargetArn"].as_str().unwrap_or(""))
                            .await?
                    }
                };
                Ok(Some((max, url)))
            })
            .await
            .cloned()
    }

    /// The URL of the queue with ARN `arn:aws:sqs:<region>:<account>:<name>`.
    async fn queue_url_of(&self, arn: &str) -> Result<String> {
        let parts: Vec<&str> = arn.split(':').collect();
        let [_, _, _, _, account, name] = parts[..] else {
            return Err(Error::invalid(
                format!("dead-letter queue ARN {arn:?}"),
                "is not an SQS queue ARN",
            ));
        };
        let out = self
            .client
            .get_queue_url()
            .queue_name(name)
            .queue_owner_aws_account_id(account)
            .send()
            .await
            .map_err(|e| sdk_error("sqs", "find queue", name, e))?;
        Ok(out.queue_url().unwrap_or_default().to_owned())
    }

    /// How many attempts a job may have before it goes to the dead-letter queue.
    pub(super) async fn max_attempts(&self) -> Result<Option<u32>> {
        Ok(self.redrive().await?.map(|(max, _)| max))
    }

    /// A message that is not a job, or has had all its attempts: to the dead-letter queue
    /// (if any), then deleted.
    async fn quarantine(&self, body: &str, receipt: &str, error: &Error) {
        tracing::warn!(queue = %self.queue_url, %error, "moved a message to the dead-letter queue");
        let dlq = match &self.dead_letter_url {
            Some(u) => Some(u.clone()),
            None => self.redrive().await.ok().flatten().map(|(_, u)| u),
        };
        if let Some(dlq) = &dlq {
            let sent = self
                .client
                .send_message()
                .queue_url(dlq)
                .message_body(body)
                .send()
                .await;
            if sent.is_err() {
                return;
            }
        }
        let _ = self
            .client
            .delete_message()
            .queue_url(&self.queue_url)
            .receipt_handle(receipt)
            .send()
            .await;
    }

    /// The receipt handle of `job` if its lease is still this source's and not over.
    fn live_receipt(&self, job: &Job) -> Result<String> {
        let lost = |reason: &str| Error::LeaseLost {
            job: job.id.clone(),
            source_name: self.name().to_owned(),
            reason: reason.to_owned(),
        };
        let receipt = job
            .lease
            .as_ref()
            .map(|l| l.token.clone())
            .ok_or_else(|| lost("the job has no lease"))?;
        if self
            .ended
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains_key(&receipt)
        {
            return Err(lost("it was given back or reported"));
        }
        let deadline = self
            .leases
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&receipt)
            .copied()
            .ok_or_else(|| lost("this source did not hand it out"))?;
        if deadline <= self.clock.now_ms() {
            return Err(lost("the lease ran out"));
        }
        Ok(receipt)
    }
}

#[async_trait]
impl JobSource for SqsJobSource {
    fn name(&self) -> &str {
        &self.name
    }

    /// SQS's approximate counts (`exact` is false), for the whole queue: a filter cannot be
    /// applied without receiving the messages. Messages this source prefetched are waiting,
    /// not leased.
    async fn depth(&self, _filter: &JobFilter) -> Result<Option<Depth>> {
        let attrs = self
            .client
            .get_queue_attributes()
            .queue_url(&self.queue_url)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
            .send()
            .await
            .map_err(|e| sdk_error("sqs", "read queue attributes", &self.queue_url, e))?;
        let count = |name: QueueAttributeName| -> u64 {
            attrs
                .attributes()
                .and_then(|a| a.get(&name))
                .and_then(|n| n.parse().ok())
                .unwrap_or(0)
        };
        let visible = count(QueueAttributeName::ApproximateNumberOfMessages);
        let hidden = count(QueueAttributeName::ApproximateNumberOfMessagesNotVisible);
        let prefetched = self
            .prefetched
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .len() as u64;
        Ok(Some(Depth {
            pending: visible + prefetched.min(hidden),
            leased: hidden.saturating_sub(prefetched),
            exact: false,
        }))
    }

    async fn next(&self, filter: &JobFilter) -> Result<Option<Job>> {
        let mut give_back = Vec::new();
        let mut chosen = self.take_prefetched(filter, &mut give_back);
        if chosen.is_none() {
            chosen = self.receive_for(filter, &mut give_back).await?;
        }
        if let Err(e) = self.forward(give_back).await {
            // They come back on their own when their visibility timeout ends.
            tracing::warn!(queue = %self.queue_url, error = %e, "could not give messages back");
        }
        let Some(Received {
            mut job,
            receipt,
            deadline_ms,
            ..
        }) = chosen
        else {
            return Ok(None);
        };
        self.leases
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(receipt.clone(), deadline_ms);
        job.source = self.name().to_owned();
        job.lease = Some(Lease {
            token: receipt,
            deadline_ms,
        });
        Ok(Some(job))
    }

    async fn heartbeat(&self, job: &Job) -> Result<Lease> {
        let receipt = self.live_receipt(job)?;
        self.set_visibility(&receipt, self.ttl_secs()).await?;
        let deadline = self.clock.now_ms() + u64::from(self.ttl_secs() as u32) * 1000;
        self.leases
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(receipt.clone(), deadline);
        Ok(Lease {
            token: receipt,
            deadline_ms: deadline,
        })
    }

    async fn report(&self, job: &Job, outcome: &JobOutcome) -> Result<()> {
        let receipt = match self.live_receipt(job) {
            Ok(r) => r,
            // Reported already with this lease: done.
            Err(e) => {
                let reported = job.lease.as_ref().is_some_and(|l| {
                    self.ended
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .get(&l.token)
                        == Some(&Ended::Reported)
                });
                return if reported { Ok(()) } else { Err(e) };
            }
        };
        self.client
            .delete_message()
            .queue_url(&self.queue_url)
            .receipt_handle(&receipt)
            .send()
            .await
            .map_err(|e| sdk_error("sqs", "delete message", &job.id, e))?;
        tracing::debug!(job = %job.id, outcome = outcome.status(), "reported");
        self.ended
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(receipt, Ended::Reported);
        Ok(())
    }

    async fn release(&self, job: &Job) -> Result<()> {
        let receipt = self.live_receipt(job)?;
        self.set_visibility(&receipt, 0).await?;
        self.ended
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(receipt, Ended::Released);
        Ok(())
    }
}
