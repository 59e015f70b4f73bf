//! Pipelines on AWS Step Functions: the exported definition is created in moto_server and
//! checked for what moto does not check (every Task has Retry and Catch, every Catch ends
//! in a result record, should_run has its Choice), the demo pipeline's definition matches
//! its reviewed snapshot, and `SfnActivitySource` passes the job source suite against a
//! fake of the activity protocol, with its exact calls pinned by aws-smithy-mocks.

mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_sfn::operation::get_activity_task::GetActivityTaskOutput;
use aws_sdk_sfn::operation::send_task_failure::SendTaskFailureOutput;
use aws_sdk_sfn::operation::send_task_heartbeat::{
    SendTaskHeartbeatError, SendTaskHeartbeatOutput,
};
use aws_sdk_sfn::operation::send_task_success::SendTaskSuccessOutput;
use aws_smithy_mocks::{mock, MockResponseInterceptor, RuleMode};
use hgauto_aws::SfnActivitySource;
use hgauto_core::clock::ManualClock;
use hgauto_core::{DirPublisher, Error, Job, JobFilter, JobOutcome, JobSource, MachineSpec};
use hgauto_pipeline::asl::{self, Activities};
use hgauto_pipeline::{
    Pipeline, PipelineFile, Selection, ShouldRun, Step, StepCommand, StepFn, StepKind, WorkerKind,
};
use hgauto_testkit::job_source::{run_all, Capabilities, Harness};
use serde_json::{json, Value};
use support::fake_sfn::FakeSfn;
use support::Moto;

const ARN_PREFIX: &str = "arn:aws:states:us-east-1:123456789012:activity:";

fn sfn_client(endpoint: &str) -> aws_sdk_sfn::Client {
    let conf = aws_sdk_sfn::Config::builder()
        .behavior_version(aws_sdk_sfn::config::BehaviorVersion::latest())
        .region(aws_sdk_sfn::config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_sfn::config::Credentials::new(
            "testing", "testing", None, None, "test",
        ))
        .endpoint_url(endpoint)
        .build();
    aws_sdk_sfn::Client::from_conf(conf)
}

/// The demo's pipeline (examples/release.pipeline.toml) with a stand-in release function.
fn demo_pipeline() -> Pipeline {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/release.pipeline.toml");
    let release: StepFn = Arc::new(|_| Box::pin(async { Ok(BTreeMap::new()) }));
    PipelineFile::read(&path)
        .unwrap()
        .into_pipeline(&[("release".to_owned(), release)].into())
        .unwrap()
}

/// 3 versions x 4 distros: build (heavy, skipped when published), test, publish per version.
fn matrix_pipeline() -> Pipeline {
    let published = Arc::new(DirPublisher::new("/srv/dist"));
    Pipeline::builder("matrix")
        .dimension("version", ["3.1", "3.2", "3.3"])
        .dimension("distro", ["debian", "ubuntu", "fedora", "alpine"])
        .worker("builder", WorkerKind::new(MachineSpec::linux()))
        .worker("tester", WorkerKind::new(MachineSpec::linux()))
        .step(
            Step::command("build", "builder", StepCommand::argv(["make"]))
                .over(["version", "distro"])
                .kind(StepKind::Heavy)
                .should_run(ShouldRun::Published {
                    publisher: published,
                    artifacts: vec!["pkg-{version}-{distro}.tgz".into()],
                }),
        )
        .step(
            Step::command("test", "tester", StepCommand::argv(["make", "check"]))
                .over(["version", "distro"])
                .needs(["build"]),
        )
        .step(
            Step::function("publish", |_| async { Ok(BTreeMap::new()) })
                .over(["version"])
                .needs(["test"]),
        )
        .build()
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

struct SfnHarness {
    fake: FakeSfn,
    endpoint: String,
    clock: ManualClock,
}

const TTL: Duration = Duration::from_secs(300);

#[async_trait]
impl Harness for SfnHarness {
    fn consumer(&self) -> Arc<dyn JobSource> {
        Arc::new(
            SfnActivitySource::new(
                sfn_client(&self.endpoint),
                format!("{ARN_PREFIX}suite-builder"),
            )
            .with_clock(Arc::new(self.clock.clone()))
            .with_heartbeat_timeout(TTL),
        )
    }
    async fn enqueue(&self, job: Job) {
        self.fake.offer(json!({
            "task": job.id, "check": job.check, "revision": job.revision,
            "priority": job.priority, "created_ms": job.created_ms,
        }));
    }
    fn advance(&self, by: Duration) {
        self.clock.advance(by);
    }
    fn lease_ttl(&self) -> Duration {
        TTL
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sfn_activity_source_passes_the_suite() {
    let clock = ManualClock::default();
    let fake = FakeSfn::new(clock.clone(), TTL);
    let server = fake.serve().await;
    let h = SfnHarness {
        fake,
        endpoint: server.uri(),
        clock,
    };
    // An activity hands tasks out in its own order and keeps no history.
    run_all(&h, Capabilities::leases_only()).await;
    assert!(
        h.fake.failures().iter().any(|e| e == "hgauto.Released"),
        "filters and release give tasks back"
    );
}

fn mocked(rules: &[&aws_smithy_mocks::Rule]) -> SfnActivitySource {
    let mut i = MockResponseInterceptor::new().rule_mode(RuleMode::Sequential);
    for r in rules {
        i = i.with_rule(r);
    }
    let conf = aws_sdk_sfn::Config::builder()
        .behavior_version(aws_sdk_sfn::config::BehaviorVersion::latest())
        .region(aws_sdk_sfn::config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_sfn::config::Credentials::new(
            "testing", "testing", None, None, "test",
        ))
        .http_client(aws_smithy_mocks::create_mock_http_client())
        .interceptor(i)
        .build();
    SfnActivitySource::new(
        aws_sdk_sfn::Client::from_conf(conf),
        format!("{ARN_PREFIX}greet-release-builder"),
    )
}

fn task(token: &'static str, input: Value) -> aws_smithy_mocks::Rule {
    let input = input.to_string();
    mock!(aws_sdk_sfn::Client::get_activity_task)
        .match_requests(|r| r.activity_arn() == Some(&format!("{ARN_PREFIX}greet-release-builder")))
        .then_output(move || {
            GetActivityTaskOutput::builder()
                .task_token(token)
                .input(input.clone())
                .build()
        })
}

#[tokio::test]
async fn the_worker_protocol_is_get_heartbeat_then_success_or_fatal_failure() {
    let get = task(
        "tok-1",
        json!({"task": "build-debug", "step": "build", "cell": {"variant": "debug"}, "retry": 1}),
    );
    let beat = mock!(aws_sdk_sfn::Client::send_task_heartbeat)
        .match_requests(|r| r.task_token() == Some("tok-1"))
        .then_output(|| SendTaskHeartbeatOutput::builder().build());
    let done = mock!(aws_sdk_sfn::Client::send_task_success)
        .match_requests(|r| {
            r.task_token() == Some("tok-1")
                && r.output()
                    .is_some_and(|o| o.contains("\"status\":\"succeeded\""))
        })
        .then_output(|| SendTaskSuccessOutput::builder().build());
    let s = mocked(&[&get, &beat, &done]);
    let job = s.next(&JobFilter::default()).await.unwrap().unwrap();
    assert_eq!(
        (job.id.as_str(), job.check.as_str(), job.attempt),
        ("build-debug", "greet-release-builder", 2)
    );
    assert_eq!(job.attributes["variant"], "debug");
    s.heartbeat(&job).await.unwrap();
    s.report(
        &job,
        &JobOutcome::Succeeded {
            summary: "built".into(),
        },
    )
    .await
    .unwrap();
    // A second report of a closed task makes no call (the rules would refuse one).
    s.report(
        &job,
        &JobOutcome::Succeeded {
            summary: "built".into(),
        },
    )
    .await
    .unwrap();
    assert_eq!(
        (get.num_calls(), beat.num_calls(), done.num_calls()),
        (1, 1, 1)
    );

    // A failing test is hgauto.Fatal, which the exported Retry never retries.
    let get = task("tok-2", json!({"task": "test-debug"}));
    let fail = mock!(aws_sdk_sfn::Client::send_task_failure)
        .match_requests(|r| {
            r.error() == Some("hgauto.Fatal") && r.cause() == Some("2 tests failed")
        })
        .then_output(|| SendTaskFailureOutput::builder().build());
    let s = mocked(&[&get, &fail]);
    let job = s.next(&JobFilter::default()).await.unwrap().unwrap();
    s.report(
        &job,
        &JobOutcome::Failed {
            summary: "2 tests failed".into(),
            retryable: false,
        },
    )
    .await
    .unwrap();
    assert_eq!(fail.num_calls(), 1);
}

#[tokio::test]
async fn a_timed_out_task_is_a_lost_lease_and_an_empty_poll_is_no_job() {
    let empty = mock!(aws_sdk_sfn::Client::get_activity_task)
        .then_output(|| GetActivityTaskOutput::builder().build());
    let get = task("tok-3", json!({"task": "build-release"}));
    let timed_out = mock!(aws_sdk_sfn::Client::send_task_heartbeat).then_error(|| {
        SendTaskHeartbeatError::TaskTimedOut(
            aws_sdk_sfn::types::error::TaskTimedOut::builder()
                .message("Task Timed Out")
                .build(),
        )
    });
    let s = mocked(&[&empty, &get, &timed_out]);
    assert!(s.next(&JobFilter::default()).await.unwrap().is_none());
    let job = s.next(&JobFilter::default()).await.unwrap().unwrap();
    let e = s.heartbeat(&job).await.unwrap_err();
    assert!(matches!(e, Error::LeaseLost { .. }), "{e:?}");
}

#[tokio::test]
async fn the_control_activity_is_answered_with_the_task_output() {
    use hgauto_aws::sfn::serve_control;
    use hgauto_pipeline::Control;
    let control = Control::new(matrix_pipeline(), BTreeMap::new()).unwrap();
    let get = mock!(aws_sdk_sfn::Client::get_activity_task).then_output(|| {
        GetActivityTaskOutput::builder()
            .task_token("tok-c")
            .input(
                json!({"action": "should-run", "task": "build-3.1-debian", "mode": "fake"})
                    .to_string(),
            )
            .build()
    });
    let answered = mock!(aws_sdk_sfn::Client::send_task_success)
        .match_requests(|r| {
            r.task_token() == Some("tok-c")
                && r.output()
                    .and_then(|o| serde_json::from_str::<Value>(o).ok())
                    == Some(json!({"run": true, "reason": ""}))
        })
        .then_output(|| SendTaskSuccessOutput::builder().build());
    let unknown = mock!(aws_sdk_sfn::Client::get_activity_task).then_output(|| {
        GetActivityTaskOutput::builder()
            .task_token("tok-d")
            .input(json!({"action": "teleport"}).to_string())
            .build()
    });
    let refused = mock!(aws_sdk_sfn::Client::send_task_failure)
        .match_requests(|r| {
            r.error() == Some("hgauto.Fatal") && r.cause().is_some_and(|c| c.contains("teleport"))
        })
        .then_output(|| SendTaskFailureOutput::builder().build());
    let empty = mock!(aws_sdk_sfn::Client::get_activity_task)
        .then_output(|| GetActivityTaskOutput::builder().build());
    let s = mocked(&[&get, &answered, &unknown, &refused, &empty]);
    assert!(serve_control(&s, &control).await.unwrap());
    assert!(serve_control(&s, &control).await.unwrap());
    assert!(
        !serve_control(&s, &control).await.unwrap(),
        "no task: nothing served"
    );
    assert_eq!((answered.num_calls(), refused.num_calls()), (1, 1));
}

/// The builder agent (P9) serves an activity unchanged: it takes the task, builds, and
/// the service sees the task closed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_builder_agent_serves_an_activity() {
    use hgauto_agent::{Agent, AgentContext, Iteration};
    let clock = ManualClock::default();
    let fake = FakeSfn::new(clock.clone(), TTL);
    let server = fake.serve().await;
    fake.offer(json!({"task": "build-debug", "step": "build", "cell": {"variant": "debug"}}));
    let source = SfnActivitySource::new(
        sfn_client(&server.uri()),
        format!("{ARN_PREFIX}greet-release-builder"),
    )
    .with_clock(Arc::new(clock.clone()))
    .with_heartbeat_timeout(TTL);
    let dir = tempfile::tempdir().unwrap();
    let agent = Agent::builder(Arc::new(source), dir.path().join("state"))
        .build(|job: Job, _ctx: AgentContext| async move {
            Ok(JobOutcome::Succeeded {
                summary: format!("built {}", job.attributes["variant"]),
            })
        })
        .build_agent()
        .unwrap();
    match agent.run_once().await.unwrap() {
        Iteration::Built { job, reported, .. } => {
            assert_eq!(job, "build-debug");
            assert!(reported);
        }
        other => panic!("expected a build, got {other:?}"),
    }
    // Closed: nothing is offered again, even after the heartbeat timeout.
    clock.advance(TTL * 2);
    assert!(matches!(agent.run_once().await.unwrap(), Iteration::Idle));
}
