//! SqsJobSource against moto_server: the job source suite (SQS's own clock: leases of 2 s
//! that really run out), a message that is not a job is quarantined in the dead-letter
//! queue, and a message received too often goes there through SQS's redrive policy.

mod support;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use hgauto_aws::SqsJobSource;
use hgauto_core::conformance::job_source::{run_all, Capabilities, Harness};
use hgauto_core::{Job, JobFilter, JobOutcome, JobSource};
use support::Moto;

const TTL: Duration = Duration::from_secs(2);

async fn client(moto: &Moto) -> aws_sdk_sqs::Client {
    let state = tempfile::tempdir().unwrap();
    let sdk = moto.config(state.path()).sdk_config().await;
    SqsJobSource::client(&sdk)
}

fn source(client: &aws_sdk_sqs::Client, url: &str, dlq: &str) -> SqsJobSource {
    SqsJobSource::new(client.clone(), url)
        .with_dead_letter_queue(dlq)
        .with_lease_ttl(TTL)
        .with_wait(Duration::ZERO)
}

struct SqsHarness {
    client: aws_sdk_sqs::Client,
    url: String,
    dlq: String,
}

#[async_trait]
impl Harness for SqsHarness {
    /// Each consumer is its own source, as another agent's is.
    fn consumer(&self) -> Arc<dyn JobSource> {
        Arc::new(source(&self.client, &self.url, &self.dlq))
    }
    async fn enqueue(&self, job: Job) {
        source(&self.client, &self.url, &self.dlq)
            .enqueue(&job)
            .await
            .unwrap();
    }
    /// SQS keeps its own time: wait it out.
    fn advance(&self, by: Duration) {
        std::thread::sleep(by);
    }
    fn lease_ttl(&self) -> Duration {
        TTL
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqs_source_passes_the_suite() {
    let moto = Moto::start();
    let client = client(&moto).await;
    let (url, dlq) = SqsJobSource::create_queues(&client, "hgauto-suite", 100)
        .await
        .unwrap();
    let h = SqsHarness { client, url, dlq };
    // Standard queues keep no order and no history.
    run_all(&h, Capabilities::leases_only()).await;
}

async fn dead_letters(client: &aws_sdk_sqs::Client, dlq: &str) -> Vec<String> {
    let out = client
        .receive_message()
        .queue_url(dlq)
        .max_number_of_messages(10)
        .send()
        .await
        .unwrap();
    out.messages()
        .iter()
        .map(|m| m.body().unwrap_or_default().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_that_are_not_jobs_go_to_the_dead_letter_queue() {
    let moto = Moto::start();
    let client = client(&moto).await;
    let (url, dlq) = SqsJobSource::create_queues(&client, "hgauto-bad", 5)
        .await
        .unwrap();
    for body in ["not json", r#"{"id": "no-check"}"#] {
        client
            .send_message()
            .queue_url(&url)
            .message_body(body)
            .send()
            .await
            .unwrap();
    }
    let s = source(&client, &url, &dlq);
    s.enqueue(&Job::new("good", "build").with_revision("r1"))
        .await
        .unwrap();
    let job = s
        .next(&JobFilter::any())
        .await
        .unwrap()
        .expect("the good job");
    assert_eq!(job.id, "good");
    s.report(
        &job,
        &JobOutcome::Succeeded {
            summary: "ok".into(),
        },
    )
    .await
    .unwrap();
    assert!(s.next(&JobFilter::any()).await.unwrap().is_none());
    let mut quarantined = dead_letters(&client, &dlq).await;
    quarantined.sort();
    assert_eq!(quarantined, ["not json", r#"{"id": "no-check"}"#]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_received_too_often_goes_to_the_dead_letter_queue() {
    let moto = Moto::start();
    let client = client(&moto).await;
    let (url, dlq) = SqsJobSource::create_queues(&client, "hgauto-redrive", 2)
        .await
        .unwrap();
    let s = source(&client, &url, &dlq);
    s.enqueue(&Job::new("poison", "build")).await.unwrap();
    for attempt in 1..=2 {
        let j = s.next(&JobFilter::any()).await.unwrap().expect("the job");
        assert_eq!(j.attempt, attempt);
        s.release(&j).await.unwrap();
    }
    assert!(s.next(&JobFilter::any()).await.unwrap().is_none());
    let dead = dead_letters(&client, &dlq).await;
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert!(dead[0].contains("poison"));
}
