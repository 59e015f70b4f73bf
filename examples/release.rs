//! The main demo: a release run end to end on the embedded local backend.
//!
//! It provisions two machines, pushes the sample project (`examples/sample-project`) to
//! both, builds and tests one variant on each in parallel (output streamed, prefixed by
//! machine), collects the built tarballs, and releases them with [`Release`]: every
//! expected tarball must be there, then they are published to a local directory with a
//! `SHA256SUMS` (signed with `--sign KEY`, a minisign secret key). It writes a results JSON
//! and prints a summary. The exit code is 1 if any step failed.
//!
//! ```text
//! cargo run --example release
//! cargo run --example release -- --break debug   # see how a failing step is reported
//! cargo run --example release -- --sign ~/.minisign/release.key
//! ```
//!
//! Running it twice publishes nothing the second time: the builds are reproducible and
//! publishing is idempotent.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;

use hgauto::release::{Release, ReleaseReport, SigningKey, Status as ReleaseStatus};
use hgauto::{
    Artifact, Command, DirPublisher, LocalProvider, MachineSpec, Publisher, RemoteMachine, Stream,
    SyncOptions, TemporaryMachines,
};

/// Build, test and publish the sample project on two local machines.
#[derive(Debug, Parser)]
struct Args {
    /// Where artifacts (`dist/`) and `results.json` go.
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/target/hgauto-demo"))]
    out: PathBuf,
    /// hgauto's state directory (ledger, sandboxes). Default: $HGAUTO_STATE_DIR or ~/.hgauto.
    #[arg(long)]
    state_dir: Option<PathBuf>,
    /// Make this variant's tests fail, to see how failures are reported.
    #[arg(long, value_name = "VARIANT")]
    r#break: Option<String>,
    /// Sign SHA256SUMS and every tarball with this minisign secret key (mode 0600;
    /// `minisign -G -W` makes one without a password).
    #[arg(long, value_name = "KEY")]
    sign: Option<PathBuf>,
}

const VARIANTS: [&str; 2] = ["release", "debug"];
const SAMPLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/sample-project");

/// One step's entry in the results JSON.
#[derive(Debug, Clone, Serialize)]
struct StepResult {
    step: String,
    machine: Option<String>,
    variant: Option<String>,
    status: Status,
    elapsed_ms: u128,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "lowercase")]
enum Status {
    Succeeded,
    Failed,
    Skipped,
}

#[derive(Debug, Serialize)]
struct Results {
    ok: bool,
    elapsed_ms: u128,
    steps: Vec<StepResult>,
    published: Vec<String>,
    already_present: Vec<String>,
    artifacts: Vec<Artifact>,
    #[serde(skip_serializing_if = "Option::is_none")]
    release: Option<ReleaseReport>,
}

/// Runs `f` as a named step, timing it and recording its outcome.
async fn step<T, F>(
    name: &str,
    machine: Option<&dyn RemoteMachine>,
    variant: Option<&str>,
    progress: &ProgressBar,
    f: F,
) -> (StepResult, Option<T>)
where
    F: std::future::Future<Output = hgauto::Result<T>>,
{
    let label = match (machine, variant) {
        (Some(m), Some(v)) => format!("{name} on {} ({v})", m.id()),
        _ => name.to_owned(),
    };
    progress.set_message(label.clone());
    let started = Instant::now();
    let outcome = f.await;
    progress.inc(1);
    let (status, error, value) = match outcome {
        Ok(v) => (Status::Succeeded, None, Some(v)),
        Err(e) => {
            progress.suspend(|| eprintln!("✗ {label}: {e}"));
            (Status::Failed, Some(e.to_string()), None)
        }
    };
    let result = StepResult {
        step: name.to_owned(),
        machine: machine.map(|m| m.id().to_owned()),
        variant: variant.map(str::to_owned),
        status,
        elapsed_ms: started.elapsed().as_millis(),
        error,
    };
    (result, value)
}

fn skipped(
    name: &str,
    machine: &dyn RemoteMachine,
    variant: &str,
    progress: &ProgressBar,
) -> StepResult {
    progress.inc(1);
    StepResult {
        step: name.to_owned(),
        machine: Some(machine.id().to_owned()),
        variant: Some(variant.to_owned()),
        status: Status::Skipped,
        elapsed_ms: 0,
        error: None,
    }
}

/// Sync, build+test, collect on one machine. Returns its step results and artifact.
async fn build_on(
    machine: Arc<dyn RemoteMachine>,
    variant: &'static str,
    staging: PathBuf,
    broken: bool,
    progress: ProgressBar,
) -> (Vec<StepResult>, Option<Artifact>) {
    let m = machine.as_ref();
    let mut steps = Vec::new();
    let (r, synced) = step("sync", Some(m), Some(variant), &progress, async {
        m.sync_tree(
            Path::new(SAMPLE),
            "src",
            &SyncOptions {
                delete: true,
                compress: false,
            },
        )
        .await
    })
    .await;
    steps.push(r);
    if synced.is_none() {
        steps.push(skipped("build+test", m, variant, &progress));
        steps.push(skipped("collect", m, variant, &progress));
        return (steps, None);
    }

    let prefix = format!("[{} {variant:>7}]", m.id());
    let sink = |stream: Stream, line: &[u8]| {
        let line = String::from_utf8_lossy(line);
        progress.suspend(|| match stream {
            Stream::Stdout => println!("{prefix} {line}"),
            Stream::Stderr => eprintln!("{prefix} {line}"),
        });
    };
    let mut make = Command::new("make")
        .args(["dist", &format!("VARIANT={variant}")])
        .current_dir("src")
        .timeout(Duration::from_secs(600));
    if broken {
        make = make.env("GREET_BREAK_TESTS", "1");
    }
    let (r, built) = step("build+test", Some(m), Some(variant), &progress, async {
        let out = m.exec_streaming(&make, &sink).await?;
        out.check(m.id(), &make)?;
        Ok(())
    })
    .await;
    steps.push(r);
    if built.is_none() {
        steps.push(skipped("collect", m, variant, &progress));
        return (steps, None);
    }

    let version = std::fs::read_to_string(Path::new(SAMPLE).join("VERSION")).unwrap_or_default();
    let name = format!("greet-{}-{variant}.tar.gz", version.trim());
    let (r, artifact) = step("collect", Some(m), Some(variant), &progress, async {
        let local = staging.join(&name);
        m.get(&format!("src/dist/{name}"), &local).await?;
        Artifact::from_file(&local)
    })
    .await;
    steps.push(r);
    (steps, artifact)
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    match run(args).await {
        Ok(true) => std::process::ExitCode::SUCCESS,
        Ok(false) => std::process::ExitCode::FAILURE,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> hgauto::Result<bool> {
    let started = Instant::now();
    let provider = Arc::new(match &args.state_dir {
        Some(dir) => LocalProvider::new(dir)?,
        None => LocalProvider::from_env()?,
    });
    let staging = fresh_staging(&args.out.join("staging"))?;
    let progress = ProgressBar::new((VARIANTS.len() * 3 + 3) as u64);
    progress.set_style(
        ProgressStyle::with_template("{spinner} [{pos}/{len}] {wide_msg} {elapsed}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    progress.enable_steady_tick(Duration::from_millis(120));

    let spec = MachineSpec::linux().with_label("purpose", "release-demo");
    // The guard terminates the machines on every exit path: error, panic, Ctrl-C.
    let (r, guard) = step("provision", None, None, &progress, async {
        TemporaryMachines::provision(provider, &spec, VARIANTS.len()).await
    })
    .await;
    let mut steps = vec![r];
    let Some(guard) = guard else {
        progress.finish_and_clear();
        return Ok(false);
    };
    progress.suspend(|| {
        for (m, v) in guard.machines().iter().zip(VARIANTS) {
            println!("machine {} builds the {v} variant", m.id());
        }
    });
    let jobs = guard.machines().iter().zip(VARIANTS).map(|(m, v)| {
        let broken = args.r#break.as_deref() == Some(v);
        tokio::spawn(build_on(
            m.clone(),
            v,
            staging.clone(),
            broken,
            progress.clone(),
        ))
    });
    let mut artifacts = Vec::new();
    for joined in futures::future::join_all(jobs).await {
        let (s, a) = joined.map_err(|e| hgauto::Error::invalid("build task", e.to_string()))?;
        steps.extend(s);
        artifacts.extend(a);
    }
    let (r, _) = step("terminate", None, None, &progress, guard.terminate()).await;
    steps.push(r);

    let publisher = DirPublisher::new(args.out.join("dist"));
    let (r, report) = step("publish", None, None, &progress, async {
        // Every variant's tarball must be there, or nothing is published.
        let version = std::fs::read_to_string(Path::new(SAMPLE).join("VERSION")).map_err(|e| {
            hgauto::Error::io("read", Path::new(SAMPLE).join("VERSION"), "localhost", e)
        })?;
        let mut release =
            Release::new(&staging).publish_to("dist", Arc::new(publisher.clone()), &[])?;
        for v in VARIANTS {
            release = release.expect(format!("greet-{}-{v}.tar.gz", version.trim()));
        }
        if let Some(key) = &args.sign {
            release = release.sign_with(SigningKey::from_file(key, None)?);
        }
        let report = release.run().await?;
        let failure = report.failures().next().map(|f| {
            hgauto::Error::invalid(
                format!("publishing {} to {}", f.artifact, f.destination),
                f.error.clone().unwrap_or_default(),
            )
        });
        failure.map_or(Ok(report), Err)
    })
    .await;
    steps.push(r);
    progress.finish_and_clear();

    let names = |status| {
        report
            .iter()
            .flat_map(|r| r.with_status(status))
            .map(|e| e.artifact.clone())
            .collect::<Vec<_>>()
    };
    let ok = steps.iter().all(|s| s.status == Status::Succeeded);
    let results = Results {
        ok,
        elapsed_ms: started.elapsed().as_millis(),
        steps,
        published: names(ReleaseStatus::Published),
        already_present: names(ReleaseStatus::AlreadyPresent),
        artifacts: report
            .as_ref()
            .map(|r| r.artifacts.clone())
            .unwrap_or(artifacts),
        release: report,
    };
    let json = serde_json::to_vec_pretty(&results)
        .map_err(|e| hgauto::Error::invalid("results", e.to_string()))?;
    std::fs::create_dir_all(&args.out)
        .map_err(|e| hgauto::Error::io("create", &args.out, "localhost", e))?;
    hgauto::ledger::write_atomic(&args.out.join("results.json"), &json)?;
    print_summary(&results, &args.out, &publisher);
    Ok(ok)
}

/// The directory builds are collected into, emptied of everything but signatures: a
/// tarball from an earlier run must not be released as this run's, while a signature that
/// still verifies for this run's (reproducible) tarball is reused, so that a re-run
/// publishes the same `.minisig` as before instead of conflicting with it.
fn fresh_staging(dir: &Path) -> hgauto::Result<PathBuf> {
    std::fs::create_dir_all(dir).map_err(|e| hgauto::Error::io("create", dir, "localhost", e))?;
    let entries =
        std::fs::read_dir(dir).map_err(|e| hgauto::Error::io("list", dir, "localhost", e))?;
    for entry in entries.flatten() {
        let keep = entry
            .file_name()
            .to_str()
            .is_some_and(|n| n.ends_with(hgauto::release::SIGNATURE_SUFFIX));
        if !keep {
            std::fs::remove_file(entry.path())
                .map_err(|e| hgauto::Error::io("remove", entry.path(), "localhost", e))?;
        }
    }
    Ok(dir.to_owned())
}

fn print_summary(results: &Results, out: &Path, publisher: &DirPublisher) {
    println!(
        "\n{:<12} {:<22} {:<8} {:<10} {:>8}",
        "step", "machine", "variant", "status", "time"
    );
    for s in &results.steps {
        println!(
            "{:<12} {:<22} {:<8} {:<10} {:>7.1}s",
            s.step,
            s.machine.as_deref().unwrap_or("-"),
            s.variant.as_deref().unwrap_or("-"),
            format!("{:?}", s.status).to_lowercase(),
            s.elapsed_ms as f64 / 1000.0
        );
    }
    println!();
    for a in &results.artifacts {
        let state = if results.published.contains(&a.name) {
            "published"
        } else if results.already_present.contains(&a.name) {
            "already present"
        } else {
            "not published"
        };
        println!("{}  {}  ({state})", &a.sha256[..16], a.name);
    }
    println!("destination: {}", publisher.destination());
    println!("results:     {}", out.join("results.json").display());
    let failed: Vec<&StepResult> = results
        .steps
        .iter()
        .filter(|s| s.status == Status::Failed)
        .collect();
    if failed.is_empty() {
        println!("release OK in {:.1}s", results.elapsed_ms as f64 / 1000.0);
    } else {
        println!("release FAILED: {} step(s) failed", failed.len());
        for s in failed {
            println!(
                "  - {} on {}: {}",
                s.step,
                s.machine.as_deref().unwrap_or("-"),
                s.error.as_deref().unwrap_or("")
            );
        }
    }
}
