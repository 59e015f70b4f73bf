//! How long `hgauto` takes before it does anything: `hgauto --help` and `hgauto list` on an
//! empty state directory, against `python -c "import boto3"`, what automation.py paid
//! before its first line of work.
//!
//! ```text
//! cargo bench --bench cli_startup        # HGAUTO_BENCH_RUNS to change the count (default 30)
//! ```
//!
//! Each row is the median wall time of N runs of the whole process, measured from here.
//! Python is the project's test venv's (`.venv-test`, where moto brings boto3), else
//! `python3`. Goal: under 20 ms for both hgauto rows.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn median(mut xs: Vec<Duration>) -> Duration {
    xs.sort();
    xs[xs.len() / 2]
}

fn time(runs: usize, mut make: impl FnMut() -> Command) -> Duration {
    let mut xs = Vec::with_capacity(runs);
    for _ in 0..runs {
        let mut c = make();
        c.stdout(Stdio::null()).stderr(Stdio::null());
        let t = Instant::now();
        let status = c.status().expect("the command starts");
        xs.push(t.elapsed());
        assert!(status.success(), "{c:?} failed");
    }
    median(xs)
}

fn python() -> PathBuf {
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("../.venv-test/bin/python3");
    if venv.exists() {
        venv
    } else {
        PathBuf::from("python3")
    }
}

fn main() {
    let runs: usize = std::env::var("HGAUTO_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(30);
    let bin = env!("CARGO_BIN_EXE_hgauto");
    let state = tempfile::tempdir().unwrap();
    let hgauto = |args: &'static [&'static str]| {
        let state = state.path().to_owned();
        move || {
            let mut c = Command::new(bin);
            c.args(args)
                .env("HGAUTO_STATE_DIR", &state)
                .env_remove("HGAUTO_CONFIG");
            c
        }
    };
    let py = python();
    let boto3 = time(runs, || {
        let mut c = Command::new(&py);
        c.args(["-c", "import boto3"]);
        c
    });
    println!("{:<40} {:>10} {:>8}", "case", "median", "ratio");
    println!(
        "{:<40} {:>8.1}ms {:>8}",
        "python -c \"import boto3\"",
        boto3.as_secs_f64() * 1e3,
        "1.00x"
    );
    for (name, args) in [
        ("hgauto --help", &["--help"][..]),
        ("hgauto list (empty state dir)", &["list"][..]),
    ] {
        let d = time(runs, hgauto(args));
        println!(
            "{name:<40} {:>8.1}ms {:>7.3}x   goal < 20 ms: {}",
            d.as_secs_f64() * 1e3,
            d.as_secs_f64() / boto3.as_secs_f64(),
            if d < Duration::from_millis(20) {
                "met"
            } else {
                "MISSED"
            }
        );
    }
}
