//! Side-by-side benchmark of the local backend against the tools it replaces.
//!
//! ```text
//! cargo bench --no-default-features --bench local_backend
//! ```
//!
//! 1. 1,000 sequential `true` commands: `LocalMachine::exec` vs a Python
//!    `subprocess.run(["true"])` loop (what hand-rolled CI scripts do) vs a bare
//!    `tokio::process::Command` loop (the floor: spawning a process, no hgauto).
//! 2. Pushing a 5,000-file, 100 MB tree into a sandbox (on tmpfs when /dev/shm exists): `sync_tree` vs `cp -a` and
//!    `rsync -a`; then a re-sync after one file changed vs `rsync -a`.
//!
//! Each measurement is the median of 5 runs, each write-heavy one after a `sync`; the peers run in the same process run, on the
//! same trees. rsync is skipped (and said so) when it is not installed.

use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hgauto_core::{Command, LocalProvider, MachineSpec, ResourceProvider, SyncOptions};
use hgauto_testkit::fixtures::random_tree;

const RUNS: usize = 5;
const COMMANDS: usize = 1000;

fn median(mut xs: Vec<Duration>) -> Duration {
    xs.sort();
    xs[xs.len() / 2]
}

fn sh(cmd: &str) -> bool {
    std::process::Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// Flushes dirty pages, so every timed write starts from the same state (otherwise one
/// tool's writeback throttles whichever runs next).
fn settle() {
    sh("sync");
}

fn timed_sh(cmd: &str) -> Duration {
    settle();
    let t = Instant::now();
    assert!(sh(cmd), "peer command failed: {cmd}");
    t.elapsed()
}

fn row(what: &str, ours: Duration, peer_name: &str, peer: Duration) {
    println!(
        "{what:<34} hgauto {:>9.1} ms   {peer_name:<24} {:>9.1} ms   ratio {:.2}x",
        ours.as_secs_f64() * 1e3,
        peer.as_secs_f64() * 1e3,
        ours.as_secs_f64() / peer.as_secs_f64()
    );
}

#[tokio::main]
async fn main() {
    // On tmpfs: this compares per-file overhead, not this machine's disk (whose writeback
    // made timings depend on which tool ran before).
    let work = match std::path::Path::new("/dev/shm").is_dir() {
        true => tempfile::tempdir_in("/dev/shm").unwrap(),
        false => tempfile::tempdir().unwrap(),
    };
    eprintln!("work dir: {}", work.path().display());
    let provider = Arc::new(LocalProvider::new(work.path().join("state")).unwrap());
    let machines = provider.provision(&MachineSpec::linux(), 1).await.unwrap();
    let m = machines[0].clone();
    let home = work.path().join("state/local/machines").join(m.id());

    println!("\n== 1. {COMMANDS} sequential `true` commands ==");
    let mut ours = Vec::new();
    let mut bare = Vec::new();
    let mut python = Vec::new();
    let py = format!("import subprocess\nfor _ in range({COMMANDS}): subprocess.run(['true'], check=True, capture_output=True)");
    for _ in 0..RUNS {
        let t = Instant::now();
        for _ in 0..COMMANDS {
            let out = m.exec(&Command::new("true")).await.unwrap();
            assert!(out.status.success());
        }
        ours.push(t.elapsed());

        let t = Instant::now();
        for _ in 0..COMMANDS {
            let out = tokio::process::Command::new("true").output().await.unwrap();
            assert!(out.status.success());
        }
        bare.push(t.elapsed());

        python.push(timed_sh(&format!("python3 -c \"{py}\"")));
    }
    let ours = median(ours);
    row(
        "exec `true` x1000",
        ours,
        "python subprocess.run",
        median(python),
    );
    row(
        "exec `true` x1000",
        ours,
        "bare tokio spawn (floor)",
        median(bare),
    );

    println!("\n== 2. push a 5,000-file, 100 MB tree ==");
    let src = work.path().join("src");
    let total = random_tree(&src, 5000, 100_000_000);
    eprintln!("tree: 5000 files, {:.1} MB", total as f64 / 1e6);
    let have_rsync = sh("rsync --version");
    let opts = SyncOptions {
        delete: true,
        compress: false,
    };
    let (mut first, mut cp, mut rsync_first, mut resync, mut rsync_resync) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for run in 0..RUNS {
        let dst = format!("tree{run}");
        settle();
        let t = Instant::now();
        let r = m.sync_tree(&src, &dst, &opts).await.unwrap();
        first.push(t.elapsed());
        assert_eq!(r.files_sent, 5000);

        let cp_dst = work.path().join(format!("cp{run}"));
        cp.push(timed_sh(&format!(
            "cp -a '{}' '{}'",
            src.display(),
            cp_dst.display()
        )));

        let changed = src.join(format!("dir07/file{:05}.bin", 7 + 50 * run));
        if have_rsync {
            let rs_dst = work.path().join(format!("rsync{run}"));
            rsync_first.push(timed_sh(&format!(
                "rsync -a '{}/' '{}/'",
                src.display(),
                rs_dst.display()
            )));
            std::fs::write(&changed, format!("changed in run {run}")).unwrap();
            rsync_resync.push(timed_sh(&format!(
                "rsync -a --delete '{}/' '{}/'",
                src.display(),
                rs_dst.display()
            )));
            let _ = std::fs::remove_dir_all(rs_dst);
        } else {
            std::fs::write(&changed, format!("changed in run {run}")).unwrap();
        }
        settle();
        let t = Instant::now();
        let r = m.sync_tree(&src, &dst, &opts).await.unwrap();
        resync.push(t.elapsed());
        assert_eq!(r.files_sent, 1, "re-sync must send only the changed file");

        let _ = std::fs::remove_dir_all(home.join(&dst));
        let _ = std::fs::remove_dir_all(cp_dst);
    }
    let first = median(first);
    let resync = median(resync);
    row("first sync", first, "cp -a", median(cp));
    if have_rsync {
        row("first sync", first, "rsync -a", median(rsync_first));
        row(
            "re-sync, one file changed",
            resync,
            "rsync -a --delete",
            median(rsync_resync),
        );
    } else {
        println!("rsync not installed: rsync rows skipped (apt-get install rsync)");
        println!(
            "re-sync, one file changed: hgauto {:.1} ms",
            resync.as_secs_f64() * 1e3
        );
    }
    provider.purge().await.unwrap();
}
