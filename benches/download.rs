//! Side-by-side benchmark of `download` with sha256 verification against
//! `curl -o f && sha256sum f`, from a local nginx (the test harness's), into tmpfs.
//!
//! ```text
//! cargo bench --no-default-features --features conformance --bench download
//! ```
//!
//! The file (512 MB by default, `HGAUTO_BENCH_MB` to change) is served from the page cache;
//! the destination is on /dev/shm when it exists, so the disk does not decide. Each number is
//! the median of 5 runs. hgauto hashes while receiving (on a second thread); the peer pays
//! for the transfer and the hash one after the other.

use hgauto_testkit::support;

use std::process::Stdio;
use std::time::{Duration, Instant};

use hgauto_ci::download::{download, DownloadOptions};
use support::Nginx;

const RUNS: usize = 5;

fn median(mut xs: Vec<Duration>) -> Duration {
    xs.sort();
    xs[xs.len() / 2]
}

fn main() {
    let mb: usize = std::env::var("HGAUTO_BENCH_MB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(512);
    let nginx = Nginx::start();
    let data = support::blob(mb << 20, 7);
    let sha = support::sha256(&data);
    nginx.serve("big.bin", &data);
    drop(data);
    let url = nginx.url("big.bin");
    let base = if std::path::Path::new("/dev/shm").is_dir() {
        tempfile::tempdir_in("/dev/shm").unwrap()
    } else {
        tempfile::tempdir().unwrap()
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    // Warm the page cache of the served file.
    let warm = base.path().join("warm");
    rt.block_on(download(&url, &warm, &DownloadOptions::default()))
        .unwrap();
    std::fs::remove_file(&warm).unwrap();

    let mut ours = Vec::new();
    let mut peer = Vec::new();
    for i in 0..RUNS {
        let dest = base.path().join(format!("ours-{i}"));
        let opts = DownloadOptions::default().with_sha256(&sha);
        let t = Instant::now();
        let r = rt.block_on(download(&url, &dest, &opts)).unwrap();
        ours.push(t.elapsed());
        assert_eq!(r.sha256, sha);
        std::fs::remove_file(&dest).unwrap();

        let dest = base.path().join(format!("peer-{i}"));
        let t = Instant::now();
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!(
                "curl -fsS -o '{0}' '{url}' && sha256sum '{0}'",
                dest.display()
            ))
            .stderr(Stdio::inherit())
            .output()
            .unwrap();
        peer.push(t.elapsed());
        assert!(out.status.success());
        assert!(String::from_utf8_lossy(&out.stdout).starts_with(&sha));
        std::fs::remove_file(&dest).unwrap();
    }
    let (o, p) = (median(ours), median(peer));
    println!(
        "download {mb} MB + sha256           hgauto {:>8.1} ms   curl -o && sha256sum {:>8.1} ms   ratio {:.2}x",
        o.as_secs_f64() * 1e3,
        p.as_secs_f64() * 1e3,
        o.as_secs_f64() / p.as_secs_f64()
    );
}
