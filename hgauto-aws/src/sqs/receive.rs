//! Taking messages for `next`: from the prefetched ones first, else with a receive; a
//! message body read into a [`Job`] (or quarantined); messages made visible again in
//! batches of ten.

use std::collections::HashSet;

use aws_sdk_sqs::types::{ChangeMessageVisibilityBatchRequestEntry, MessageSystemAttributeName};
use hgauto_core::{Error, Job, JobFilter, Result};

use super::SqsJobSource;
use crate::error::sdk_error;

/// A message received, read into a job, and leased to this source until `deadline_ms`.
#[derive(Debug)]
pub(super) struct Received {
    pub job: Job,
    pub receipt: String,
    pub deadline_ms: u64,
}

impl SqsJobSource {
    /// The first prefetched message that passes `filter` and has at least half its lease
    /// left. Those that do not pass, or are half gone, go to `give_back`.
    pub(super) fn take_prefetched(
        &self,
        filter: &JobFilter,
        give_back: &mut Vec<String>,
    ) -> Option<Received> {
        let now = self.clock.now_ms();
        let half = u64::from(self.ttl_secs() as u32) * 500;
        let mut held = self.prefetched.lock().unwrap_or_else(|p| p.into_inner());
        let mut chosen = None;
        let mut keep = std::collections::VecDeque::new();
        for r in held.drain(..) {
            if r.deadline_ms.saturating_sub(now) < half || !filter.matches(&r.job) {
                give_back.push(r.receipt);
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
        give_back: &mut Vec<String>,
    ) -> Result<Option<Received>> {
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
                job.attempt = m
                    .attributes()
                    .and_then(|a| a.get(&MessageSystemAttributeName::ApproximateReceiveCount))
                    .and_then(|n| n.parse().ok())
                    .unwrap_or(1);
                let r = Received {
                    job,
                    receipt: receipt.to_owned(),
                    deadline_ms,
                };
                if !filter.matches(&r.job) {
                    give_back.push(r.receipt);
                } else if chosen.is_none() {
                    chosen = Some(r);
                } else {
                    let mut held = self.prefetched.lock().unwrap_or_else(|p| p.into_inner());
                    if held.len() + 1 < self.prefetch {
                        held.push_back(r);
                    } else {
                        give_back.push(r.receipt);
                    }
                }
            }
            if messages.is_empty() || !fresh {
                break;
            }
        }
        Ok(chosen)
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
