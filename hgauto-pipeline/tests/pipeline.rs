//! The pipeline engine on the local provider, with real processes: a 3 x 4 matrix of
//! build, test and publish with injected failures, a worker lost mid-task, re-runs that
//! skip what is published, the fake and local modes, the HTML report in Chromium, and bad
//! input refused before any machine exists.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use hgauto_core::{
    Artifact, DirPublisher, Error, LocalProvider, MachineSpec, Publisher, ResourceProvider,
};
use hgauto_pipeline::{
    Mode, Pipeline, PipelineFile, RunResult, Runner, Selection, ShouldRun, Step, StepCommand,
    StepFailure, StepKind, TaskState, WorkerKind,
};

const VERSIONS: [&str; 3] = ["3.1", "3.2", "3.3"];
const DISTROS: [&str; 4] = ["debian", "ubuntu", "fedora", "alpine"];

const BUILD: &str = r#"set -e
cell="$HGAUTO_MATRIX_VERSION-$HGAUTO_MATRIX_DISTRO"
case " $FAIL_BUILD " in *" $cell "*) echo "compile error in $cell" >&2; exit 1;; esac
rm -rf dist && mkdir -p dist
echo "package $cell" > "dist/pkg-$cell.tar.gz"
echo "package=pkg-$cell.tar.gz" >> "$HGAUTO_OUTPUT"
"#;

const TEST: &str = r#"cell="$HGAUTO_MATRIX_VERSION-$HGAUTO_MATRIX_DISTRO"
n=$(cat "$COUNTERS/test-$cell" 2>/dev/null || echo 0); n=$((n+1)); echo "$n" > "$COUNTERS/test-$cell"
case " $FLAKY " in *" $cell "*) if [ "$n" -le 2 ]; then echo "runner lost its network"; exit 75; fi;; esac
case " $BROKEN " in *" $cell "*) echo "test host down"; exit 75;; esac
# A build skipped as already published hands over no outputs.
[ -z "$HGAUTO_OUT_BUILD_PACKAGE" ] || test "$HGAUTO_OUT_BUILD_PACKAGE" = "pkg-$cell.tar.gz"
"#;

struct Fixture {
    _dir: tempfile::TempDir,
    state: PathBuf,
    out: PathBuf,
    counters: PathBuf,
    published: PathBuf,
    provider: Arc<LocalProvider>,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let counters = dir.path().join("counters");
    std::fs::create_dir_all(&counters).unwrap();
    let provider = Arc::new(LocalProvider::new(&state).unwrap());
    Fixture {
        state,
        out: dir.path().join("out"),
        counters,
        published: dir.path().join("published"),
        provider,
        _dir: dir,
    }
}

/// build (heavy) and test (cheap) per version x distro on two worker kinds, publish per
/// version in process once every distro of the version is built and tested.
fn matrix(f: &Fixture) -> Pipeline {
    let publisher: Arc<dyn Publisher> = Arc::new(DirPublisher::new(&f.published));
    let names: Vec<String> = DISTROS
        .iter()
        .map(|d| format!("pkg-{{version}}-{d}.tar.gz"))
        .collect();
    let counters = f.counters.display().to_string();
    let mut test = StepCommand::script(TEST);
    test.env.insert("COUNTERS".into(), counters);
    test.env.insert("FLAKY".into(), "{flaky}".into());
    test.env.insert("BROKEN".into(), "{broken}".into());
    let mut build = StepCommand::script(BUILD);
    build.env.insert("FAIL_BUILD".into(), "{fail_build}".into());
    let target = publisher.clone();
    Pipeline::builder("matrix")
        .dimension("version", VERSIONS)
        .dimension("distro", DISTROS)
        .worker(
            "builder",
            WorkerKind::new(MachineSpec::linux()).max_workers(4),
        )
        .worker(
            "tester",
            WorkerKind::new(MachineSpec::linux()).max_workers(2),
        )
        .step(
            Step::command("build", "builder", build)
                .over(["version", "distro"])
                .kind(StepKind::Heavy)
                .collect("dist/pkg-{version}-{distro}.tar.gz")
                .should_run(ShouldRun::Published {
                    publisher: publisher.clone(),
                    artifacts: vec!["pkg-{version}-{distro}.tar.gz".into()],
                }),
        )
        .step(
            Step::command("test", "tester", test)
                .over(["version", "distro"])
                .needs(["build"]),
        )
        .step(
            Step::function("publish", move |ctx| {
                let target = target.clone();
                async move {
                    let files: Vec<Artifact> = ctx
                        .all_artifacts()
                        .iter()
                        .map(Artifact::from_file)
                        .collect::<hgauto_core::Result<_>>()?;
                    if files.len() != DISTROS.len() {
                        return Err(StepFailure::fatal(format!(
                            "expected {} packages, got {}",
                            DISTROS.len(),
                            files.len()
                        )));
                    }
                    let report = target.publish(&files).await?;
                    Ok([("published".to_owned(), report.published.len().to_string())].into())
                }
            })
            .over(["version"])
            .needs(["build", "test"])
            .should_run(ShouldRun::Published {
                publisher,
                artifacts: names,
            }),
        )
        .build()
        .unwrap()
}

fn runner(f: &Fixture, p: Pipeline) -> Runner {
    Runner::new(p, &f.out)
        .provider(f.provider.clone())
        .health_check(Duration::from_millis(50))
        .idle_timeout(Duration::from_secs(2))
        .retry_time_scale(0.001)
        .input("fail_build", "")
        .input("flaky", "")
        .input("broken", "")
}

fn states(r: &RunResult) -> BTreeMap<String, (TaskState, u32)> {
    r.tasks()
        .map(|t| (t.task.clone(), (t.state, t.attempts)))
        .collect()
}

async fn no_machines_left(p: &LocalProvider) {
    let left: Vec<_> = p
        .list_managed()
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.exists)
        .collect();
    assert!(left.is_empty(), "machines left behind: {left:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn matrix_with_failures_counts_attempts_skips_dependants_and_summarises() {
    let f = fixture();
    let result = runner(&f, matrix(&f))
        .input("fail_build", "3.1-debian")
        .input("flaky", "3.2-ubuntu")
        .input("broken", "3.3-alpine")
        .run()
        .await
        .unwrap();

    let got = states(&result);
    let mut want = BTreeMap::new();
    for v in VERSIONS {
        for d in DISTROS {
            want.insert(format!("build-{v}-{d}"), (TaskState::Succeeded, 1));
            want.insert(format!("test-{v}-{d}"), (TaskState::Succeeded, 1));
        }
    }
    // A compile error is the work's own failure: one attempt, its test and its version's
    // publish are skipped.
    want.insert("build-3.1-debian".into(), (TaskState::Failed, 1));
    want.insert("test-3.1-debian".into(), (TaskState::Skipped, 0));
    want.insert("publish-3.1".into(), (TaskState::Skipped, 0));
    // Exit 75 twice, then a pass: the third attempt, each on a fresh worker.
    want.insert("test-3.2-ubuntu".into(), (TaskState::Succeeded, 3));
    want.insert("publish-3.2".into(), (TaskState::Succeeded, 1));
    // Always 75: the cheap policy's 5 retries, 6 attempts.
    want.insert("test-3.3-alpine".into(), (TaskState::Failed, 6));
    want.insert("publish-3.3".into(), (TaskState::Skipped, 0));
    assert_eq!(got, want);

    assert_eq!(
        result.task("test-3.1-debian").unwrap().reason.as_deref(),
        Some("needs build-3.1-debian, which failed")
    );
    assert_eq!(
        result.task("publish-3.1").unwrap().reason.as_deref(),
        Some("needs build-3.1-debian, which failed")
    );
    assert_eq!(
        result.task("publish-3.3").unwrap().reason.as_deref(),
        Some("needs test-3.3-alpine, which failed")
    );
    assert_eq!(
        result
            .task("publish-3.2")
            .unwrap()
            .outputs
            .get("published")
            .map(String::as_str),
        Some("4")
    );
    assert!(!result.ok);

    // The summary lists every failure with its cell, machine and attempts.
    let summary = result.failure_summary();
    let lines: Vec<&str> = summary.lines().collect();
    assert_eq!(
        lines[0], "pipeline \"matrix\": 2 of 27 tasks failed:",
        "{summary}"
    );
    let build = result.task("build-3.1-debian").unwrap();
    let m = build.machine.as_deref().unwrap();
    assert!(
        lines[1].starts_with(&format!(
            "- build-3.1-debian (version=3.1, distro=debian) on {m} after 1 attempt: "
        )),
        "{summary}"
    );
    assert!(
        lines[1].ends_with(": the script failed with exit code 1"),
        "{summary}"
    );
    let test = result.task("test-3.3-alpine").unwrap();
    let m = test.machine.as_deref().unwrap();
    assert!(
        lines[2].starts_with(&format!(
            "- test-3.3-alpine (version=3.3, distro=alpine) on {m} after 6 attempts: "
        )),
        "{summary}"
    );
    assert!(
        lines[2].ends_with(": the script failed with exit code 75, which means try again"),
        "{summary}"
    );
    assert_eq!(lines.len(), 3);
    match result.clone().into_result() {
        Err(Error::StepsFailed {
            failed: 2,
            summary: s,
            ..
        }) => assert_eq!(s, summary),
        other => panic!("expected StepsFailed, got {other:?}"),
    }

    // Each task's part of its worker's log is found by its name.
    let log = std::fs::read_to_string(build.log.as_ref().unwrap()).unwrap();
    assert!(
        log.contains("[build-3.1-debian] compile error in 3.1-debian"),
        "{log}"
    );
    // A failed attempt retires its worker: 1 failed build + 2 flaky + 6 broken attempts.
    let failed_workers = result
        .workers
        .iter()
        .filter(|w| w.ended == "failed")
        .count();
    assert_eq!(failed_workers, 9, "{:#?}", result.workers);
    assert!(result
        .workers
        .iter()
        .filter(|w| w.kind == "builder")
        .all(|w| w.label.starts_with("ww-") || w.ended == "failed"));
    // The failed build's worker ends active on it. Which of its worker's tasks it was
    // depends on the order the concurrent should_run checks answer in, which the engine
    // does not promise: only the state and the task are fixed.
    let failed_builder = result
        .workers
        .iter()
        .find(|w| w.label.ends_with("-build-3.1-debian") && w.ended == "failed")
        .unwrap_or_else(|| {
            panic!(
                "no failed worker on build-3.1-debian: {:#?}",
                result.workers
            )
        });
    let n = failed_builder.label["wa-".len()..]
        .strip_suffix("-build-3.1-debian")
        .and_then(|n| n.parse::<u32>().ok());
    assert!(
        failed_builder.label.starts_with("wa-") && n == Some(failed_builder.tasks),
        "{failed_builder:#?}"
    );
    // 12 builds on at most 4 builders at once: workers are reused, each build ran once, and
    // only the retired (failed) builder may have been replaced.
    let builders: Vec<_> = result
        .workers
        .iter()
        .filter(|w| w.kind == "builder")
        .collect();
    let retired = builders.iter().filter(|w| w.ended == "failed").count();
    assert!(builders.len() <= 4 + retired, "{builders:#?}");
    assert_eq!(
        builders.iter().map(|w| w.tasks).sum::<u32>(),
        12,
        "{builders:#?}"
    );
    // Retries go to an idle worker of the kind, or wait for the health check to start one
    // (whether one waited depends on timing; a_worker_lost_mid_task_is_replaced_by_the_
    // health_check forces it). Each worker the check started is in the tree as such.
    assert_eq!(
        result
            .workers
            .iter()
            .filter(|w| w.from_health_check)
            .count() as u64,
        result.health_checks.workers_started,
        "{:?}",
        result.health_checks
    );

    // The tree on disk is the one returned, and a reader refuses other schemas.
    let read = RunResult::read(&f.out.join("result.json")).unwrap();
    assert_eq!(
        serde_json::to_value(read).unwrap(),
        serde_json::to_value(&result).unwrap()
    );
    no_machines_left(&f.provider).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_run_skips_what_is_published() {
    let f = fixture();
    let first = runner(&f, matrix(&f)).run().await.unwrap();
    assert!(first.ok, "{}", first.failure_summary());
    assert_eq!(first.count(TaskState::Succeeded), 27);
    let published: Vec<_> = std::fs::read_dir(&f.published).unwrap().collect();
    assert_eq!(published.len(), 12);

    let second = runner(&f, matrix(&f)).run().await.unwrap();
    assert!(second.ok, "{}", second.failure_summary());
    for v in VERSIONS {
        let t = second.task(&format!("publish-{v}")).unwrap();
        assert_eq!(t.state, TaskState::Skipped);
        assert!(
            t.reason
                .as_deref()
                .unwrap()
                .starts_with("already published to dir:"),
            "{t:?}"
        );
        for d in DISTROS {
            let b = second.task(&format!("build-{v}-{d}")).unwrap();
            assert_eq!((b.state, b.attempts), (TaskState::Skipped, 0));
            // A step that is done counts as done for its dependants: tests still run.
            assert_eq!(
                second.task(&format!("test-{v}-{d}")).unwrap().state,
                TaskState::Succeeded
            );
        }
    }
    let html = std::fs::read_to_string(f.out.join("report.html")).unwrap();
    assert!(
        html.contains("already published"),
        "the report names the reason"
    );
    // Only testers were started the second time.
    assert!(second.workers.iter().all(|w| w.kind == "tester"));
    no_machines_left(&f.provider).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_lost_mid_task_is_replaced_by_the_health_check() {
    let f = fixture();
    let mark = f.counters.join("started");
    let mut cmd = StepCommand::script(
        "if [ ! -e \"$MARK\" ]; then touch \"$MARK\"; sleep 60; fi; echo finished",
    );
    cmd.env.insert("MARK".into(), mark.display().to_string());
    let p = Pipeline::builder("lost")
        .worker("w", WorkerKind::new(MachineSpec::linux()).max_workers(1))
        .step(Step::command("long", "w", cmd).kind(StepKind::Heavy))
        .build()
        .unwrap();
    let run = tokio::spawn(runner(&f, p).run());
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !mark.exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "the task never started"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Terminate the worker's machine underneath it.
    let ids: Vec<String> = f
        .provider
        .list_managed()
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.exists)
        .map(|r| r.id)
        .collect();
    assert_eq!(ids.len(), 1);
    f.provider.terminate(&ids).await.unwrap();

    let result = run.await.unwrap().unwrap();
    let t = result.task("long").unwrap();
    assert_eq!((t.state, t.attempts), (TaskState::Succeeded, 2), "{t:?}");
    assert_ne!(
        t.machine.as_deref(),
        Some(ids[0].as_str()),
        "the retry ran on a fresh worker"
    );
    let lost: Vec<_> = result
        .workers
        .iter()
        .filter(|w| w.ended == "lost")
        .collect();
    assert_eq!(lost.len(), 1, "{:#?}", result.workers);
    assert_eq!(lost[0].machine, ids[0]);
    assert_eq!(
        lost[0].label, "wa-1-long",
        "a terminated active worker keeps its wa- name"
    );
    assert!(result
        .workers
        .iter()
        .any(|w| w.from_health_check && w.tasks == 1));
    assert!(result.health_checks.workers_started >= 1);
    no_machines_left(&f.provider).await;
}

/// A worker with nothing to do for its idle timeout shuts down while the run goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_workers_shut_down_while_others_work() {
    let f = fixture();
    let p = Pipeline::builder("idle")
        .worker("quick", WorkerKind::new(MachineSpec::linux()))
        .worker("slow", WorkerKind::new(MachineSpec::linux()))
        .step(Step::command("a", "quick", StepCommand::argv(["true"])))
        .step(Step::command(
            "b",
            "slow",
            StepCommand::argv(["sleep", "2"]),
        ))
        .build()
        .unwrap();
    let result = runner(&f, p)
        .idle_timeout(Duration::from_millis(300))
        .run()
        .await
        .unwrap();
    assert!(result.ok, "{}", result.failure_summary());
    let ended: BTreeMap<&str, &str> = result
        .workers
        .iter()
        .map(|w| (w.kind.as_str(), w.ended.as_str()))
        .collect();
    assert_eq!(ended, [("quick", "idle"), ("slow", "finished")].into());
    no_machines_left(&f.provider).await;
}

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
