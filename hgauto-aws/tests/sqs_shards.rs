//! Shard agents over one SQS queue (moto_server): passing over another shard's job must not
//! count toward the dead-letter queue. 4 agents, 100 jobs, `max_receives = 5`: every job
//! runs exactly once and the dead-letter queue stays empty; a job that really fails still
//! goes there after 5 attempts, counted across the copies the other shards forward.

mod support;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hgauto_aws::SqsJobSource;
use hgauto_core::{Job, JobFilter, JobOutcome, JobSource};
use support::Moto;

async fn client(moto: &Moto) -> aws_sdk_sqs::Client {
    let state = tempfile::tempdir().unwrap();
    let sdk = moto.config(state.path()).sdk_config().await;
    SqsJobSource::client(&sdk)
}

fn source(client: &aws_sdk_sqs::Client, url: &str) -> SqsJobSource {
    // No dead-letter URL given: the source finds it from the queue's redrive policy.
    SqsJobSource::new(client.clone(), url)
        .with_lease_ttl(Duration::from_secs(60))
        .with_wait(Duration::ZERO)
}

async fn count(client: &aws_sdk_sqs::Client, url: &str) -> usize {
    let mut n = 0;
    loop {
        let out = client
            .receive_message()
            .queue_url(url)
            .max_number_of_messages(10)
            .visibility_timeout(60)
            .send()
            .await
            .unwrap();
        if out.messages().is_empty() {
            return n;
        }
        n += out.messages().len();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_shard_agents_run_every_job_once_and_dead_letter_none() {
    let moto = Moto::start();
    let client = client(&moto).await;
    let (url, dlq) = SqsJobSource::create_queues(&client, "hgauto-shards", 5)
        .await
        .unwrap();
    let jobs = 100;
    for i in 0..jobs {
        source(&client, &url)
            .enqueue(&Job::new(format!("j{i:03}"), "build").with_revision(format!("{i:040x}")))
            .await
            .unwrap();
    }
    let runs: Arc<Mutex<HashMap<String, u32>>> = Arc::default();
    let deadline = Instant::now() + Duration::from_secs(240);
    let mut agents = Vec::new();
    for k in 0..4u32 {
        let (s, runs) = (source(&client, &url), runs.clone());
        agents.push(tokio::spawn(async move {
            let filter = JobFilter::shard(k, 4);
            while runs.lock().unwrap().len() < jobs && Instant::now() < deadline {
                let Some(job) = s.next(&filter).await.unwrap() else {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                };
                assert!(filter.matches(&job), "{job:?}");
                *runs.lock().unwrap().entry(job.id.clone()).or_default() += 1;
                let ok = JobOutcome::Succeeded {
                    summary: "ok".into(),
                };
                s.report(&job, &ok).await.unwrap();
            }
        }));
    }
    for a in agents {
        a.await.unwrap();
    }
    let runs = runs.lock().unwrap().clone();
    assert_eq!(runs.len(), jobs, "jobs that never ran");
    assert!(runs.values().all(|n| *n == 1), "{runs:?}");
    assert_eq!(
        count(&client, &dlq).await,
        0,
        "jobs went to the dead-letter queue"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_job_is_dead_lettered_after_its_attempts_across_forwarded_copies() {
    let moto = Moto::start();
    let client = client(&moto).await;
    let (url, dlq) = SqsJobSource::create_queues(&client, "hgauto-poison", 3)
        .await
        .unwrap();
    let job = Job::new("poison", "build").with_revision(format!("{:040x}", 7));
    let owner = (0..2)
        .find(|k| JobFilter::shard(*k, 2).matches(&job))
        .unwrap();
    let (mine, other) = (JobFilter::shard(owner, 2), JobFilter::shard(1 - owner, 2));
    let (a, b) = (source(&client, &url), source(&client, &url));
    a.enqueue(&job).await.unwrap();
    for attempt in 1..=3 {
        // The other shard passes over it first, forwarding a fresh copy.
        assert!(b.next(&other).await.unwrap().is_none());
        let j = a.next(&mine).await.unwrap().expect("the job");
        assert_eq!(j.attempt, attempt);
        a.release(&j).await.unwrap();
    }
    assert!(b.next(&other).await.unwrap().is_none());
    assert!(a.next(&mine).await.unwrap().is_none(), "a 4th attempt");
    assert_eq!(count(&client, &dlq).await, 1);
    assert_eq!(count(&client, &url).await, 0);
}
