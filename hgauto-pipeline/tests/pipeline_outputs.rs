//! A step's outputs on a host that is reused (a shared directory, a retried attempt):
//! each attempt reads only what it wrote, a file that is there but cannot be read fails
//! the task instead of passing for "no outputs", and an absolute collect pattern is taken
//! as it is, whatever the step's directory. On the local provider (real processes).

use std::path::Path;
use std::time::Duration;

use hgauto_core::retry::RetryPolicy;
use hgauto_core::MachineSpec;
use hgauto_pipeline::{Mode, Pipeline, RunResult, Runner, Step, StepCommand, StepKind, TaskState};

fn once() -> StepKind {
    StepKind::Custom(RetryPolicy {
        max_retries: 1,
        base_delay: Duration::from_millis(1),
        ..RetryPolicy::default()
    })
}

fn step(script: &str, cwd: &Path) -> Step {
    let mut cmd = StepCommand::script(script);
    cmd.cwd = Some(cwd.display().to_string());
    Step::command("build", "builder", cmd).kind(once())
}

async fn run(p: Pipeline, root: &Path, inputs: &[(&str, &str)]) -> RunResult {
    let mut r = Runner::new(p, root.join("out"))
        .mode(Mode::Local)
        .state_dir(root.join("state"))
        .health_check(Duration::from_millis(50))
        .idle_timeout(Duration::from_secs(2))
        .retry_time_scale(0.001);
    for (k, v) in inputs {
        r = r.input(*k, *v);
    }
    r.run().await.unwrap()
}

fn pipeline(s: Step) -> Pipeline {
    Pipeline::builder("outputs")
        .worker(
            "builder",
            hgauto_pipeline::WorkerKind::new(MachineSpec::linux()),
        )
        .step(s)
        .build()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_attempt_reads_only_its_own_outputs_in_a_shared_directory() {
    let dir = tempfile::tempdir().unwrap();
    let shared = dir.path().join("shared");
    std::fs::create_dir_all(&shared).unwrap();
    // Attempt 1 of each run writes an output when asked to, then asks for a retry;
    // attempt 2 writes only what it is given.
    let script = r#"n=$(cat count 2>/dev/null || echo 0); n=$((n+1)); echo "$n" > count
if [ "$n" = 1 ] && [ -n "$HGAUTO_INPUT_FIRST" ]; then echo "x=$HGAUTO_INPUT_FIRST" >> "$HGAUTO_OUTPUT"; exit 75; fi
[ -z "$HGAUTO_INPUT_SECOND" ] || echo "x=$HGAUTO_INPUT_SECOND" >> "$HGAUTO_OUTPUT"
"#;
    let p = || pipeline(step(script, &shared));
    let first = run(p(), dir.path(), &[("first", ""), ("second", "one")]).await;
    assert!(first.ok, "{}", first.failure_summary());
    assert_eq!(
        first
            .task("build")
            .unwrap()
            .outputs
            .get("x")
            .map(String::as_str),
        Some("one")
    );

    // The same directory again: a new run that writes nothing has no outputs, and the
    // retry of an attempt that wrote one before failing does not inherit it.
    std::fs::remove_file(shared.join("count")).unwrap();
    let second = run(p(), dir.path(), &[("first", "stale"), ("second", "")]).await;
    assert!(second.ok, "{}", second.failure_summary());
    let t = second.task("build").unwrap();
    assert_eq!(t.attempts, 2);
    assert!(t.outputs.is_empty(), "{:?}", t.outputs);
    // Read outputs files are removed; the failed attempt's is left to no one's harm.
    let left: Vec<_> = std::fs::read_dir(&shared)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".hgauto-outputs-"))
        .collect();
    assert!(left.iter().all(|n| n.ends_with("-1")), "{left:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outputs_file_that_cannot_be_read_fails_the_task() {
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    let p = pipeline(step(r#"mkdir "$HGAUTO_OUTPUT""#, &work));
    let r = run(p, dir.path(), &[]).await;
    assert!(!r.ok);
    let t = r.task("build").unwrap();
    assert_eq!(t.state, TaskState::Failed);
    let error = t.error.as_deref().unwrap_or("");
    assert!(error.contains("could not be read"), "{error}");
    assert_eq!(t.attempts, 2, "retryable: the step's policy tries again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_absolute_collect_pattern_ignores_the_steps_directory() {
    let dir = tempfile::tempdir().unwrap();
    let (work, elsewhere) = (dir.path().join("work"), dir.path().join("elsewhere"));
    std::fs::create_dir_all(&work).unwrap();
    std::fs::create_dir_all(&elsewhere).unwrap();
    let target = elsewhere.join("pkg.tgz");
    let script = format!("echo built > '{}'", target.display());
    let p = pipeline(step(&script, &work).collect(target.display().to_string()));
    let r = run(p, dir.path(), &[]).await;
    assert!(r.ok, "{}", r.failure_summary());
    let got = dir.path().join("out/artifacts/build/pkg.tgz");
    assert_eq!(std::fs::read_to_string(got).unwrap(), "built\n");
}
