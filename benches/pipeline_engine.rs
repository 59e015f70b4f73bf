//! The pipeline engine against GNU make, the DAG runner every release script already has.
//!
//! ```text
//! cargo bench --no-default-features --bench pipeline_engine
//! ```
//!
//! 1. Engine overhead: 10,000 no-op tasks in one pipeline (function bodies, no machine),
//!    twice: 10,000 independent cells of one step, and 100 steps x 100 cells where each
//!    step's cell needs the same cell of the step before; and 10,000 steps in a chain. Goal: under 1 s each. Peer: `make
//!    -j2` over a Makefile with the same targets and edges and empty (`@:`) recipes.
//! 2. Scheduling: 12 cells x (build, test, publish), each a 2 s `sleep` on a worker of the
//!    local provider, at most 4 workers. The bound is the larger of the dependency path
//!    (3 x 2 s) and the work over the workers (36 x 2 s / 4 = 18 s). Goal: within 1.2x of
//!    it. Peer: `make -j4` with the same edges.
//!
//! Medians of 3 for the overhead rows, one run for the scheduling row.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hgauto_core::{LocalProvider, MachineSpec};
use hgauto_pipeline::{Pipeline, Runner, Step, StepCommand, WorkerKind};

fn values(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("c{i}")).collect()
}

fn noop() -> Step {
    Step::function("s", |_| async { Ok(BTreeMap::new()) })
}

/// 10,000 independent cells of one step.
fn wide() -> Pipeline {
    Pipeline::builder("wide")
        .dimension("cell", values(10_000))
        .step(noop().over(["cell"]))
        .build()
        .unwrap()
}

/// 100 steps in a chain, each over the same 100 cells.
fn chain() -> Pipeline {
    let mut b = Pipeline::builder("chain").dimension("cell", values(100));
    for s in 0..100 {
        let mut step =
            Step::function(format!("s{s}"), |_| async { Ok(BTreeMap::new()) }).over(["cell"]);
        if s > 0 {
            step = step.needs([format!("s{}", s - 1)]);
        }
        b = b.step(step);
    }
    b.build().unwrap()
}

/// 10,000 steps in a chain, one task each.
fn long_chain() -> Pipeline {
    let mut b = Pipeline::builder("steps");
    for s in 0..10_000 {
        let mut step = Step::function(format!("s{s}"), |_| async { Ok(BTreeMap::new()) });
        if s > 0 {
            step = step.needs([format!("s{}", s - 1)]);
        }
        b = b.step(step);
    }
    b.build().unwrap()
}

fn long_chain_makefile() -> String {
    let mut m = String::from(".PHONY: all\nall: s9999\n");
    for s in 0..10_000 {
        let dep = if s > 0 {
            format!("s{}", s - 1)
        } else {
            String::new()
        };
        let _ = writeln!(m, ".PHONY: s{s}\ns{s}: {dep}\n\t@:");
    }
    m
}

fn median(mut xs: Vec<Duration>) -> Duration {
    xs.sort();
    xs[xs.len() / 2]
}

async fn engine(p: &Pipeline, out: &Path) -> Duration {
    let t = Instant::now();
    let r = Runner::new(p.clone(), out).run().await.unwrap();
    let took = t.elapsed();
    assert!(r.ok && r.tasks().count() == 10_000);
    took
}

fn make(makefile: &str, jobs: usize, dir: &Path) -> Duration {
    let f = dir.join("Makefile");
    std::fs::write(&f, makefile).unwrap();
    let t = Instant::now();
    let out = Command::new("make")
        .args(["-s", "-f"])
        .arg(&f)
        .arg(format!("-j{jobs}"))
        .current_dir(dir)
        .output()
        .unwrap();
    let took = t.elapsed();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    took
}

fn wide_makefile() -> String {
    let mut m = String::from(".PHONY: all\nall:");
    for c in values(10_000) {
        let _ = write!(m, " s-{c}");
    }
    m.push('\n');
    for c in values(10_000) {
        let _ = writeln!(m, ".PHONY: s-{c}\ns-{c}:\n\t@:");
    }
    m
}

fn chain_makefile() -> String {
    let mut m = String::from(".PHONY: all\nall:");
    for c in values(100) {
        let _ = write!(m, " s99-{c}");
    }
    m.push('\n');
    for s in 0..100 {
        for c in values(100) {
            let dep = if s > 0 {
                format!("s{}-{c}", s - 1)
            } else {
                String::new()
            };
            let _ = writeln!(m, ".PHONY: s{s}-{c}\ns{s}-{c}: {dep}\n\t@:");
        }
    }
    m
}

fn sleep_pipeline() -> Pipeline {
    let sleep = || StepCommand::argv(["sleep", "2"]);
    Pipeline::builder("sched")
        .dimension("cell", values(12))
        .worker("w", WorkerKind::new(MachineSpec::linux()).max_workers(4))
        .step(Step::command("build", "w", sleep()).over(["cell"]))
        .step(
            Step::command("test", "w", sleep())
                .over(["cell"])
                .needs(["build"]),
        )
        .step(
            Step::command("publish", "w", sleep())
                .over(["cell"])
                .needs(["test"]),
        )
        .build()
        .unwrap()
}

fn sleep_makefile() -> String {
    let mut m = String::from(".PHONY: all\nall:");
    for c in values(12) {
        let _ = write!(m, " publish-{c}");
    }
    m.push('\n');
    for c in values(12) {
        let _ = writeln!(m, ".PHONY: build-{c} test-{c} publish-{c}");
        let _ = writeln!(m, "build-{c}:\n\t@sleep 2\ntest-{c}: build-{c}\n\t@sleep 2\npublish-{c}: test-{c}\n\t@sleep 2");
    }
    m
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let dir = tempfile::tempdir().unwrap();
    println!(
        "{:<34} {:>10} {:>10} {:>7}",
        "case", "hgauto", "make", "ratio"
    );
    for (name, p, makefile) in [
        ("10,000 independent no-op tasks", wide(), wide_makefile()),
        ("100 steps x 100 cells, chained", chain(), chain_makefile()),
        (
            "10,000 steps in a chain",
            long_chain(),
            long_chain_makefile(),
        ),
    ] {
        let mut ours = Vec::new();
        let mut theirs = Vec::new();
        for i in 0..3 {
            ours.push(engine(&p, &dir.path().join(format!("out-{i}"))).await);
            theirs.push(make(&makefile, 2, dir.path()));
        }
        let (a, b) = (median(ours), median(theirs));
        println!(
            "{name:<34} {:>9.3}s {:>9.3}s {:>6.2}x",
            a.as_secs_f64(),
            b.as_secs_f64(),
            a.as_secs_f64() / b.as_secs_f64()
        );
    }

    let provider = Arc::new(LocalProvider::new(dir.path().join("state")).unwrap());
    let t = Instant::now();
    let r = Runner::new(sleep_pipeline(), dir.path().join("sched"))
        .provider(provider)
        .run()
        .await
        .unwrap();
    let ours = t.elapsed();
    assert!(r.ok, "{}", r.failure_summary());
    let most = r.workers.len();
    let theirs = make(&sleep_makefile(), 4, dir.path());
    let bound = 18.0f64;
    println!(
        "{:<34} {:>9.2}s {:>9.2}s {:>6.2}x",
        "12 cells x 3 steps of 2 s, 4 workers",
        ours.as_secs_f64(),
        theirs.as_secs_f64(),
        ours.as_secs_f64() / theirs.as_secs_f64()
    );
    println!(
        "scheduling: {:.2}s against a bound of {bound:.0}s (max of the 6 s path and 36 x 2 s / 4 workers): {:.3}x (goal <= 1.2x); {most} workers started",
        ours.as_secs_f64(),
        ours.as_secs_f64() / bound
    );
}
