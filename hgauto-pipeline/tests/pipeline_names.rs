//! Task names: values that contain `-` no longer collide (run on the local provider, each
//! cell's artifact survives), names that differ only by case are refused at plan time,
//! long names are capped with a hash, a step may be called `Succeeded`, and exported state
//! machines pass a real ASL validator (`statelint`) with unique names of at most 80
//! characters.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use hgauto_core::{Error, LocalProvider, MachineSpec};
use hgauto_pipeline::asl::{definition, Activities};
use hgauto_pipeline::{Pipeline, Runner, Selection, Step, StepCommand, WorkerKind};

fn worker() -> WorkerKind {
    WorkerKind::new(MachineSpec::linux()).max_workers(2)
}

/// A step that writes its cell to `out/cell.txt` and collects it.
fn build() -> Step {
    Step::command(
        "build",
        "w",
        StepCommand::argv([
            "sh",
            "-c",
            "mkdir -p out && echo \"$1/$2\" > out/cell.txt",
            "sh",
            "{d1}",
            "{d2}",
        ]),
    )
    .over(["d1", "d2"])
    .collect("out/cell.txt")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn values_with_dashes_give_every_cell_its_own_task_and_artifacts() {
    let dir = tempfile::tempdir().unwrap();
    let p = Pipeline::builder("dashes")
        .dimension("d1", ["x", "x-y"])
        .dimension("d2", ["y-z", "z"])
        .worker("w", worker())
        .step(build())
        .build()
        .unwrap();
    let provider = Arc::new(LocalProvider::new(dir.path().join("state")).unwrap());
    let out = dir.path().join("out");
    let result = Runner::new(p, &out)
        .provider(provider)
        .health_check(Duration::from_millis(50))
        .run()
        .await
        .unwrap();
    assert!(result.ok, "{:?}", result.failures);
    let tasks: BTreeSet<String> = result.steps[0]
        .cells
        .iter()
        .map(|t| t.task.clone())
        .collect();
    let want: BTreeSet<String> = [
        "build-x-y--z",
        "build-x-z",
        "build-x--y-y--z",
        "build-x--y-z",
    ]
    .map(String::from)
    .into();
    assert_eq!(tasks, want);
    for t in &result.steps[0].cells {
        let text = std::fs::read_to_string(out.join("artifacts").join(&t.task).join("cell.txt"))
            .unwrap_or_else(|e| panic!("{}: {e}", t.task));
        let cell = format!(
            "{}/{}",
            t.cell.get("d1").unwrap(),
            t.cell.get("d2").unwrap()
        );
        assert_eq!(text.trim(), cell, "{}", t.task);
    }
}

fn plan_error(p: Pipeline) -> String {
    match Runner::new(p, "/nonexistent").plan() {
        Err(e @ Error::InvalidInput { .. }) => e.to_string(),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[test]
fn names_that_clash_without_case_are_refused_at_plan_time() {
    let by_case = Pipeline::builder("case")
        .dimension("d1", ["Debian", "debian"])
        .dimension("d2", ["z"])
        .worker("w", worker())
        .step(build())
        .build()
        .unwrap();
    let e = plan_error(by_case);
    assert!(
        e.contains("build-Debian-z") && e.contains("build-debian-z"),
        "{e}"
    );
    let step_vs_cell = Pipeline::builder("steps")
        .dimension("d1", ["b"])
        .dimension("d2", ["c"])
        .worker("w", worker())
        .step(build())
        .step(Step::command("build-b-c", "w", StepCommand::argv(["true"])))
        .build()
        .unwrap();
    let e = plan_error(step_vs_cell);
    assert!(
        e.contains("\"build-b-c\"") && e.contains("without case"),
        "{e}"
    );
}

/// Every state name in a definition, nested branches included.
fn state_names(def: &Value, out: &mut Vec<String>) {
    if let Some(states) = def.get("States").and_then(Value::as_object) {
        for (name, state) in states {
            out.push(name.clone());
            for b in state
                .get("Branches")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                state_names(b, out);
            }
        }
    }
}

/// Exports `p`, checks its state names are unique and fit Step Functions' 80, and runs
/// statelint on it.
fn export_and_lint(p: &Pipeline) -> Vec<String> {
    let a = Activities::named(p, "arn:aws:states:eu-west-1:123456789012:activity:");
    let def = definition(p, &a, &Selection::all(), Duration::from_secs(60)).unwrap();
    let mut names = Vec::new();
    state_names(&def, &mut names);
    let unique: BTreeSet<&String> = names.iter().collect();
    assert_eq!(unique.len(), names.len(), "a state name repeats");
    let longest = names.iter().max_by_key(|n| n.chars().count()).unwrap();
    assert!(
        longest.chars().count() <= 80,
        "{longest:?} is over 80 characters"
    );
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), serde_json::to_vec_pretty(&def).unwrap()).unwrap();
    let lint = std::process::Command::new("statelint")
        .arg(file.path())
        .output()
        .expect("statelint (from tests/requirements.txt, installed by scripts/test-all)");
    assert!(
        lint.status.success(),
        "statelint: {}{}",
        String::from_utf8_lossy(&lint.stdout),
        String::from_utf8_lossy(&lint.stderr)
    );
    names
}

#[test]
fn an_18_cell_matrix_exports_valid_asl_with_names_that_fit() {
    let platforms = [
        "ubuntu-22.04-x86_64-large",
        "debian-12-aarch64-graviton",
        "windows-2022-x86_64-msvc",
    ];
    let p = Pipeline::builder("wheels-for-every-platform-and-python")
        .dimension("platform", platforms)
        .dimension("python", ["cpython-3.11", "cpython-3.12", "cpython-3.13"])
        .dimension(
            "flavour",
            ["release-with-debug-info", "minimal-size-optimised"],
        )
        .worker("w", worker())
        .step(
            Step::command(
                "build-wheel-and-run-tests",
                "w",
                StepCommand::argv(["true"]),
            )
            .over(["platform", "python", "flavour"]),
        )
        .step(
            Step::command("publish", "w", StepCommand::argv(["true"]))
                .needs(["build-wheel-and-run-tests"]),
        )
        .build()
        .unwrap();
    let tasks = Runner::new(p.clone(), "/nonexistent").plan().unwrap();
    assert_eq!(tasks.len(), 19);
    assert!(tasks.iter().all(|t| t.len() <= 64), "{tasks:?}");
    let unique: BTreeSet<&String> = tasks.iter().collect();
    assert_eq!(unique.len(), 19, "capped names stay distinct");
    export_and_lint(&p);
}

#[test]
fn a_step_named_like_the_exports_own_states_does_not_clash() {
    let mut p = Pipeline::builder("tail").worker("w", worker());
    for name in [
        "Succeeded",
        "Failed",
        "Pipeline",
        "NormalizeResults",
        "CheckForFailures",
    ] {
        p = p.step(Step::command(name, "w", StepCommand::argv(["true"])));
    }
    let names = export_and_lint(&p.build().unwrap());
    assert!(names.contains(&"Succeeded".to_owned()), "{names:?}");
}

#[test]
fn the_readmes_pipeline_exports_valid_asl() {
    let file =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/release.pipeline.toml");
    let p = hgauto_pipeline::PipelineFile::read(&file)
        .unwrap()
        .into_exportable_pipeline()
        .unwrap();
    export_and_lint(&p);
}
