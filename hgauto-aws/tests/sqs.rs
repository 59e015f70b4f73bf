//! SqsJobSource against moto_server: the job source suite (SQS's own clock: leases of 2 s
//! that really run out), a message that is not a job is quarantined in the dead-letter
//! queue, and a message received too often goes there through SQS's redrive policy.

mod support;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use hgauto_aws::SqsJobSource;
use hgauto_core::{Job, JobFilter, JobOutcome, JobSource};
use hgauto_testkit::job_source::{run_all, Capabilities, Harness};
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
    prefetch: usize,
}

#[async_trait]
impl Harness for SqsHarness {
    /// Each consumer is its own source, as another agent's is.
    fn consumer(&self) -> Arc<dyn JobSource> {
        Arc::new(source(&self.client, &self.url, &self.dlq).with_prefetch(self.prefetch))
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

/// The suite against a fresh queue, with consumers that prefetch `prefetch` messages.
async fn run_suite(queue: &str, prefetch: usize) {
    let moto = Moto::start();
    let client = client(&moto).await;
    let (url, dlq) = SqsJobSource::create_queues(&client, queue, 100)
        .await
        .unwrap();
    let h = SqsHarness {
        client,
        url,
        dlq,
        prefetch,
    };
    // Standard queues keep no order and no history.
    run_all(&h, Capabilities::leases_only()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqs_source_passes_the_suite() {
    run_suite("hgauto-suite", 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqs_source_with_prefetch_passes_the_suite() {
    run_suite("hgauto-prefetch-suite", 10).await;
}

/// Prefetched messages are handed out by later calls without a receive, stay leased to
/// their holder meanwhile, and go back to the queue on `release_prefetched`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prefetched_messages_stay_leased_until_handed_out_or_given_back() {
    let moto = Moto::start();
    let client = client(&moto).await;
    let (url, dlq) = SqsJobSource::create_queues(&client, "hgauto-prefetch", 100)
        .await
        .unwrap();
    let a = source(&client, &url, &dlq).with_prefetch(4);
    let b = source(&client, &url, &dlq);
    for i in 0..6 {
        a.enqueue(&Job::new(format!("j{i}"), "build"))
            .await
            .unwrap();
    }
    let ok = JobOutcome::Succeeded {
        summary: "ok".into(),
    };
    let first = a.next(&JobFilter::any()).await.unwrap().expect("a job");
    a.report(&first, &ok).await.unwrap();
    // Three more are prefetched by `a`: `b` sees only the other two.
    let mut b_jobs = Vec::new();
    while let Some(j) = b.next(&JobFilter::any()).await.unwrap() {
        b_jobs.push(j);
    }
    assert_eq!(b_jobs.len(), 2, "{b_jobs:?}");
    for j in &b_jobs {
        b.report(j, &ok).await.unwrap();
    }
    // `a` hands one out from its prefetch, then gives the other two back.
    let second = a
        .next(&JobFilter::any())
        .await
        .unwrap()
        .expect("prefetched");
    assert!(second.lease.is_some());
    a.report(&second, &ok).await.unwrap();
    a.release_prefetched().await.unwrap();
    let mut rest = Vec::new();
    while let Some(j) = b.next(&JobFilter::any()).await.unwrap() {
        b.report(&j, &ok).await.unwrap();
        rest.push(j.id);
    }
    assert_eq!(rest.len(), 2, "{rest:?}");
    // Messages that do not pass the filter are never kept: the other check's job is
    // visible to `b` at once.
    a.enqueue(&Job::new("lin", "build/linux")).await.unwrap();
    a.enqueue(&Job::new("win", "build/windows")).await.unwrap();
    let only = |c: &str| JobFilter {
        checks: vec![c.to_owned()],
        shard: None,
    };
    let lin = a.next(&only("build/linux")).await.unwrap().expect("lin");
    assert_eq!(lin.id, "lin");
    let win = b
        .next(&only("build/windows"))
        .await
        .unwrap()
        .expect("win, not held by a");
    assert_eq!(win.id, "win");
    a.report(&lin, &ok).await.unwrap();
    b.report(&win, &ok).await.unwrap();
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
