//! Pipelines on AWS Step Functions: the exported definition is created in moto_server and
//! checked for what moto does not check (every Task has Retry and Catch, every Catch ends
//! in a result record, should_run has its Choice), the demo pipeline's definition matches
//! its reviewed snapshot, and `SfnActivitySource` passes the job source suite against a
//! fake of the activity protocol, with its exact calls pinned by aws-smithy-mocks.

mod support;
use support::pipelines::{matrix_pipeline, sfn_client, ARN_PREFIX};

use std::collections::BTreeMap;
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
use hgauto_core::{Error, Job, JobFilter, JobOutcome, JobSource};
use hgauto_testkit::job_source::{run_all, Capabilities, Harness};
use serde_json::{json, Value};
use support::fake_sfn::FakeSfn;

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
