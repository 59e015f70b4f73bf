//! What an idle round costs: 100 open pull requests, every head already tested, polled
//! again and again. hgauto's `GithubPrSource` against the hand-rolled loop a CI script
//! writes (`benches/peers/github_poll.py`: list the pull requests, read each head's
//! status), both against the same fake GitHub on loopback (wiremock), which counts the
//! requests.
//!
//! ```text
//! cargo bench --no-default-features --features github --bench github_idle
//! ```
//!
//! Goal: one request and no status write per idle round.

use hgauto_testkit::fake_github;

use std::process::Command;
use std::time::{Duration, Instant};

use fake_github::{sha_of, FakeGithub, NewPull};
use hgauto_agent::github::{GithubPrSource, GithubRepo};
use hgauto_core::{JobFilter, JobOutcome, JobSource};

const PULLS: usize = 100;
const ROUNDS: u64 = 20;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let fake = FakeGithub::start().await;
    for i in 0..PULLS {
        let mut pr = NewPull::new("acme/widget", &sha_of(&format!("head-{i}")));
        pr.created_at = format!("2026-01-01T00:{:02}:{:02}Z", i / 60, i % 60);
        fake.open(pr);
    }
    let state = tempfile::tempdir().unwrap();
    let source = GithubPrSource::builder(state.path())
        .api_url(fake.url())
        .poll_interval(Duration::ZERO)
        .repository(GithubRepo::new("acme/widget", ["build"]).unwrap())
        .build()
        .unwrap();
    // Build every head once, so that the rounds below find nothing to do.
    let ok = JobOutcome::Succeeded {
        summary: "ok".into(),
    };
    let mut built = 0;
    while let Some(j) = source.next(&JobFilter::any()).await.unwrap() {
        source.started(&j).await.unwrap();
        source.report(&j, &ok).await.unwrap();
        built += 1;
    }
    assert_eq!(built, PULLS);

    fake.reset_requests().await;
    let before = source.stats();
    let t = Instant::now();
    for _ in 0..ROUNDS {
        assert_eq!(source.poll().await.unwrap(), 0);
    }
    let ours_time = t.elapsed() / ROUNDS as u32;
    let after = source.stats();
    let ours_requests = (after.requests - before.requests) as f64 / ROUNDS as f64;
    let ours_bytes = (after.bytes_received - before.bytes_received) as f64 / ROUNDS as f64;
    let ours_writes = (after.status_writes - before.status_writes) as f64 / ROUNDS as f64;
    let served = fake.requests().await.len() as f64 / ROUNDS as f64;
    assert_eq!(
        served, ours_requests,
        "the server saw what the source counted"
    );

    fake.reset_requests().await;
    let peer = Command::new("python3")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../benches/peers/github_poll.py"
        ))
        .args([fake.url(), "acme/widget".into(), ROUNDS.to_string()])
        .output()
        .expect("python3");
    assert!(
        peer.status.success(),
        "{}",
        String::from_utf8_lossy(&peer.stderr)
    );
    let p: serde_json::Value = serde_json::from_slice(&peer.stdout).unwrap();
    let peer_requests = p["requests"].as_f64().unwrap() / ROUNDS as f64;
    let peer_bytes = p["bytes"].as_f64().unwrap() / ROUNDS as f64;
    let peer_time = Duration::from_secs_f64(p["seconds"].as_f64().unwrap() / ROUNDS as f64);
    assert_eq!(
        fake.requests().await.len() as f64 / ROUNDS as f64,
        peer_requests
    );

    println!("idle round, {PULLS} open pull requests, every head tested, mean of {ROUNDS} rounds");
    println!(
        "hgauto GithubPrSource: {ours_requests:.1} requests ({:.1} answered 304), {ours_bytes:.0} body bytes, {ours_writes:.1} status writes, {:.2} ms",
        (after.not_modified - before.not_modified) as f64 / ROUNDS as f64,
        ours_time.as_secs_f64() * 1000.0
    );
    println!(
        "peer (list + status per head): {peer_requests:.1} requests, {peer_bytes:.0} body bytes, 0 status writes, {:.2} ms",
        peer_time.as_secs_f64() * 1000.0
    );
    println!(
        "ratio hgauto/peer: requests {:.3}x, bytes {:.4}x, time {:.3}x",
        ours_requests / peer_requests,
        ours_bytes / peer_bytes.max(1.0),
        ours_time.as_secs_f64() / peer_time.as_secs_f64()
    );
}
