//! A fake of the Step Functions activity task protocol (moto does not serve
//! GetActivityTask), modelling what the service does with the exported Retry rules: a task
//! handed to a worker is held until its heartbeat timeout, measured on the test's clock;
//! a task that times out, or fails with `hgauto.Released` or a retryable error, is offered
//! again with `retry` one higher; success or `hgauto.Fatal` closes it. A closed or unknown
//! token is `TaskTimedOut`/`InvalidToken`, as the service answers.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hgauto_core::clock::{Clock, ManualClock};
use serde_json::{json, Value};
use wiremock::{Request, Respond, ResponseTemplate};

struct Task {
    input: Value,
    retry: u64,
    token: Option<String>,
    deadline_ms: u64,
    closed: bool,
}

#[derive(Default)]
struct State {
    tasks: Vec<Task>,
    queue: VecDeque<usize>,
    issued: u64,
    /// (operation, error) of every failure reported.
    failures: Vec<String>,
}

/// The fake service; clone it freely (clones share state).
#[derive(Clone)]
pub struct FakeSfn {
    state: Arc<Mutex<State>>,
    clock: ManualClock,
    heartbeat: Duration,
}

impl FakeSfn {
    pub fn new(clock: ManualClock, heartbeat: Duration) -> Self {
        FakeSfn {
            state: Arc::default(),
            clock,
            heartbeat,
        }
    }

    /// Starts a mock server answering every Step Functions call.
    pub async fn serve(&self) -> wiremock::MockServer {
        let server = wiremock::MockServer::start().await;
        wiremock::Mock::given(wiremock::matchers::method("POST"))
            .respond_with(self.clone())
            .mount(&server)
            .await;
        server
    }

    /// Offers a task with this input (as a Task state would).
    pub fn offer(&self, input: Value) {
        let mut s = self.state.lock().unwrap();
        s.tasks.push(Task {
            input,
            retry: 0,
            token: None,
            deadline_ms: 0,
            closed: false,
        });
        let i = s.tasks.len() - 1;
        s.queue.push_back(i);
    }

    /// Errors reported with SendTaskFailure so far.
    pub fn failures(&self) -> Vec<String> {
        self.state.lock().unwrap().failures.clone()
    }

    fn expire(&self, s: &mut State) {
        let now = self.clock.now_ms();
        for i in 0..s.tasks.len() {
            let t = &mut s.tasks[i];
            if !t.closed && t.token.is_some() && t.deadline_ms <= now {
                t.token = None;
                t.retry += 1;
                s.queue.push_back(i);
            }
        }
    }

    fn handle(&self, op: &str, body: &Value) -> Result<Value, (&'static str, String)> {
        let mut s = self.state.lock().unwrap();
        self.expire(&mut s);
        let token = body.get("taskToken").and_then(Value::as_str).unwrap_or("");
        let find = |s: &State| {
            s.tasks
                .iter()
                .position(|t| t.token.as_deref() == Some(token) && !t.closed)
        };
        match op {
            "GetActivityTask" => {
                let Some(i) = s.queue.pop_front() else {
                    return Ok(json!({}));
                };
                s.issued += 1;
                let tok = format!("token-{}-{}", i, s.issued);
                let deadline = self.clock.now_ms() + self.heartbeat.as_millis() as u64;
                let t = &mut s.tasks[i];
                t.token = Some(tok.clone());
                t.deadline_ms = deadline;
                let mut input = t.input.clone();
                input["retry"] = json!(t.retry);
                Ok(json!({"taskToken": tok, "input": input.to_string()}))
            }
            "SendTaskHeartbeat" => match find(&s) {
                Some(i) => {
                    s.tasks[i].deadline_ms =
                        self.clock.now_ms() + self.heartbeat.as_millis() as u64;
                    Ok(json!({}))
                }
                None => Err(("TaskTimedOut", "Task Timed Out".into())),
            },
            "SendTaskSuccess" => match find(&s) {
                Some(i) => {
                    s.tasks[i].closed = true;
                    s.tasks[i].token = None;
                    Ok(json!({}))
                }
                None => Err(("TaskTimedOut", "Task Timed Out".into())),
            },
            "SendTaskFailure" => match find(&s) {
                Some(i) => {
                    let error = body
                        .get("error")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_owned();
                    s.failures.push(error.clone());
                    let t = &mut s.tasks[i];
                    t.token = None;
                    if error == "hgauto.Fatal" {
                        t.closed = true;
                    } else {
                        t.retry += 1;
                        s.queue.push_back(i);
                    }
                    Ok(json!({}))
                }
                None => Err(("TaskTimedOut", "Task Timed Out".into())),
            },
            other => Err((
                "UnknownOperationException",
                format!("the fake does not serve {other}"),
            )),
        }
    }
}

impl Respond for FakeSfn {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        let target = req
            .headers
            .get("x-amz-target")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let op = target.rsplit('.').next().unwrap_or("");
        let body: Value = serde_json::from_slice(&req.body).unwrap_or(Value::Null);
        match self.handle(op, &body) {
            Ok(v) => {
                ResponseTemplate::new(200).set_body_raw(v.to_string(), "application/x-amz-json-1.0")
            }
            Err((code, message)) => ResponseTemplate::new(400).set_body_raw(
                json!({"__type": code, "message": message}).to_string(),
                "application/x-amz-json-1.0",
            ),
        }
    }
}
