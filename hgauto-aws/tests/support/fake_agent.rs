//! A fake SSM agent: an SSM client whose Run Command calls are answered by running the
//! script locally with `sh`, as the real agent does on an instance (moto records commands
//! but never runs them). Like the agent, it starts each script in its own process group,
//! reports `InvocationDoesNotExist` on the first poll (eventual consistency), keeps 24,000
//! characters of each stream, writes full output to the S3 output bucket (moto) under
//! `prefix/command/instance/awsrunShellScript/0.awsrunShellScript/{stdout,stderr}`, and on
//! `CancelCommand` kills the script's process group.

use std::collections::HashMap;
use std::io::Read;
use std::os::unix::process::CommandExt;
use std::process::Stdio;
use std::sync::{Arc, Mutex};

use aws_sdk_ssm::operation::cancel_command::CancelCommandOutput;
use aws_sdk_ssm::operation::describe_instance_information::DescribeInstanceInformationOutput;
use aws_sdk_ssm::operation::get_command_invocation::{
    GetCommandInvocationError, GetCommandInvocationOutput,
};
use aws_sdk_ssm::operation::send_command::SendCommandOutput;
use aws_sdk_ssm::types::error::InvocationDoesNotExist;
use aws_sdk_ssm::types::{CommandInvocationStatus, InstanceInformation, PingStatus};
use aws_sdk_ssm::Client;
use aws_smithy_mocks::{mock, MockResponse, MockResponseInterceptor, RuleMode};

/// One command the agent ran or runs.
#[derive(Default)]
struct Invocation {
    polled: bool,
    pgid: i32,
    done: Option<i32>,
    cancelled: bool,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
}

/// What the fake agent remembers, shared with the test.
#[derive(Default, Clone)]
pub struct Agent {
    commands: Arc<Mutex<HashMap<String, Invocation>>>,
    /// Every script sent, in order (for tests that inspect them).
    pub scripts: Arc<Mutex<Vec<String>>>,
}

impl Agent {
    /// How many commands the agent has received.
    pub fn sent(&self) -> usize {
        self.scripts.lock().unwrap().len()
    }
}

/// Credentials and region for a mocked client (no network is ever used).
pub fn mocked_client(interceptor: MockResponseInterceptor) -> Client {
    let conf = aws_sdk_ssm::Config::builder()
        .behavior_version(aws_sdk_ssm::config::BehaviorVersion::latest())
        .region(aws_sdk_ssm::config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_ssm::config::Credentials::new(
            "testing", "testing", None, None, "test",
        ))
        .http_client(aws_smithy_mocks::create_mock_http_client())
        .interceptor(interceptor)
        .build();
    Client::from_conf(conf)
}

/// An SSM client whose commands run locally; full output goes to `s3` when the command
/// names an output bucket.
pub fn client(instance: &str, s3: aws_sdk_s3::Client) -> (Client, Agent) {
    let agent = Agent::default();
    let a = agent.clone();
    let inst = instance.to_owned();
    let send = mock!(Client::send_command).then_compute_output(move |req| {
        let script = req.parameters().unwrap()["commands"][0].clone();
        a.scripts.lock().unwrap().push(script.clone());
        let id = format!("cmd-{:016x}", rand::random::<u64>());
        let output = req.output_s3_bucket_name().map(|b| {
            (
                b.to_owned(),
                format!(
                    "{}/{id}/{inst}/awsrunShellScript/0.awsrunShellScript",
                    req.output_s3_key_prefix().unwrap_or_default()
                ),
            )
        });
        start(&a, &id, &script, output, s3.clone());
        SendCommandOutput::builder()
            .command(
                aws_sdk_ssm::types::Command::builder()
                    .command_id(&id)
                    .document_name(req.document_name().unwrap_or_default())
                    .build(),
            )
            .build()
    });
    let a = agent.clone();
    let get = mock!(Client::get_command_invocation).then_compute_response(move |req| {
        let mut all = a.commands.lock().unwrap();
        let id = req.command_id().unwrap_or_default();
        let not_yet = || {
            MockResponse::Error(GetCommandInvocationError::InvocationDoesNotExist(
                InvocationDoesNotExist::builder().build(),
            ))
        };
        let Some(inv) = all.get_mut(id) else {
            return not_yet();
        };
        if !std::mem::replace(&mut inv.polled, true) {
            return not_yet();
        }
        let b = GetCommandInvocationOutput::builder()
            .command_id(id)
            .instance_id(req.instance_id().unwrap_or_default());
        let b = match (inv.cancelled, inv.done) {
            // Like the agent: Cancelling until the process is gone and output uploaded.
            (true, None) => b
                .status(CommandInvocationStatus::Cancelling)
                .status_details("Cancelling")
                .response_code(-1),
            (true, Some(_)) => b
                .status(CommandInvocationStatus::Cancelled)
                .status_details("Cancelled")
                .response_code(-1),
            (false, None) => b
                .status(CommandInvocationStatus::InProgress)
                .status_details("InProgress")
                .response_code(-1),
            (false, Some(code)) => b
                .status(if code == 0 {
                    CommandInvocationStatus::Success
                } else {
                    CommandInvocationStatus::Failed
                })
                .status_details(if code == 0 { "Success" } else { "Failed" })
                .response_code(code)
                .standard_output_content(kept(&inv.stdout))
                .standard_error_content(kept(&inv.stderr)),
        };
        MockResponse::Output(b.build())
    });
    let a = agent.clone();
    let cancel = mock!(Client::cancel_command).then_compute_output(move |req| {
        if let Some(inv) = a
            .commands
            .lock()
            .unwrap()
            .get_mut(req.command_id().unwrap_or_default())
        {
            if inv.done.is_none() && !inv.cancelled {
                inv.cancelled = true;
                unsafe { libc::killpg(inv.pgid, libc::SIGKILL) };
            }
        }
        CancelCommandOutput::builder().build()
    });
    let inst = instance.to_owned();
    let describe = mock!(Client::describe_instance_information).then_compute_output(move |_| {
        DescribeInstanceInformationOutput::builder()
            .instance_information_list(
                InstanceInformation::builder()
                    .instance_id(&inst)
                    .ping_status(PingStatus::Online)
                    .build(),
            )
            .build()
    });
    let interceptor = MockResponseInterceptor::new()
        .rule_mode(RuleMode::MatchAny)
        .with_rule(&send)
        .with_rule(&get)
        .with_rule(&cancel)
        .with_rule(&describe);
    (mocked_client(interceptor), agent)
}

/// The first 24,000 characters, as SSM keeps them.
fn kept(data: &[u8]) -> String {
    String::from_utf8_lossy(data).chars().take(24_000).collect()
}

fn start(
    agent: &Agent,
    id: &str,
    script: &str,
    output: Option<(String, String)>,
    s3: aws_sdk_s3::Client,
) {
    let mut child = std::process::Command::new("sh")
        .arg("-c")
        .arg(script)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .expect("spawn sh");
    let pgid = child.id() as i32;
    agent.commands.lock().unwrap().insert(
        id.to_owned(),
        Invocation {
            pgid,
            ..Default::default()
        },
    );
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let commands = agent.commands.clone();
    let id = id.to_owned();
    std::thread::spawn(move || {
        let err_reader = std::thread::spawn(move || {
            let mut v = Vec::new();
            let _ = err.read_to_end(&mut v);
            v
        });
        let mut stdout = Vec::new();
        let _ = out.read_to_end(&mut stdout);
        let stderr = err_reader.join().unwrap();
        let status = child.wait().unwrap();
        let code = status.code().unwrap_or(-1);
        if let Some((bucket, prefix)) = output {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                for (name, data) in [("stdout", &stdout), ("stderr", &stderr)] {
                    if data.is_empty() {
                        continue;
                    }
                    s3.put_object()
                        .bucket(&bucket)
                        .key(format!("{prefix}/{name}"))
                        .body(data.clone().into())
                        .send()
                        .await
                        .expect("agent uploads output");
                }
            });
        }
        let mut all = commands.lock().unwrap();
        let inv = all.get_mut(&id).unwrap();
        inv.stdout = stdout;
        inv.stderr = stderr;
        inv.done = Some(code);
    });
}
