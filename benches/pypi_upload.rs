//! Side-by-side benchmark of uploading wheels to a local pypiserver: hgauto's
//! `PypiPublisher` against `twine upload`, both as processes, then the re-run where every
//! file is already there (`twine upload --skip-existing`).
//!
//! ```text
//! cargo bench --no-default-features --features conformance --bench pypi_upload   # needs .venv-test (pypiserver, twine)
//! ```
//!
//! 20 wheels of 1 MiB of random data each (`HGAUTO_BENCH_WHEELS`, `HGAUTO_BENCH_KB` to
//! change), one project, 20 versions. Each run uploads into a fresh, empty server; the
//! re-run goes to the same server again. The hgauto side is this benchmark run again as a
//! child process, so its time includes starting a process, as twine's does. Each number is
//! the median of 5 runs.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use hgauto_core::{Artifact, Publisher};
use hgauto_release::PypiPublisher;
use hgauto_testkit::dists;
use hgauto_testkit::pypiserver::{venv_program, PypiServer, USER};

const RUNS: usize = 5;
const CHILD: &str = "HGAUTO_BENCH_PYPI_CHILD";

fn median(mut xs: Vec<Duration>) -> Duration {
    xs.sort();
    xs[xs.len() / 2]
}

fn env_number(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The child: uploads the files named on the command line to `$CHILD`'s URL, password
/// from `TWINE_PASSWORD`, and prints what it did.
fn child(url: String, files: Vec<PathBuf>) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let report = rt
        .block_on(async {
            let mut b = PypiPublisher::builder().repository_url(url).username(USER);
            if let Some(n) = std::env::var("HGAUTO_BENCH_CONCURRENCY")
                .ok()
                .and_then(|v| v.parse().ok())
            {
                b = b.concurrency(n);
            }
            let p = b.build()?;
            let artifacts = files
                .iter()
                .map(Artifact::from_file)
                .collect::<hgauto_core::Result<Vec<_>>>()?;
            p.publish(&artifacts).await
        })
        .unwrap();
    println!(
        "published {} already {}",
        report.published.len(),
        report.already_present.len()
    );
}

fn timed(cmd: &mut Command) -> (Duration, String) {
    let t = Instant::now();
    let out = cmd.output().expect("spawn");
    let elapsed = t.elapsed();
    assert!(
        out.status.success(),
        "{cmd:?}: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (elapsed, String::from_utf8_lossy(&out.stdout).into_owned())
}

fn main() {
    if let Ok(url) = std::env::var(CHILD) {
        let files = std::env::args()
            .skip(1)
            .filter(|a| !a.starts_with("--"))
            .map(PathBuf::from);
        return child(url, files.collect());
    }
    let wheels = env_number("HGAUTO_BENCH_WHEELS", 20);
    let kb = env_number("HGAUTO_BENCH_KB", 1024);
    let work = tempfile::tempdir().unwrap();
    let mut seed = 11u64;
    let files: Vec<PathBuf> = (0..wheels)
        .map(|i| {
            let payload = hgauto_testkit::fixtures::random_bytes(&mut seed, kb << 10);
            dists::wheel(work.path(), "benchpkg", &format!("1.0.{i}"), &payload)
        })
        .collect();
    let me = std::env::current_exe().unwrap();
    let twine = venv_program("twine");

    let hgauto_upload = |server: &PypiServer| {
        timed(
            Command::new(&me)
                .env(CHILD, server.url())
                .env("TWINE_PASSWORD", &server.password)
                .args(&files),
        )
    };
    let twine_upload = |server: &PypiServer, skip_existing: bool| {
        let mut cmd = Command::new(&twine);
        cmd.args(["upload", "--non-interactive", "--disable-progress-bar"])
            .args(["--repository-url", &server.url(), "-u", USER])
            .env("TWINE_PASSWORD", &server.password)
            .args(&files);
        if skip_existing {
            cmd.arg("--skip-existing");
        }
        timed(&mut cmd)
    };

    // Warm-up: page cache, Python's bytecode cache.
    {
        let s = PypiServer::start();
        twine_upload(&s, false);
        hgauto_upload(&s);
    }

    let (mut ours, mut peer, mut ours_again, mut peer_again) = (vec![], vec![], vec![], vec![]);
    for _ in 0..RUNS {
        let for_twine = PypiServer::start();
        let for_hgauto = PypiServer::start();
        let (t, _) = twine_upload(&for_twine, false);
        peer.push(t);
        let (t, out) = hgauto_upload(&for_hgauto);
        ours.push(t);
        assert!(out.contains(&format!("published {wheels} ")), "{out}");
        assert_eq!(for_hgauto.stored().len(), wheels);
        assert_eq!(for_twine.stored().len(), wheels);

        let (t, _) = twine_upload(&for_twine, true);
        peer_again.push(t);
        let (t, out) = hgauto_upload(&for_hgauto);
        ours_again.push(t);
        assert!(out.contains(&format!("already {wheels}")), "{out}");
    }
    let rows = [
        ("upload", median(ours), median(peer), "twine upload"),
        (
            "re-run, all present",
            median(ours_again),
            median(peer_again),
            "twine upload --skip-existing",
        ),
    ];
    println!("{wheels} wheels of {kb} KiB to a local pypiserver, median of {RUNS} runs");
    for (what, o, p, peer_name) in rows {
        println!(
            "{what:<20} hgauto {:>7.0} ms   {peer_name} {:>7.0} ms   ratio {:.2}x",
            o.as_secs_f64() * 1e3,
            p.as_secs_f64() * 1e3,
            o.as_secs_f64() / p.as_secs_f64()
        );
    }
}
