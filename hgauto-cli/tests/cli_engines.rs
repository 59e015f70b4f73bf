//! The `hgauto` binary's engine commands: `pipeline`, `agent`, `checkout` and `self-update`.

mod common;

use serde_json::Value;

use common::*;

#[test]
fn pipeline_run_status_and_export() {
    let e = Env::new();
    std::fs::write(
        e.path("p.toml"),
        r#"
name = "cli"
[dimensions]
v = ["1", "2"]
[workers.w]
max_workers = 2
[[steps]]
name = "build"
worker = "w"
over = ["v"]
run = ["sh", "-c", "test \"$0\" != \"$1\"", "{v}", "{broken}"]
"#,
    )
    .unwrap();
    let out = e.run(&[
        "--json",
        "pipeline",
        "run",
        "p.toml",
        "--input",
        "broken=none",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(json(&out)["result"]["ok"], true);
    let out = e.run(&[
        "pipeline", "run", "p.toml", "--input", "broken=2", "--out", "bad",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("1 of 2 tasks failed"),
        "{}",
        text(&out.stderr)
    );
    let out = e.run(&["pipeline", "status", "bad/result.json"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stdout).contains("build-2"));
    let out = e.run(&["pipeline", "run", "p.toml", "--only", "v=3"]);
    assert_eq!(out.status.code(), Some(2), "an unknown value is bad input");
    let out = e.run(&[
        "pipeline",
        "export",
        "p.toml",
        "--arn-prefix",
        "arn:aws:states:us-east-1:1:activity:",
    ]);
    assert_eq!(out.status.code(), Some(0));
    let def: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(def["StartAt"], "Pipeline: run");
    assert!(e.local_machines().iter().all(|r| r["exists"] == false));
    // The README's own pipeline, whose function steps the control activity runs: the export
    // does not need them registered.
    let readme = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../examples/release.pipeline.toml"
    );
    let out = e.run(&[
        "pipeline",
        "export",
        readme,
        "--arn-prefix",
        "arn:aws:states:us-east-1:1:activity:",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
}

#[test]
fn agent_runs_one_round_over_a_directory_queue() {
    let e = Env::new();
    let queue = hgauto_core::DirJobSource::new(e.path("queue")).unwrap();
    queue
        .enqueue(hgauto_core::Job::new("job-1", "build").with_revision("abc"))
        .unwrap();
    let out = e.run(&[
        "--json",
        "agent",
        "run",
        "agent",
        "--queue",
        "queue",
        "--rounds",
        "1",
        "--",
        "sh",
        "-c",
        "test \"$HGAUTO_JOB_REVISION\" = abc",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let doc = json(&out);
    assert_eq!(doc["built"][0]["job"], "job-1");
    assert_eq!(doc["built"][0]["status"], "succeeded");
    assert!(e.path("agent/state/status.json").exists());
    assert!(e.local_machines().iter().all(|r| r["exists"] == false));
}

/// `checkout` and `self-update once` on a real git repository.
#[test]
fn checkout_and_self_update_check() {
    let e = Env::new();
    let repo = e.path("repo");
    std::fs::create_dir_all(&repo).unwrap();
    git(&repo, &["init", "-q"]);
    std::fs::write(repo.join("README"), "v1\n").unwrap();
    git(&repo, &["add", "."]);
    git(&repo, &["commit", "-q", "-m", "v1"]);
    let head = git(&repo, &["rev-parse", "HEAD"]);
    let url = format!("file://{}", repo.display());
    let out = e.run(&["--json", "checkout", &url, "wc", "--branch", "main"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(json(&out)["revision"], head.as_str());
    assert_eq!(
        std::fs::read_to_string(e.path("wc/README")).unwrap(),
        "v1\n"
    );

    std::fs::write(
        e.path("update.toml"),
        format!(
            "state_dir = \"{}\"\nquiet_window_secs = 0\n[[repositories]]\nname = \"repo\"\nurl = \"{url}\"\nbranch = \"main\"\nworking_copy = \"{}\"\n",
            e.path("update-state").display(),
            e.path("wc").display()
        ),
    )
    .unwrap();
    let out = e.run(&["--json", "self-update", "once", "update.toml"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(json(&out)["outcome"], "in_sync");
    std::fs::write(
        e.path("bad-update.toml"),
        "state_dir = \"x\"\nrepositorys = []\n",
    )
    .unwrap();
    let out = e.run(&["self-update", "once", "bad-update.toml"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("did you mean \"repositories\""),
        "{}",
        text(&out.stderr)
    );
}
