//! What a pipeline publishes about itself: the JSON schemas in `schemas/` and the HTML report,
//! rendered in Chromium.

use std::path::{Path, PathBuf};

use hgauto_pipeline::{PipelineFile, RunResult};

mod common;
use common::*;

#[test]
fn published_schemas_match_the_code() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../schemas");
    for (file, schema) in [
        ("pipeline.schema.json", PipelineFile::json_schema()),
        ("pipeline-result.schema.json", RunResult::json_schema()),
    ] {
        let path = root.join(file);
        let text = hgauto_pipeline::canonical_json(&schema);
        if std::env::var_os("HGAUTO_UPDATE_GOLDEN").is_some() {
            std::fs::write(&path, &text).unwrap();
        }
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        assert_eq!(
            committed,
            text,
            "{} is stale: run with HGAUTO_UPDATE_GOLDEN=1",
            path.display()
        );
    }
}

/// The report opened in headless Chromium: every task's cell is in the DOM with its state.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn html_report_renders_every_cell_in_chromium() {
    let Some(chromium) = ["chromium", "chromium-browser"]
        .into_iter()
        .find(|c| which(c))
    else {
        eprintln!("SKIPPED: chromium is not installed (./scripts/test-all installs it)");
        return;
    };
    let f = fixture();
    let result = runner(&f, matrix(&f))
        .input("fail_build", "3.2-fedora")
        .run()
        .await
        .unwrap();
    let report = f.out.join("report.html");
    let out = std::process::Command::new(chromium)
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--dump-dom"])
        .arg(format!("file://{}", report.display()))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dom = String::from_utf8_lossy(&out.stdout);
    for t in result.tasks() {
        let state = format!("{:?}", t.state).to_lowercase();
        let needle = format!("data-task=\"{}\" data-state=\"{state}\"", t.task);
        assert!(dom.contains(&needle), "no {needle} in the DOM");
    }
    assert!(dom.contains("needs build-3.2-fedora, which failed"));
    if let Some(shot) = std::env::var_os("HGAUTO_REPORT_SCREENSHOT") {
        let status = std::process::Command::new(chromium)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--hide-scrollbars",
                "--window-size=1100,1400",
            ])
            .arg(format!("--screenshot={}", PathBuf::from(shot).display()))
            .arg(format!("file://{}", report.display()))
            .status()
            .unwrap();
        assert!(status.success());
    }
}

fn which(program: &str) -> bool {
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(program).is_file()))
        .unwrap_or(false)
}
