//! Output: logging levels, `--json` documents, and progress bars that only draw on a
//! terminal.

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;

/// The `hgauto` field of every JSON document: bumped when a document's shape changes.
pub(super) const JSON_VERSION: u32 = 1;

/// `-q` shows errors only, the default warnings, `-v` info, `-vv` debug (`RUST_LOG` wins).
pub(super) fn init_logging(quiet: bool, verbose: u8) {
    let level = match (quiet, verbose) {
        (true, _) => "error",
        (false, 0) => "warn",
        (false, 1) => "info",
        _ => "debug",
    };
    let filter =
        tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| level.into());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

/// Prints `{"hgauto": 1, "command": command, ...data}` on one line.
pub(super) fn print_json(command: &str, data: &impl Serialize) {
    let mut doc = serde_json::json!({"hgauto": JSON_VERSION, "command": command});
    if let (Some(d), Ok(serde_json::Value::Object(extra))) =
        (doc.as_object_mut(), serde_json::to_value(data))
    {
        d.extend(extra);
    }
    println!("{doc}");
}

/// `bar` drawn with `template` when stderr is a terminal and output is not JSON or quiet;
/// hidden otherwise.
fn drawn(bar: ProgressBar, json: bool, quiet: bool, template: &str) -> ProgressBar {
    if json || quiet || !std::io::stderr().is_terminal() {
        bar.set_draw_target(ProgressDrawTarget::hidden());
    } else {
        bar.set_style(
            ProgressStyle::with_template(template)
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        bar.enable_steady_tick(Duration::from_millis(120));
    }
    bar
}

/// A spinner with a message (see [`drawn`]).
pub(super) fn spinner(json: bool, quiet: bool, message: impl Into<String>) -> ProgressBar {
    let bar = drawn(
        ProgressBar::new_spinner(),
        json,
        quiet,
        "{spinner} {wide_msg} {elapsed}",
    );
    bar.set_message(message.into());
    bar
}

/// A bar of `len` steps (see [`drawn`]).
pub(super) fn bar(json: bool, quiet: bool, len: u64) -> ProgressBar {
    drawn(
        ProgressBar::new(len),
        json,
        quiet,
        "{spinner} [{pos}/{len}] {wide_msg} {elapsed}",
    )
}

/// Runs a pipeline of `tasks` tasks (the length of the caller's [`Runner::plan`], which
/// checked the run before any machine) with a bar of its tasks and every output line
/// printed, prefixed by its task (none with `--json`).
///
/// [`Runner::plan`]: hgauto_pipeline::Runner::plan
pub(super) async fn run_pipeline(
    runner: hgauto_pipeline::Runner,
    tasks: usize,
    json: bool,
    quiet: bool,
) -> hgauto_core::Result<hgauto_pipeline::RunResult> {
    let progress = bar(json, quiet, tasks as u64);
    let (lines, done) = (progress.clone(), progress.clone());
    let result = runner
        .on_line(move |task, stream, line| {
            if !json {
                lines.suspend(|| match stream {
                    hgauto_core::Stream::Stdout => println!("[{task}] {line}"),
                    hgauto_core::Stream::Stderr => eprintln!("[{task}] {line}"),
                });
            }
        })
        .on_task(move |task, state, _| {
            done.inc(1);
            done.set_message(format!("{task}: {state}"));
        })
        .run()
        .await;
    progress.finish_and_clear();
    result
}
