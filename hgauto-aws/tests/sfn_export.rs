//! Pipelines exported to Step Functions: definitions moto accepts, their structure (worker
//! slots, retries, the control activity), the demo's reviewed snapshot, and the worker's user
//! data.

mod support;
use support::pipelines::{matrix_pipeline, sfn_client, ARN_PREFIX};

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use hgauto_pipeline::asl::{self, Activities};
use hgauto_pipeline::{Pipeline, PipelineFile, Selection, ShouldRun, StepFn};
use serde_json::{json, Value};
use support::Moto;

/// The demo's pipeline (examples/release.pipeline.toml) with a stand-in release function.
fn demo_pipeline() -> Pipeline {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/release.pipeline.toml");
    let release: StepFn = Arc::new(|_| Box::pin(async { Ok(BTreeMap::new()) }));
    PipelineFile::read(&path)
        .unwrap()
        .into_pipeline(&[("release".to_owned(), release)].into())
        .unwrap()
}

/// Every state map in the definition, with its path, branches included.
fn state_maps<'a>(
    v: &'a Value,
    at: &str,
    out: &mut Vec<(String, &'a serde_json::Map<String, Value>)>,
) {
    if let Some(states) = v.get("States").and_then(Value::as_object) {
        out.push((at.to_owned(), states));
        for (name, s) in states {
            for (i, b) in s
                .get("Branches")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .enumerate()
            {
                state_maps(b, &format!("{at}/{name}[{i}]"), out);
            }
        }
    }
}

/// The control activity's ARN: the resource of the `Work done` state.
fn def_control(def: &Value) -> &Value {
    &def["States"]["Pipeline: run"]["Branches"][0]["States"]["Work done"]["Resource"]
}

/// A task on a worker runs only after a granted slot (asking again after a Wait), and
/// gives it back on success and on failure.
fn check_worker_slot(states: &serde_json::Map<String, Value>, run: &str, at: &str) {
    let acquire = states
        .values()
        .find(|s| s["Parameters"]["action"] == "acquire-worker" && s["Parameters"]["task"] == run)
        .unwrap_or_else(|| panic!("{at}/{run}: no acquire-worker state"));
    let choice = &states[acquire["Next"].as_str().unwrap()];
    assert_eq!(choice["Type"], "Choice", "{at}/{run}");
    assert_eq!(choice["Choices"][0]["Variable"], "$.slot.granted");
    assert_eq!(
        choice["Choices"][0]["Next"], run,
        "{at}/{run}: granted runs"
    );
    let wait = &states[choice["Default"].as_str().unwrap()];
    assert_eq!(wait["Type"], "Wait", "{at}/{run}");
    assert_eq!(
        states[wait["Next"].as_str().unwrap()]["Parameters"]["action"],
        "acquire-worker",
        "{at}/{run}: the wait asks again"
    );
    let s = &states[run];
    let after = [
        s["Next"].as_str().unwrap(),
        s["Catch"][0]["Next"].as_str().unwrap(),
    ];
    for next in after {
        assert_eq!(
            states[next]["Parameters"]["action"], "release-worker",
            "{at}/{run}: {next} gives the slot back"
        );
    }
}

/// What moto does not check, for a definition of `p`.
fn check_structure(p: &Pipeline, def: &Value) {
    let mut maps = Vec::new();
    state_maps(def, "", &mut maps);
    let mut task_states = 0;
    let mut check_choices = 0;
    let mut worker_runs = 0;
    for (at, states) in &maps {
        for (name, s) in *states {
            if let Some(next) = s.get("Next").and_then(Value::as_str) {
                assert!(
                    states.contains_key(next),
                    "{at}/{name}: Next {next:?} is not in its state map"
                );
            }
            if s["Type"] == "Task" {
                task_states += 1;
                let retry = s["Retry"]
                    .as_array()
                    .unwrap_or_else(|| panic!("{at}/{name}: no Retry"));
                assert_eq!(
                    retry[0]["ErrorEquals"],
                    json!(["hgauto.Fatal"]),
                    "{at}/{name}"
                );
                assert_eq!(
                    retry[0]["MaxAttempts"], 0,
                    "{at}/{name}: fatal errors are never retried"
                );
                assert_eq!(
                    retry.last().unwrap()["ErrorEquals"],
                    json!(["States.ALL"]),
                    "{at}/{name}"
                );
                let catch = s["Catch"]
                    .as_array()
                    .unwrap_or_else(|| panic!("{at}/{name}: no Catch"));
                for c in catch {
                    assert_eq!(c["ErrorEquals"], json!(["States.ALL"]), "{at}/{name}");
                    assert!(
                        c["ResultPath"].as_str().unwrap().starts_with("$."),
                        "{at}/{name}"
                    );
                    let mut next = &states[c["Next"].as_str().unwrap()];
                    // A worker slot is given back on the way to the record.
                    let releasing = s["Parameters"]["action"] == "release-worker";
                    if next["Parameters"]["action"] == "release-worker" {
                        next = &states[next["Next"].as_str().unwrap()];
                    }
                    // Every failure becomes a result record (the branch's output, which the
                    // level's Parallel writes under $.levels), or the health loop goes on;
                    // a slot that cannot be given back leaves the task's own record.
                    let records = next["Type"] == "Pass"
                        && (next["Parameters"]["state"] == "failed"
                            || (releasing && c["Next"] == s["Next"]))
                        && next["End"] == true;
                    assert!(
                        records || c["Next"] == "Health wait" || c["Next"] == "Work end",
                        "{at}/{name}: Catch goes to {next}"
                    );
                }
                // The run state of a step carries its kind's policy.
                if let Some(step) = s["Parameters"]["step"].as_str().filter(|_| {
                    s["Parameters"]["action"] != "should-run"
                        && s["Parameters"]["action"] != "start-worker"
                }) {
                    if &s["Resource"] != def_control(def) {
                        worker_runs += 1;
                        check_worker_slot(states, name, at);
                    }
                    let policy = p.step(step).unwrap().step_kind().policy();
                    assert_eq!(
                        retry.last().unwrap()["MaxAttempts"],
                        policy.max_retries,
                        "{at}/{name}"
                    );
                    assert_eq!(
                        retry.last().unwrap()["IntervalSeconds"],
                        policy.base_delay.as_secs(),
                        "{at}/{name}"
                    );
                }
            }
            if s["Type"] == "Choice" && s["Choices"][0]["Variable"] == "$.check.run" {
                check_choices += 1;
            }
        }
    }
    let tasks = hgauto_pipeline::Runner::new(p.clone(), "/nonexistent")
        .input("sample", "/src")
        .input("break", "")
        .plan()
        .unwrap();
    let checked = tasks
        .iter()
        .filter(|t| {
            !matches!(
                p.steps()
                    .iter()
                    .find(|s| t.starts_with(s.name()))
                    .unwrap()
                    .check(),
                ShouldRun::Always
            )
        })
        .count();
    assert_eq!(
        check_choices, checked,
        "one should_run Choice per checked task"
    );
    assert!(task_states >= tasks.len(), "every task has a Task state");
    let on_workers = tasks
        .iter()
        .filter(|t| {
            let step = p.steps().iter().find(|s| t.starts_with(s.name())).unwrap();
            step.worker().is_some()
        })
        .count();
    assert_eq!(
        worker_runs, on_workers,
        "every task on a worker holds a slot"
    );
    let normalized = def["States"]["Pipeline: normalize results"]["Parameters"]["tasks"]
        .as_object()
        .unwrap();
    assert_eq!(
        normalized.len(),
        tasks.len(),
        "Pipeline: normalize results lists every task"
    );
    let or = def["States"]["Pipeline: check for failures"]["Choices"][0]["Or"]
        .as_array()
        .unwrap();
    assert_eq!(
        or.len(),
        tasks.len(),
        "Pipeline: check for failures looks at every task"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exported_definitions_are_accepted_by_moto_and_well_formed() {
    let moto = Moto::start();
    let client = sfn_client(&moto.endpoint());
    for p in [demo_pipeline(), matrix_pipeline()] {
        let mut workers = BTreeMap::new();
        for kind in p.workers().keys() {
            let name = format!("{}-{kind}", p.name());
            let arn = client
                .create_activity()
                .name(&name)
                .send()
                .await
                .unwrap()
                .activity_arn()
                .to_owned();
            workers.insert(kind.clone(), arn);
        }
        let control = client
            .create_activity()
            .name(format!("{}-control", p.name()))
            .send()
            .await
            .unwrap()
            .activity_arn()
            .to_owned();
        let activities = Activities { control, workers };
        let def =
            asl::definition(&p, &activities, &Selection::all(), Duration::from_secs(300)).unwrap();
        check_structure(&p, &def);
        let created = client
            .create_state_machine()
            .name(p.name())
            .definition(def.to_string())
            .role_arn("arn:aws:iam::123456789012:role/hgauto-pipeline")
            .send()
            .await
            .unwrap();
        let described = client
            .describe_state_machine()
            .state_machine_arn(created.state_machine_arn())
            .send()
            .await
            .unwrap();
        let back: Value = serde_json::from_str(described.definition()).unwrap();
        assert_eq!(back, def);
    }
    // A selection exports only what it names.
    let p = matrix_pipeline();
    let def = asl::definition(
        &p,
        &Activities::named(&p, ARN_PREFIX),
        &Selection::all()
            .only("version", ["3.2"])
            .steps(["build", "test"]),
        Duration::from_secs(60),
    )
    .unwrap();
    assert_eq!(
        def["States"]["Pipeline: normalize results"]["Parameters"]["tasks"]
            .as_object()
            .unwrap()
            .len(),
        8
    );
    let e = asl::definition(
        &p,
        &Activities::named(&p, ARN_PREFIX),
        &Selection::all().steps(["tset"]),
        Duration::from_secs(60),
    )
    .unwrap_err();
    assert!(e.to_string().contains("did you mean \"test\""), "{e}");
}

#[test]
fn the_demo_definition_matches_its_reviewed_snapshot() {
    let p = demo_pipeline();
    let def = asl::definition(
        &p,
        &Activities::named(&p, ARN_PREFIX),
        &Selection::all(),
        Duration::from_secs(300),
    )
    .unwrap();
    let text = hgauto_pipeline::canonical_json(&def);
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/release.asl.json");
    if std::env::var_os("HGAUTO_UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, &text).unwrap();
    }
    assert_eq!(
        std::fs::read_to_string(&path).unwrap_or_default(),
        text,
        "run with HGAUTO_UPDATE_GOLDEN=1 and review the diff"
    );
}

#[test]
fn worker_user_data_is_valid_bash_and_quotes_its_values() {
    let script = asl::worker_user_data(
        "arn:aws:states:us-east-1:1:activity:p-b'x",
        "us-east-1",
        "make -C /src build",
        Some("mount /dev/xvdf /cache\ncleanup() { umount /cache; }"),
        10,
    );
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("user-data.sh");
    std::fs::write(&f, &script).unwrap();
    let out = std::process::Command::new("bash")
        .arg("-n")
        .arg(&f)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(script.contains("export ACTIVITY_ARN='arn:aws:states:us-east-1:1:activity:p-b'\\''x'"));
    assert!(script.contains("trap 'cleanup; shutdown -h now' EXIT"));
    assert!(
        script.contains("--error hgauto.Fatal") && script.contains("exit 1"),
        "a failed task ends the worker"
    );
}
