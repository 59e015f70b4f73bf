//! Pipeline modes and definitions on the local provider: the fake and local modes, bad input
//! refused before any machine exists, and a TOML pipeline with registered functions.

use std::sync::Arc;

use hgauto_core::{MachineSpec, ResourceProvider};
use hgauto_pipeline::{
    Mode, Pipeline, PipelineFile, Runner, Selection, Step, StepCommand, TaskState, WorkerKind,
};

mod common;
use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fake_mode_runs_dummy_bodies_on_real_workers_without_skips() {
    let f = fixture();
    // Publish everything once, so a normal run would skip; fake mode must not.
    assert!(runner(&f, matrix(&f)).run().await.unwrap().ok);
    let fake = runner(&f, matrix(&f))
        .mode(Mode::Fake)
        .input("fail_build", "3.1-debian")
        .run()
        .await
        .unwrap();
    assert!(fake.ok, "{}", fake.failure_summary());
    assert_eq!(fake.count(TaskState::Succeeded), 27);
    assert!(
        fake.workers.iter().any(|w| w.kind == "builder"),
        "real workers ran the dummy bodies"
    );
    let build = fake.task("build-3.2-debian").unwrap();
    assert!(build.artifacts.is_empty() && build.outputs.is_empty());
    no_machines_left(&f.provider).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_mode_needs_no_provider_and_ignores_worker_specs() {
    let f = fixture();
    let p = Pipeline::builder("local")
        .dimension("arch", ["x86", "x64"])
        .worker(
            "win",
            WorkerKind::new(MachineSpec::windows().with_instance_type("c5.4xlarge")),
        )
        .step(
            Step::command(
                "build",
                "win",
                StepCommand::argv(["sh", "-c", "echo arch=$0 >> \"$HGAUTO_OUTPUT\"", "{arch}"]),
            )
            .over(["arch"]),
        )
        .build()
        .unwrap();
    let result = Runner::new(p, &f.out)
        .mode(Mode::Local)
        .state_dir(&f.state)
        .run()
        .await
        .unwrap();
    assert!(result.ok, "{}", result.failure_summary());
    assert_eq!(
        result
            .task("build-x64")
            .unwrap()
            .outputs
            .get("arch")
            .map(String::as_str),
        Some("x64")
    );
    assert_eq!(result.mode, Mode::Local);
    no_machines_left(&f.provider).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_fails_before_any_machine() {
    let f = fixture();
    let echo = || StepCommand::argv(["true"]);
    let cycle = Pipeline::builder("cycle")
        .worker("w", WorkerKind::new(MachineSpec::linux()))
        .step(Step::command("a", "w", echo()).needs(["c"]))
        .step(Step::command("b", "w", echo()).needs(["a"]))
        .step(Step::command("c", "w", echo()).needs(["b"]))
        .build()
        .unwrap_err()
        .to_string();
    assert!(
        cycle.contains("dependency cycle: a -> c -> b -> a"),
        "{cycle}"
    );

    let unknown = runner(&f, matrix(&f))
        .selection(Selection::all().steps(["biuld"]))
        .run()
        .await
        .unwrap_err()
        .to_string();
    assert!(
        unknown.contains("unknown step \"biuld\"") && unknown.contains("did you mean \"build\"?"),
        "{unknown}"
    );
    let value = runner(&f, matrix(&f))
        .selection(Selection::all().only("version", ["4.0"]))
        .run()
        .await
        .unwrap_err()
        .to_string();
    assert!(
        value.contains("dimension \"version\" has no value \"4.0\""),
        "{value}"
    );

    let toml = "name = \"p\"\n[[steps]]\nname = \"a\"\nworker = \"w\"\nrun = [\"true\"]\ntimeout_sec = 5\n";
    let e = PipelineFile::from_toml(toml).unwrap_err().to_string();
    assert!(
        e.contains("unknown field `timeout_sec`")
            && e.contains("did you mean \"timeout_secs\"?")
            && e.contains("line 6"),
        "{e}"
    );

    // A placeholder no cell or input fills.
    let p = Pipeline::builder("tpl")
        .worker("w", WorkerKind::new(MachineSpec::linux()))
        .step(Step::command(
            "a",
            "w",
            StepCommand::argv(["echo", "{verison}"]),
        ))
        .build()
        .unwrap();
    let e = runner(&f, p).run().await.unwrap_err().to_string();
    assert!(e.contains("unknown placeholder {verison}"), "{e}");
    assert!(
        f.provider.list_managed().await.unwrap().is_empty(),
        "nothing was provisioned"
    );
    assert!(!f.out.join("result.json").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn toml_pipeline_runs_with_registered_functions() {
    let f = fixture();
    let toml = r#"
name = "from-toml"
[dimensions]
py = ["3.12", "3.11"]
[workers.linux]
max_workers = 2
[[steps]]
name = "wheel"
worker = "linux"
over = ["py"]
kind = { max_retries = 1, base_delay_secs = 0.01 }
run = ["sh", "-c", "mkdir -p out && echo wheel > out/w-$0.whl", "{py}"]
collect = ["out/*.whl"]
[[steps]]
name = "notify"
needs = ["wheel"]
function = "notify"
"#;
    let notify: hgauto_pipeline::StepFn = Arc::new(|ctx| {
        Box::pin(async move {
            let names: Vec<String> = ctx
                .all_artifacts()
                .iter()
                .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
                .collect();
            Ok([("files".to_owned(), names.join(","))].into())
        })
    });
    let p = PipelineFile::from_toml(toml)
        .unwrap()
        .into_pipeline(&[("notify".to_owned(), notify)].into())
        .unwrap();
    let result = runner(&f, p).run().await.unwrap();
    assert!(result.ok, "{}", result.failure_summary());
    // Dimension order is the document's: 3.12 before 3.11.
    let tasks: Vec<&str> = result.tasks().map(|t| t.task.as_str()).collect();
    assert_eq!(tasks, ["wheel-3.12", "wheel-3.11", "notify"]);
    assert_eq!(
        result.task("notify").unwrap().outputs["files"],
        "w-3.11.whl,w-3.12.whl"
    );
}
