//! The main demo: a release pipeline end to end on the embedded local backend.
//!
//! It runs `examples/release.pipeline.toml` with the pipeline engine: one worker per
//! variant is provisioned on demand, the sample project (`examples/sample-project`) is
//! synced there, built and tested (output streamed, prefixed by task), the tarballs are
//! collected, and the `release` step publishes them with [`Release`]: every variant's
//! tarball must be there, then they go to a local directory with a `SHA256SUMS` (signed
//! with `--sign KEY`, a minisign secret key). It writes the result tree (`result.json`), an
//! HTML report and one log per worker, and prints a summary. The exit code is 1 if any
//! step failed.
//!
//! ```text
//! cargo run --example release
//! cargo run --example release -- --break debug   # see how a failing step is reported
//! cargo run --example release -- --sign ~/.minisign/release.key
//! ```
//!
//! Running it twice publishes nothing the second time: the builds are reproducible and
//! publishing is idempotent.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

use hgauto::pipeline::{PipelineFile, RunResult, Runner, StepFailure, StepFn, TaskState};
use hgauto::release::{Release, ReleaseReport, SigningKey, Status as ReleaseStatus};
use hgauto::{DirPublisher, LocalProvider, Publisher, Stream};

const USAGE: &str = "\
Build, test and publish the sample project on two local machines.

Usage: release [--out DIR] [--state-dir DIR] [--break VARIANT] [--sign KEY]

  --out DIR          where the result tree, the report, logs, artifacts and dist/ go
                     (default: target/hgauto-demo)
  --state-dir DIR    hgauto's state directory (ledger, sandboxes); default:
                     $HGAUTO_STATE_DIR or ~/.hgauto
  --break VARIANT    make this variant's tests fail, to see how failures are reported
  --sign KEY         sign SHA256SUMS and every tarball with this minisign secret key
                     (mode 0600; `minisign -G -W` makes one without a password)
";

/// The demo's flags (a hand parser: the demo builds no argument-parsing crate).
#[derive(Debug)]
struct Args {
    out: PathBuf,
    state_dir: Option<PathBuf>,
    r#break: Option<String>,
    sign: Option<PathBuf>,
}

impl Args {
    fn parse() -> Result<Args, String> {
        let mut args = Args {
            out: PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/target/hgauto-demo")),
            state_dir: None,
            r#break: None,
            sign: None,
        };
        let mut it = std::env::args_os().skip(1);
        while let Some(flag) = it.next() {
            let flag = flag.to_string_lossy().into_owned();
            let (name, inline) = match flag.split_once('=') {
                Some((n, v)) => (n.to_owned(), Some(v.into())),
                None => (flag.clone(), None),
            };
            if name == "-h" || name == "--help" {
                print!("{USAGE}");
                std::process::exit(0);
            }
            let value = match inline.or_else(|| it.next()) {
                Some(v) => v,
                None => return Err(format!("{name} needs a value")),
            };
            match name.as_str() {
                "--out" => args.out = value.into(),
                "--state-dir" => args.state_dir = Some(value.into()),
                "--break" => args.r#break = Some(value.to_string_lossy().into_owned()),
                "--sign" => args.sign = Some(value.into()),
                _ => return Err(format!("unknown flag {name:?}")),
            }
        }
        Ok(args)
    }
}

const SAMPLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/sample-project");
const PIPELINE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/examples/release.pipeline.toml"
);

#[tokio::main]
async fn main() -> std::process::ExitCode {
    // RUST_LOG as one level (error, warn, info, debug, trace): the demo builds no regex
    // engine for full filter directives.
    let level = std::env::var("RUST_LOG")
        .ok()
        .and_then(|v| v.parse::<tracing_subscriber::filter::LevelFilter>().ok())
        .unwrap_or(tracing_subscriber::filter::LevelFilter::WARN);
    tracing_subscriber::fmt()
        .with_max_level(level)
        .with_writer(std::io::stderr)
        .init();
    let args = match Args::parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("error: {e}\n\n{USAGE}");
            return std::process::ExitCode::from(2);
        }
    };
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
    let provider = Arc::new(match &args.state_dir {
        Some(dir) => LocalProvider::new(dir)?,
        None => LocalProvider::from_env()?,
    });
    let publisher = DirPublisher::new(args.out.join("dist"));
    let released: Arc<Mutex<Option<ReleaseReport>>> = Arc::default();
    let functions: BTreeMap<String, StepFn> = [(
        "release".to_owned(),
        release_step(&args, publisher.clone(), released.clone())?,
    )]
    .into();
    let pipeline = PipelineFile::read(Path::new(PIPELINE))?.into_pipeline(&functions)?;

    let runner = Runner::new(pipeline, &args.out)
        .provider(provider)
        .input("sample", SAMPLE)
        .input("break", args.r#break.clone().unwrap_or_default());
    let progress = ProgressBar::new(runner.plan()?.len() as u64);
    progress.set_style(
        ProgressStyle::with_template("{spinner} [{pos}/{len}] {wide_msg} {elapsed}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    progress.enable_steady_tick(Duration::from_millis(120));
    let (lines, done) = (progress.clone(), progress.clone());
    let result = runner
        .on_line(move |task, stream, line| {
            lines.suspend(|| match stream {
                Stream::Stdout => println!("[{task:>13}] {line}"),
                Stream::Stderr => eprintln!("[{task:>13}] {line}"),
            })
        })
        .on_task(move |task, state, _left| {
            done.inc(1);
            done.set_message(format!("{task}: {state:?}").to_lowercase());
        })
        .run()
        .await?;
    progress.finish_and_clear();
    let report = released.lock().unwrap_or_else(|p| p.into_inner()).take();
    print_summary(&result, report.as_ref(), &args.out, &publisher);
    Ok(result.ok)
}

/// The `release` step: every variant's tarball, collected by the builds, released to the
/// `dist/` directory with SHA256SUMS (and signatures with `--sign`).
fn release_step(
    args: &Args,
    publisher: DirPublisher,
    released: Arc<Mutex<Option<ReleaseReport>>>,
) -> hgauto::Result<StepFn> {
    let staging = args.out.join("staging");
    let key = args.sign.clone();
    let version = std::fs::read_to_string(Path::new(SAMPLE).join("VERSION"))
        .map_err(|e| hgauto::Error::io("read", Path::new(SAMPLE).join("VERSION"), "localhost", e))?
        .trim()
        .to_owned();
    Ok(Arc::new(move |ctx| {
        let (staging, key, version) = (staging.clone(), key.clone(), version.clone());
        let (publisher, released) = (publisher.clone(), released.clone());
        Box::pin(async move {
            fresh_staging(&staging)?;
            for file in ctx.all_artifacts() {
                let name = file.file_name().unwrap_or_default();
                std::fs::copy(&file, staging.join(name))
                    .map_err(|e| hgauto::Error::io("copy", &file, "localhost", e))?;
            }
            let mut release =
                Release::new(&staging).publish_to("dist", Arc::new(publisher), &[])?;
            for variant in ["release", "debug"] {
                release = release.expect(format!("greet-{version}-{variant}.tar.gz"));
            }
            if let Some(key) = &key {
                release = release.sign_with(SigningKey::from_file(key, None)?);
            }
            let report = release.run().await?;
            let failure = report.failures().next().map(|f| {
                format!(
                    "publishing {} to {}: {}",
                    f.artifact,
                    f.destination,
                    f.error.clone().unwrap_or_default()
                )
            });
            let published = report.with_status(ReleaseStatus::Published).count();
            *released.lock().unwrap_or_else(|p| p.into_inner()) = Some(report);
            match failure {
                Some(f) => Err(StepFailure::fatal(f)),
                None => Ok([("published".to_owned(), published.to_string())].into()),
            }
        })
    }))
}

/// The directory builds are gathered in for the release, emptied of everything but
/// signatures: a tarball from an earlier run must not be released as this run's, while a
/// signature that still verifies for this run's (reproducible) tarball is reused, so that a
/// re-run publishes the same `.minisig` as before instead of conflicting with it.
fn fresh_staging(dir: &Path) -> hgauto::Result<()> {
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
    Ok(())
}

fn print_summary(
    result: &RunResult,
    report: Option<&ReleaseReport>,
    out: &Path,
    publisher: &DirPublisher,
) {
    println!(
        "\n{:<16} {:<22} {:<10} {:>8} {:>9}",
        "task", "machine", "status", "time", "attempts"
    );
    for t in result.tasks() {
        println!(
            "{:<16} {:<22} {:<10} {:>7.1}s {:>9}",
            t.task,
            t.machine.as_deref().unwrap_or("-"),
            format!("{:?}", t.state).to_lowercase(),
            t.elapsed_ms as f64 / 1000.0,
            t.attempts
        );
    }
    println!();
    if let Some(report) = report {
        for a in &report.artifacts {
            let status = report
                .entries
                .iter()
                .find(|e| e.artifact == a.name)
                .map(|e| e.status);
            let state = match status {
                Some(ReleaseStatus::Published) => "published",
                Some(ReleaseStatus::AlreadyPresent) => "already present",
                _ => "not published",
            };
            println!("{}  {}  ({state})", &a.sha256[..16], a.name);
        }
    }
    println!("destination: {}", publisher.name());
    println!("results:     {}", out.join("result.json").display());
    println!("report:      {}", out.join("report.html").display());
    if result.ok {
        println!("release OK in {:.1}s", result.elapsed_ms as f64 / 1000.0);
    } else {
        println!("release FAILED: {}", result.failure_summary());
        let skipped = result.tasks().filter(|t| t.state == TaskState::Skipped);
        for t in skipped {
            println!(
                "  skipped {}: {}",
                t.task,
                t.reason.as_deref().unwrap_or("")
            );
        }
    }
}
