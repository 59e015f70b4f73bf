//! SqsJobSource against a boto3 loop, both on the same moto_server: 1,000 jobs through
//! `next` + `report` (receive, read the job, delete the message) until the queue is empty.
//!
//! ```text
//! cargo bench --features aws --bench sqs_queue     # HGAUTO_BENCH_JOBS to change the count
//! ```
//!
//! Each side gets its own queue, filled (in batches of ten) before the clock starts. The
//! peer is `benches/peers/sqs_queue.py`: receive ten, delete each, one process. hgauto runs
//! one consumer that prefetches ten (`with_prefetch(10)`), and then four consumers on one
//! runtime. Medians of 3, interleaved.

use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hgauto_aws::{AwsConfig, SqsJobSource};
use hgauto_core::{Job, JobFilter, JobOutcome, JobSource};
use hgauto_testkit::moto::MotoServer;
use hgauto_testkit::pypiserver::venv_program;

const RUNS: usize = 3;

async fn fill(client: &hgauto_aws::sdk::sqs::Client, name: &str, jobs: usize) -> String {
    let url = client
        .create_queue()
        .queue_name(name)
        .send()
        .await
        .unwrap()
        .queue_url()
        .unwrap()
        .to_owned();
    for start in (0..jobs).step_by(10) {
        let entries = (start..(start + 10).min(jobs))
            .map(|i| {
                let job = Job::new(format!("job-{i}"), "build").with_revision(format!("{i:040x}"));
                hgauto_aws::sdk::sqs::types::SendMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .message_body(serde_json::to_string(&job).unwrap())
                    .build()
                    .unwrap()
            })
            .collect();
        client
            .send_message_batch()
            .queue_url(&url)
            .set_entries(Some(entries))
            .send()
            .await
            .unwrap();
    }
    url
}

async fn drain(source: Arc<SqsJobSource>) -> usize {
    let ok = JobOutcome::Succeeded {
        summary: "ok".into(),
    };
    let mut n = 0;
    while let Some(j) = source.next(&JobFilter::any()).await.unwrap() {
        source.report(&j, &ok).await.unwrap();
        n += 1;
    }
    n
}

async fn ours(client: &hgauto_aws::sdk::sqs::Client, url: &str, consumers: usize) -> Duration {
    let t = Instant::now();
    let tasks: Vec<_> = (0..consumers)
        .map(|_| {
            let s = Arc::new(
                SqsJobSource::new(client.clone(), url)
                    .with_wait(Duration::ZERO)
                    .with_prefetch(10),
            );
            tokio::spawn(drain(s))
        })
        .collect();
    let mut n = 0;
    for t in tasks {
        n += t.await.unwrap();
    }
    let took = t.elapsed();
    assert!(n > 0);
    took
}

fn median(mut xs: Vec<Duration>) -> Duration {
    xs.sort();
    xs[xs.len() / 2]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let jobs: usize = std::env::var("HGAUTO_BENCH_JOBS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let moto = MotoServer::start();
    let endpoint = moto.endpoint();
    let state = tempfile::tempdir().unwrap();
    let config = AwsConfig::new("us-east-1")
        .with_endpoint(&endpoint)
        .with_state_dir(state.path());
    let client = SqsJobSource::client(&config.sdk_config().await);
    let (mut one, mut four, mut peer) = (Vec::new(), Vec::new(), Vec::new());
    for run in 0..RUNS {
        let url = fill(&client, &format!("bench-one-{run}"), jobs).await;
        one.push(ours(&client, &url, 1).await);
        let url = fill(&client, &format!("bench-four-{run}"), jobs).await;
        four.push(ours(&client, &url, 4).await);
        let url = fill(&client, &format!("bench-peer-{run}"), jobs).await;
        let out = Command::new(venv_program("python3"))
            .arg(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../benches/peers/sqs_queue.py"
            ))
            .args([&endpoint, &url])
            .output()
            .expect("python3 with boto3");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let p: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(p["jobs"].as_u64(), Some(jobs as u64));
        peer.push(Duration::from_secs_f64(p["seconds"].as_f64().unwrap()));
    }
    let (one, four, peer) = (median(one), median(four), median(peer));
    let rate = |d: Duration| jobs as f64 / d.as_secs_f64();
    println!("{jobs} jobs through next + report on moto_server, median of {RUNS}");
    println!(
        "hgauto SqsJobSource, 1 consumer, prefetch 10: {:.2} s ({:.0} jobs/s)",
        one.as_secs_f64(),
        rate(one)
    );
    println!(
        "hgauto SqsJobSource, 4 consumers, prefetch 10: {:.2} s ({:.0} jobs/s)",
        four.as_secs_f64(),
        rate(four)
    );
    println!(
        "peer boto3 loop (receive 10, delete each): {:.2} s ({:.0} jobs/s)",
        peer.as_secs_f64(),
        rate(peer)
    );
    println!(
        "ratio hgauto/peer wall: 1 consumer {:.2}x, 4 consumers {:.2}x",
        one.as_secs_f64() / peer.as_secs_f64(),
        four.as_secs_f64() / peer.as_secs_f64()
    );
}
