//! A second checkout of a 2,000-commit repository through the pooled store, against a
//! fresh clone (`git clone` / `hg clone`), for git and Mercurial.
//!
//! ```text
//! cargo bench --no-default-features --bench checkout
//! ```
//!
//! Each repository has 2,000 commits over 500 files (git: `fast-import`; hg:
//! `debugbuilddag`), served from a local path. Each number is the median of 5 runs, each
//! into a fresh destination.

use std::path::Path;
use std::process::{Command as Cmd, Stdio};
use std::time::{Duration, Instant};

use hgauto_ci::checkout::{checkout, CheckoutOptions, Vcs, Want};

const RUNS: usize = 5;

fn median(mut xs: Vec<Duration>) -> Duration {
    xs.sort();
    xs[xs.len() / 2]
}

fn sh(dir: &Path, script: &str) -> String {
    let out = Cmd::new("sh")
        .arg("-ec")
        .arg(script)
        .current_dir(dir)
        .env("HGUSER", "bench <bench@example.invalid>")
        .env("HGPLAIN", "1")
        .stderr(Stdio::inherit())
        .output()
        .unwrap();
    assert!(out.status.success(), "{script}");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn git_repo(dir: &Path) -> String {
    let mut stream = String::new();
    for i in 1..=2000u32 {
        let body = format!("line {i}\n").repeat(20);
        stream.push_str(&format!(
            "commit refs/heads/main\ncommitter bench <bench@example.invalid> {} +0000\ndata 6\nc{:04}\nM 644 inline src/f{}.txt\ndata {}\n{}\n",
            1_700_000_000 + i,
            i % 10_000,
            i % 500,
            body.len(),
            body
        ));
    }
    std::fs::write(dir.join("stream"), stream).unwrap();
    sh(dir, "git init -q -b main repo && cd repo && git fast-import --quiet < ../stream && git rev-parse main")
}

fn hg_repo(dir: &Path) -> String {
    sh(
        dir,
        "hg init hgrepo && cd hgrepo && hg debugbuilddag --overwritten-file '+2000' && hg update -q tip && hg log -r tip -T '{node}'",
    )
}

fn main() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    for vcs in [Vcs::Git, Vcs::Hg] {
        let (url, rev, name) = match vcs {
            Vcs::Git => (dir.path().join("repo"), git_repo(dir.path()), "git"),
            Vcs::Hg => (dir.path().join("hgrepo"), hg_repo(dir.path()), "hg"),
        };
        let url = url.to_str().unwrap().to_owned();
        let opts = CheckoutOptions::new(dir.path().join(format!("shares-{name}")));
        // The first checkout fills the store.
        rt.block_on(checkout(
            vcs,
            &url,
            &dir.path().join(format!("{name}-first")),
            &Want::Revision(rev.clone()),
            &opts,
        ))
        .unwrap();
        let mut ours = Vec::new();
        let mut local = Vec::new();
        let mut wire = Vec::new();
        // `--no-local` / `--pull`: the clone a CI machine does from a server (objects are
        // transferred, not hard-linked), still on this machine.
        let wire_flag = match vcs {
            Vcs::Git => "--no-local",
            Vcs::Hg => "--pull",
        };
        for i in 0..RUNS {
            let dest = dir.path().join(format!("{name}-ours-{i}"));
            let t = Instant::now();
            let r = rt
                .block_on(checkout(
                    vcs,
                    &url,
                    &dest,
                    &Want::Revision(rev.clone()),
                    &opts,
                ))
                .unwrap();
            ours.push(t.elapsed());
            assert!(!r.cloned && !r.pulled);
            for (flag, times, tag) in [("", &mut local, "local"), (wire_flag, &mut wire, "wire")] {
                let dest = dir.path().join(format!("{name}-{tag}-{i}"));
                let t = Instant::now();
                sh(
                    dir.path(),
                    &format!("{name} clone -q {flag} '{url}' '{}'", dest.display()),
                );
                times.push(t.elapsed());
            }
        }
        let (o, l, w) = (median(ours), median(local), median(wire));
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        println!(
            "{name:<3} second checkout, 2,000 commits: hgauto {:>7.1} ms | {name} clone (hard links) {:>7.1} ms, ratio {:.2}x | {name} clone {wire_flag} {:>7.1} ms, ratio {:.2}x",
            ms(o),
            ms(l),
            ms(o) / ms(l),
            ms(w),
            ms(o) / ms(w)
        );
    }
}
