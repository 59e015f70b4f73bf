//! Taking messages for `next`: from the prefetched ones first, else with a receive; a
//! message body read into a [`Job`] (or quarantined); messages that were looked at but not
//! handed out forwarded (sent again, then deleted) in batches of ten.
//!
//! Why forward rather than make visible: every receive raises a message's
//! `ApproximateReceiveCount`, and SQS's redrive counts receives, not attempts. An agent
//! that passes over another shard's job (or one it has no room for) would push it toward
//! the dead-letter queue without it ever running. A forwarded copy starts at zero
//! receives and carries the attempts made so far in the `hgauto-attempts` attribute; the
//! source itself dead-letters a job whose attempts pass the queue's `maxReceiveCount`.

use std::collections::HashSet;

use aws_sdk_sqs::types::{
    ChangeMessageVisibilityBatchRequestEntry, DeleteMessageBatchRequestEntry,
    MessageAttributeValue, MessageSystemAttributeName, SendMessageBatchRequestEntry,
};
use hgauto_core::{Error, Job, JobFilter, Result};

use super::SqsJobSource;
use crate::error::sdk_error;

/// The message attribute that carries the attempts made on earlier copies of a message.
pub(super) const ATTEMPTS_ATTRIBUTE: &str = "hgauto-attempts";

/// A message received, read into a job, and leased to this source until `deadline_ms`.
#[derive(Debug)]
pub(super) struct Received {
    pub job: Job,
    pub receipt: String,
    pub deadline_ms: u64,
    /// The body as it came, to forward it unchanged.
    pub body: String,
    /// Attempts made before this receive, on every copy: the attempt this receive would be
    /// is one more.
    pub attempts_before: u32,
}

impl SqsJobSource {
    /// Half a lease, in ms: a message with less left is neither handed out nor forwarded.
    fn half_lease_ms(&self) -> u64 {
        u64::from(self.ttl_secs() as u32) * 500
    }

    /// The first prefetched message that passes `filter` and has at least half its lease
    /// left. Those that do not pass, or are half gone, go to `give_back`.
    pub(super) fn take_prefetched(
        &self,
        filter: &JobFilter,
        give_back: &mut Vec<Received>,
    ) -> Option<Received> {
        let now = self.clock.now_ms();
        let half = self.half_lease_ms();
        let mut held = self.prefetched.lock().unwrap_or_else(|p| p.into_inner());
        let mut chosen = None;
        let mut keep = std::collections::VecDeque::new();
        for r in held.drain(..) {
            if r.deadline_ms.saturating_sub(now) < half || !filter.matches(&r.job) {
                give_back.push(r);
            } else if chosen.is_none() {
                chosen = Some(r);
            } else {
                keep.push_back(r);
            }
        }
        *held = keep;
        chosen
    }

    /// Receives until a message passes `filter` or the queue has nothing new to show.
    /// Up to `prefetch - 1` more that pass are kept for later calls; every other message
    /// seen goes to `give_back`.
    pub(super) async fn receive_for(
        &self,
        filter: &JobFilter,
        give_back: &mut Vec<Received>,
    ) -> Result<Option<Received>> {
        let max_attempts = self.max_attempts().await?;
        let mut seen = HashSet::new();
        let mut chosen: Option<Received> = None;
        let mut wait = self.wait.as_secs() as i32;
        // A filter may pass over messages: look at a batch. Otherwise take only what is kept.
        let batch = if *filter == JobFilter::any() {
            self.prefetch as i32
        } else {
            10
        };
        while chosen.is_none() {
            // SQS starts the visibility timeout when it takes the request, so a lease runs
            // out at most TTL after we sent it: counting from the reply instead would
            // promise a prefetched message time it does not have (a slow reply on a busy
            // host made the suite hand one job out twice).
            let sent_ms = self.clock.now_ms();
            let out = self
                .client
                .receive_message()
                .queue_url(&self.queue_url)
                .max_number_of_messages(batch)
                .wait_time_seconds(wait)
                .visibility_timeout(self.ttl_secs())
                .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
                .message_attribute_names(ATTEMPTS_ATTRIBUTE)
                .send()
                .await
                .map_err(|e| sdk_error("sqs", "receive messages", &self.queue_url, e))?;
            // Only the first receive waits: later ones just sweep what is visible.
            wait = 0;
            let deadline_ms = sent_ms + u64::from(self.ttl_secs() as u32) * 1000;
            let messages = out.messages();
            let mut fresh = false;
            for m in messages {
                let (Some(receipt), Some(id)) = (m.receipt_handle(), m.message_id()) else {
                    continue;
                };
                fresh |= seen.insert(id.to_owned());
                let body = m.body().unwrap_or_default();
                let mut job = match read_job(id, body) {
                    Ok(j) => j,
                    Err(e) => {
                        self.quarantine(body, receipt, &e).await;
                        continue;
                    }
                };
                let receives: u32 = m
                    .attributes()
                    .and_then(|a| a.get(&MessageSystemAttributeName::ApproximateReceiveCount))
                    .and_then(|n| n.parse().ok())
                    .unwrap_or(1);
                let earlier: u32 = m
                    .message_attributes()
                    .and_then(|a| a.get(ATTEMPTS_ATTRIBUTE))
                    .and_then(|v| v.string_value())
                    .and_then(|n| n.parse().ok())
                    .unwrap_or(0);
                // Every earlier receive of this copy was an attempt: a receive that is not
                // one forwards the message, and the copy is gone.
                let attempts_before = earlier.saturating_add(receives - 1);
                if max_attempts.is_some_and(|max| attempts_before >= max) {
                    let e = Error::invalid(
                        format!("job {}", job.id),
                        format!(
                            "was attempted {attempts_before} times, the queue's maxReceiveCount"
                        ),
                    );
                    self.quarantine(body, receipt, &e).await;
                    continue;
                }
                job.attempt = attempts_before + 1;
                let r = Received {
                    job,
                    receipt: receipt.to_owned(),
                    deadline_ms,
                    body: body.to_owned(),
                    attempts_before,
                };
                if !filter.matches(&r.job) {
                    give_back.push(r);
                } else if chosen.is_none() {
                    chosen = Some(r);
                } else {
                    let mut held = self.prefetched.lock().unwrap_or_else(|p| p.into_inner());
                    if held.len() + 1 < self.prefetch {
                        held.push_back(r);
                    } else {
                        give_back.push(r);
                    }
                }
            }
            if messages.is_empty() || !fresh {
                break;
            }
        }
        Ok(chosen)
    }

    /// Gives back messages this source looked at but did not hand out: each is sent again
    /// with the attempts made so far, then deleted, ten per call. A message that could not
    /// be sent again is made visible instead (its receive then counts, as before), and so
    /// is one with less than half its lease left: if its lease ran out between the copy
    /// and the delete, another agent could take the original while the copy is queued.
    pub(super) async fn forward(&self, messages: Vec<Received>) -> Result<()> {
        let now = self.clock.now_ms();
        let half = self.half_lease_ms();
        let (messages, late): (Vec<_>, Vec<_>) = messages
            .into_iter()
            .partition(|r| r.deadline_ms.saturating_sub(now) >= half);
        let late: Vec<String> = late.into_iter().map(|r| r.receipt).collect();
        self.make_visible(&late).await?;
        for chunk in messages.chunks(10) {
            let entries = chunk
                .iter()
                .enumerate()
                .map(|(i, r)| {
                    let attempts = MessageAttributeValue::builder()
                        .data_type("Number")
                        .string_value(r.attempts_before.to_string())
                        .build()
                        .map_err(|e| Error::invalid("SQS message attribute", e.to_string()))?;
                    SendMessageBatchRequestEntry::builder()
                        .id(i.to_string())
                        .message_body(&r.body)
                        .message_attributes(ATTEMPTS_ATTRIBUTE, attempts)
                        .build()
                        .map_err(|e| Error::invalid("SQS message", e.to_string()))
                })
                .collect::<Result<Vec<_>>>()?;
            let sent = self
                .client
                .send_message_batch()
                .queue_url(&self.queue_url)
                .set_entries(Some(entries))
                .send()
                .await
                .map_err(|e| sdk_error("sqs", "send messages", &self.queue_url, e))?;
            let ok: HashSet<usize> = sent
                .successful()
                .iter()
                .filter_map(|s| s.id().parse().ok())
                .collect();
            let (copied, kept): (Vec<_>, Vec<_>) =
                chunk.iter().enumerate().partition(|(i, _)| ok.contains(i));
            // Sent again before deleted: a crash in between runs a job twice, never zero times.
            if !copied.is_empty() {
                let deletes = copied
                    .iter()
                    .map(|(i, r)| {
                        DeleteMessageBatchRequestEntry::builder()
                            .id(i.to_string())
                            .receipt_handle(&r.receipt)
                            .build()
                            .map_err(|e| Error::invalid("SQS delete", e.to_string()))
                    })
                    .collect::<Result<Vec<_>>>()?;
                self.client
                    .delete_message_batch()
                    .queue_url(&self.queue_url)
                    .set_entries(Some(deletes))
                    .send()
                    .await
                    .map_err(|e| sdk_error("sqs", "delete messages", &self.queue_url, e))?;
            }
            let kept: Vec<String> = kept.into_iter().map(|(_, r)| r.receipt.clone()).collect();
            self.make_visible(&kept).await?;
        }
        Ok(())
    }

    /// Makes the messages of `receipts` visible now, ten per call.
    pub(super) async fn make_visible(&self, receipts: &[String]) -> Result<()> {
        for chunk in receipts.chunks(10) {
            let entries = chunk
                .iter()
                .enumerate()
                .map(|(i, r)| {
                    ChangeMessageVisibilityBatchRequestEntry::builder()
                        .id(i.to_string())
                        .receipt_handle(r)
                        .visibility_timeout(0)
                        .build()
                        .map_err(|e| Error::invalid("SQS visibility change", e.to_string()))
                })
                .collect::<Result<Vec<_>>>()?;
            self.client
                .change_message_visibility_batch()
                .queue_url(&self.queue_url)
                .set_entries(Some(entries))
                .send()
                .await
                .map_err(|e| sdk_error("sqs", "change message visibility", &self.queue_url, e))?;
        }
        Ok(())
    }
}

/// A message body as a job: JSON with an id and a check.
fn read_job(id: &str, body: &str) -> Result<Job> {
    let job: Job = serde_json::from_str(body)
        .map_err(|e| Error::invalid(format!("SQS message {id}"), e.to_string()))?;
    if job.id.is_empty() || job.check.is_empty() {
        return Err(Error::invalid(
            format!("SQS message {id}"),
            "has no job id or check",
        ));
    }
    Ok(job)
}
