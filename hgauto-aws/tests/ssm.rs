//! SsmMachine: the shared machine suite through a fake SSM agent (scripts run locally,
//! output and files through moto's S3), the polling state machine against scripted
//! response sequences, and request shapes against moto's SSM.

mod support;

use std::time::Duration;

use aws_sdk_ssm::operation::get_command_invocation::{
    GetCommandInvocationError, GetCommandInvocationOutput,
};
use aws_sdk_ssm::operation::send_command::SendCommandOutput;
use aws_sdk_ssm::types::error::InvocationDoesNotExist;
use aws_sdk_ssm::types::CommandInvocationStatus as S;
use aws_sdk_ssm::Client;
use aws_smithy_mocks::{mock, MockResponseInterceptor, RuleMode};
use hgauto_aws::{SsmMachine, SsmOptions};
use hgauto_core::{Command, Error, ExitStatus, Platform, RemoteMachine, SyncOptions};
use hgauto_testkit::machine::{self as suite, Capabilities};
use support::{fake_agent, Moto};

async fn s3_client(moto: &Moto, state: &std::path::Path) -> aws_sdk_s3::Client {
    let sdk = moto.config(state).sdk_config().await;
    let conf = aws_sdk_s3::config::Builder::from(&sdk)
        .force_path_style(true)
        .build();
    aws_sdk_s3::Client::from_conf(conf)
}

fn fast(opts: SsmOptions) -> SsmOptions {
    SsmOptions {
        poll_first: Duration::from_millis(20),
        poll_max: Duration::from_millis(100),
        ..opts
    }
}

/// A Linux machine behind the fake agent, with moto's bucket `ssm-io` for output and files.
/// The caller keeps moto and the two directories (state, home) alive.
async fn bucket_machine(
    moto: &Moto,
    id: &str,
) -> (
    SsmMachine,
    fake_agent::Agent,
    aws_sdk_s3::Client,
    [tempfile::TempDir; 2],
) {
    let state = tempfile::tempdir().unwrap();
    let home = tempfile::tempdir().unwrap();
    let s3 = s3_client(moto, state.path()).await;
    s3.create_bucket().bucket("ssm-io").send().await.unwrap();
    let (ssm, agent) = fake_agent::client(id, s3.clone());
    let opts = SsmOptions::default()
        .with_bucket("ssm-io")
        .with_home(home.path().to_str().unwrap());
    let m = SsmMachine::new(id, Platform::Linux, ssm, Some(s3.clone()), fast(opts));
    (m, agent, s3, [state, home])
}

/// Every object left in `bucket` (the machine must delete what it wrote).
async fn objects(s3: &aws_sdk_s3::Client, bucket: &str) -> Vec<String> {
    let out = s3.list_objects_v2().bucket(bucket).send().await.unwrap();
    out.contents()
        .iter()
        .filter_map(|o| o.key().map(str::to_owned))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ssm_machine_passes_the_machine_suite_through_a_fake_agent() {
    let moto = Moto::start();
    let (m, agent, s3, _dirs) = bucket_machine(&moto, "i-0fake").await;
    m.wait_ready(Duration::from_secs(5)).await.unwrap();
    // Run Command reports a signal death as the shell's 128+n exit code, not as a signal.
    suite::run_all(
        &m,
        Capabilities {
            signals: false,
            non_utf8_args: true,
        },
    )
    .await;
    let out = m
        .exec(&Command::script("kill -KILL $$"))
        .await
        .expect("exec");
    assert_eq!(out.status, ExitStatus::Code(137));
    assert!(agent.sent() > 20, "every check went through SendCommand");
    // Output, stdin and transfer objects were all removed again.
    assert_eq!(objects(&s3, "ssm-io").await, Vec::<String>::new());
}

/// A caller that gives up on a transfer or a command with large stdin at any point (here:
/// after 0 to 400 ms) leaves nothing in the bucket once background cleanup has run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abandoned_transfers_leave_no_objects_behind() {
    let moto = Moto::start();
    let (m, agent, s3, dirs) = bucket_machine(&moto, "i-0gone").await;
    let home = &dirs[1];
    let local = home.path().join("payload.bin");
    std::fs::write(&local, vec![7u8; 4 << 20]).unwrap();
    m.put(&local, "remote.bin").await.unwrap();
    let back = home.path().join("back.bin");
    for after_ms in [0, 20, 50, 100, 200, 400] {
        let after = Duration::from_millis(after_ms);
        let _ = tokio::time::timeout(after, m.put(&local, "remote.bin")).await;
        let _ = tokio::time::timeout(after, m.get("remote.bin", &back)).await;
        let stdin = Command::new("wc").arg("-c").stdin(vec![b'x'; 100_000]);
        let _ = tokio::time::timeout(after, m.exec(&stdin)).await;
    }
    assert!(
        hgauto_core::backend::background::drain(Duration::from_secs(60)).await,
        "background cleanup did not finish"
    );
    // The agent may still be finishing a command sent just before its caller left; the
    // cleanup waited for each such command and removed its output.
    assert_eq!(objects(&s3, "ssm-io").await, Vec::<String>::new());
    assert!(agent.sent() > 3);
}

#[tokio::test]
async fn without_a_bucket_transfers_are_not_supported_and_long_output_is_marked_truncated() {
    let moto = Moto::start();
    let state = tempfile::tempdir().unwrap();
    let home = tempfile::tempdir().unwrap();
    let s3 = s3_client(&moto, state.path()).await;
    let (ssm, _agent) = fake_agent::client("i-0nobucket", s3);
    let m = SsmMachine::new(
        "i-0nobucket",
        Platform::Linux,
        ssm,
        None,
        fast(SsmOptions::default().with_home(home.path().to_str().unwrap())),
    );
    let out = m
        .exec(&Command::script("yes 0123456789 | head -n 5000"))
        .await
        .unwrap();
    assert!(out.truncated, "55,000 characters cannot fit in 24,000");
    assert_eq!(out.stdout.len(), 24_000);
    let out = m.exec(&Command::new("echo").arg("short")).await.unwrap();
    assert!(!out.truncated);
    assert_eq!(out.stdout, b"short\n");
    // Small stdin travels inline; large stdin needs the bucket.
    let out = m
        .exec(&Command::new("wc").arg("-c").stdin(vec![b'x'; 1000]))
        .await
        .unwrap();
    assert_eq!(out.stdout_str().trim(), "1000");
    let big = m.exec(&Command::new("cat").stdin(vec![0u8; 100_000])).await;
    assert!(
        matches!(&big, Err(Error::NotSupported { what, .. }) if what.contains("100000 bytes of stdin")),
        "{big:?}"
    );
    let f = tempfile::NamedTempFile::new().unwrap();
    for r in [
        m.put(f.path(), "x").await,
        m.get("x", f.path()).await,
        m.sync_tree(home.path(), "t", &SyncOptions::default())
            .await
            .map(drop),
    ] {
        assert!(
            matches!(&r, Err(Error::NotSupported { what, .. }) if what.contains("S3 bucket")),
            "{r:?}"
        );
    }
}

/// A machine whose SSM client answers from the given rules only.
fn scripted(rules: &[&aws_smithy_mocks::Rule], platform: Platform) -> SsmMachine {
    let mut i = MockResponseInterceptor::new().rule_mode(RuleMode::MatchAny);
    for r in rules {
        i = i.with_rule(r);
    }
    SsmMachine::new(
        "i-0scripted",
        platform,
        fake_agent::mocked_client(i),
        None,
        fast(SsmOptions::default()),
    )
}

fn sent() -> aws_smithy_mocks::Rule {
    mock!(Client::send_command).then_output(|| {
        SendCommandOutput::builder()
            .command(
                aws_sdk_ssm::types::Command::builder()
                    .command_id("cmd-1")
                    .build(),
            )
            .build()
    })
}

fn status(s: S, details: &'static str, code: i32) -> GetCommandInvocationOutput {
    GetCommandInvocationOutput::builder()
        .status(s)
        .status_details(details)
        .response_code(code)
        .standard_output_content(if code >= 0 { "out\n" } else { "" })
        .build()
}

fn not_yet() -> GetCommandInvocationError {
    GetCommandInvocationError::InvocationDoesNotExist(InvocationDoesNotExist::builder().build())
}

#[tokio::test]
async fn polling_waits_through_unknown_and_in_progress_to_success() {
    let get = mock!(Client::get_command_invocation)
        .sequence()
        .error(not_yet)
        .times(2)
        .output(|| status(S::Pending, "Pending", -1))
        .output(|| status(S::InProgress, "InProgress", -1))
        .times(3)
        .output(|| status(S::Success, "Success", 0))
        .build();
    let send = sent();
    let m = scripted(&[&send, &get], Platform::Linux);
    let out = m.exec(&Command::new("true")).await.unwrap();
    assert_eq!(out.status, ExitStatus::Code(0));
    assert_eq!(out.stdout, b"out\n");
    assert_eq!(get.num_calls(), 7);
    assert_eq!(send.num_calls(), 1);
}

#[tokio::test]
async fn a_failed_script_is_an_exit_code_not_an_error() {
    let get = mock!(Client::get_command_invocation)
        .sequence()
        .output(|| status(S::InProgress, "InProgress", -1))
        .output(|| status(S::Failed, "Failed", 42))
        .build();
    let send = sent();
    let m = scripted(&[&send, &get], Platform::Linux);
    let out = m.exec(&Command::script("exit 42")).await.unwrap();
    assert_eq!(out.status, ExitStatus::Code(42));
}

#[tokio::test]
async fn terminal_failures_are_typed_errors() {
    type Check = fn(&Error) -> bool;
    let cases: [(S, &'static str, Check); 4] = [
        (S::TimedOut, "DeliveryTimedOut", |e| {
            matches!(
                e,
                Error::Connection {
                    may_have_run: false,
                    ..
                }
            ) && e.to_string().contains("did not pick up")
        }),
        (S::TimedOut, "ExecutionTimedOut", |e| {
            matches!(e, Error::Timeout { .. })
        }),
        (S::Cancelled, "Cancelled", |e| {
            matches!(
                e,
                Error::Backend {
                    retryable: false,
                    ..
                }
            ) && e.to_string().contains("cancelled")
        }),
        (S::Failed, "Undeliverable", |e| {
            matches!(
                e,
                Error::Connection {
                    may_have_run: false,
                    ..
                }
            ) && e.to_string().contains("Undeliverable")
        }),
    ];
    for (s, details, check) in cases {
        let get = mock!(Client::get_command_invocation)
            .sequence()
            .error(not_yet)
            .output(move || status(s.clone(), details, -1))
            .build();
        let send = sent();
        let m = scripted(&[&send, &get], Platform::Linux);
        let err = m.exec(&Command::new("true")).await.unwrap_err();
        assert!(check(&err), "{details}: {err}");
    }
}

#[tokio::test]
async fn a_command_past_its_timeout_is_killed_and_cancelled() {
    let get = mock!(Client::get_command_invocation)
        .then_output(|| status(S::InProgress, "InProgress", -1));
    let cancel = mock!(Client::cancel_command).then_output(|| {
        aws_sdk_ssm::operation::cancel_command::CancelCommandOutput::builder().build()
    });
    // The kill command is a second SendCommand; its invocation "succeeds" on the first poll
    // only if answered: route it by command id.
    let send = mock!(Client::send_command).then_compute_output(|req| {
        let script = &req.parameters().unwrap()["commands"][0];
        let id = if script.contains("kill -s KILL") {
            "cmd-kill"
        } else {
            "cmd-1"
        };
        SendCommandOutput::builder()
            .command(
                aws_sdk_ssm::types::Command::builder()
                    .command_id(id)
                    .build(),
            )
            .build()
    });
    let kill_done = mock!(Client::get_command_invocation)
        .match_requests(|r| r.command_id() == Some("cmd-kill"))
        .then_output(|| status(S::Success, "Success", 0));
    let m = scripted(&[&send, &kill_done, &get, &cancel], Platform::Linux);
    let started = std::time::Instant::now();
    let err = m
        .exec(
            &Command::new("sleep")
                .arg("600")
                .timeout(Duration::from_millis(500)),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Timeout { .. }), "{err}");
    assert!(err.to_string().contains("InProgress"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(send.num_calls(), 2, "the command and the kill");
    assert_eq!(kill_done.num_calls(), 1);
    assert_eq!(cancel.num_calls(), 1);
}

#[tokio::test]
async fn windows_commands_use_powershell_and_refuse_stdin() {
    let send = mock!(Client::send_command)
        .match_requests(|r| {
            r.document_name() == Some("AWS-RunPowerShellScript")
                && r.parameters().unwrap()["commands"][0].contains("ProcessStartInfo")
        })
        .then_output(|| {
            SendCommandOutput::builder()
                .command(
                    aws_sdk_ssm::types::Command::builder()
                        .command_id("cmd-1")
                        .build(),
                )
                .build()
        });
    let get =
        mock!(Client::get_command_invocation).then_output(|| status(S::Success, "Success", 0));
    let m = scripted(&[&send, &get], Platform::Windows);
    let out = m.exec(&Command::new("whoami")).await.unwrap();
    assert_eq!(out.status, ExitStatus::Code(0));
    let err = m
        .exec(&Command::new("more").stdin(b"x".to_vec()))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::NotSupported { .. }), "{err}");
    let err = m
        .sync_tree(std::path::Path::new("."), "x", &SyncOptions::default())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::NotSupported { .. }), "{err}");
}

#[tokio::test]
async fn requests_have_the_shapes_ssm_expects() {
    // moto records Run Command requests (it never runs them, and reports Success).
    let moto = Moto::start();
    let state = tempfile::tempdir().unwrap();
    let sdk = moto.config(state.path()).sdk_config().await;
    let ssm = aws_sdk_ssm::Client::new(&sdk);
    let ec2 = aws_sdk_ec2::Client::new(&sdk);
    let images = ec2.describe_images().owners("amazon").send().await.unwrap();
    let image = images.images()[0].image_id().unwrap();
    let run = ec2
        .run_instances()
        .image_id(image)
        .min_count(1)
        .max_count(1)
        .send()
        .await
        .unwrap();
    let id = run.instances()[0].instance_id().unwrap().to_owned();
    let s3 = s3_client(&moto, state.path()).await;
    s3.create_bucket()
        .bucket("out-bucket")
        .send()
        .await
        .unwrap();
    for (platform, document) in [
        (Platform::Linux, "AWS-RunShellScript"),
        (Platform::Windows, "AWS-RunPowerShellScript"),
    ] {
        let m = SsmMachine::new(
            &id,
            platform,
            ssm.clone(),
            Some(s3.clone()),
            fast(SsmOptions::default().with_bucket("out-bucket")),
        );
        let out = m
            .exec(
                &Command::new("echo")
                    .arg("it's")
                    .timeout(Duration::from_secs(90)),
            )
            .await
            .unwrap();
        assert_eq!(out.status, ExitStatus::Code(0));
        let listed = ssm.list_commands().instance_id(&id).send().await.unwrap();
        let cmd = listed
            .commands()
            .iter()
            .find(|c| c.document_name() == Some(document))
            .unwrap_or_else(|| panic!("no {document} command in {listed:?}"));
        let params = cmd.parameters().unwrap();
        assert_eq!(params["executionTimeout"], vec!["120".to_owned()]);
        let script = &params["commands"][0];
        match platform {
            Platform::Linux => assert!(
                script.contains("setsid -w") && script.contains("'\\''"),
                "{script}"
            ),
            Platform::Windows => assert!(script.contains("ProcessStartInfo"), "{script}"),
        }
        assert_eq!(cmd.output_s3_bucket_name(), Some("out-bucket"));
        assert_eq!(cmd.output_s3_key_prefix(), Some("hgauto-ssm"));
        assert_eq!(cmd.timeout_seconds(), Some(600));
        assert_eq!(cmd.instance_ids(), std::slice::from_ref(&id));
    }
}
