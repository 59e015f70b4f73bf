//! The same pipeline for a fleet: an Amazon States Language definition whose tasks go to
//! Step Functions activities, one per worker kind, plus a control activity for checks,
//! on-demand worker starts, function steps and the health check (HHVM's design).
//!
//! Shape: a `Pipeline` Parallel state with two branches. `Work` runs one Parallel state per
//! dependency level, one branch per task: a Choice that skips the task when a task it needs
//! failed, its `should_run` check (a Choice on the control worker's answer), a loop that
//! waits for one of the kind's `max_workers` worker slots (the control worker starts a
//! worker with the grant when the kind needs one), the Task state on the kind's activity
//! with the step kind's Retry and a Catch, and the slot given back on either outcome. Every outcome, failures included, is written under `$.levels`, so one failing
//! cell never stops the others; `Work done` tells the control worker the work is over.
//! `Health` waits, asks the control worker ([`super::control`]) to start workers for kinds
//! with work and none alive, and loops until the control worker says the work is done.
//! The tail is `Pipeline: normalize results` (one record per task) and `Pipeline: check
//! for failures` (fails the execution when any task failed).
//!
//! No step can clash with the export's own states: those have a space in their name, and
//! the ones a task's states could look like (`<task> failed`) also have a `:`, which task
//! names never hold. Task names are capped at 64 characters, so every state name fits Step
//! Functions' 80.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{json, Map, Value};

use hgauto_core::error::Result;
use hgauto_core::retry::RetryPolicy;

use super::definition::Pipeline;
use super::plan::{expand, Selection, Task};
use super::step::Body;

/// The error a worker reports for a failure of the work itself: never retried.
pub const FATAL_ERROR: &str = "hgauto.Fatal";

/// How long a task waits before it asks again for a worker slot of its kind.
pub const SLOT_WAIT_SECS: u64 = 10;

/// The error a worker reports when it gives a task back untouched: retried at once.
pub const RELEASED_ERROR: &str = "hgauto.Released";

/// Where a definition's tasks go: the control activity and one activity per worker kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Activities {
    /// Checks, worker starts, function steps and health checks.
    pub control: String,
    /// Worker kind → activity ARN.
    pub workers: BTreeMap<String, String>,
}

impl Activities {
    /// ARNs `<prefix><pipeline>-control` and `<prefix><pipeline>-<kind>`, with a prefix
    /// like `arn:aws:states:eu-west-1:123456789012:activity:`.
    pub fn named(p: &Pipeline, arn_prefix: &str) -> Self {
        Activities {
            control: format!("{arn_prefix}{}-control", p.name),
            workers: p
                .workers
                .keys()
                .map(|k| (k.clone(), format!("{arn_prefix}{}-{k}", p.name)))
                .collect(),
        }
    }
}

/// Retry rules for a step kind: fatal errors never, released tasks at once, the rest by
/// the policy.
pub fn retriers(policy: &RetryPolicy) -> Value {
    json!([
        {"ErrorEquals": [FATAL_ERROR], "MaxAttempts": 0},
        {"ErrorEquals": [RELEASED_ERROR], "IntervalSeconds": 1, "MaxAttempts": 100, "BackoffRate": 1.0},
        {
            "ErrorEquals": ["States.ALL"],
            "IntervalSeconds": policy.base_delay.as_secs().max(1),
            "MaxAttempts": policy.max_retries,
            "BackoffRate": policy.factor.max(1.0),
            "MaxDelaySeconds": policy.max_delay.as_secs().max(1),
        }
    ])
}

/// The state machine definition for the selected part of `p`.
pub fn definition(
    p: &Pipeline,
    activities: &Activities,
    selection: &Selection,
    health_check: Duration,
) -> Result<Value> {
    let tasks = expand(p, selection)?;
    for k in p.workers.keys() {
        if !activities.workers.contains_key(k) {
            return Err(hgauto_core::Error::invalid(
                format!("activities for pipeline {:?}", p.name),
                format!("no activity for worker kind {k:?}"),
            ));
        }
    }
    // Level of a task: one more than its deepest need. Slot: its index in its level.
    let mut level = vec![0usize; tasks.len()];
    for (i, t) in tasks.iter().enumerate() {
        level[i] = t.deps.iter().map(|&d| level[d] + 1).max().unwrap_or(0);
    }
    let depth = level.iter().max().map_or(0, |m| m + 1);
    let mut slot = vec![0usize; tasks.len()];
    let mut levels: Vec<Vec<usize>> = vec![Vec::new(); depth];
    for (i, &l) in level.iter().enumerate() {
        slot[i] = levels[l].len();
        levels[l].push(i);
    }
    let path = |t: usize| format!("$.levels.L{}[{}]", level[t], slot[t]);

    let mut work = Map::new();
    for (l, members) in levels.iter().enumerate() {
        let branches: Vec<Value> = members
            .iter()
            .map(|&t| task_branch(p, activities, &tasks, t, &path))
            .collect();
        let next = if l + 1 < depth {
            json!({"Next": format!("Level {}", l + 1)})
        } else {
            json!({"Next": "Work done"})
        };
        let mut state = json!({
            "Type": "Parallel",
            "Branches": branches,
            "ResultPath": format!("$.levels.L{l}"),
        });
        merge(&mut state, next);
        work.insert(format!("Level {l}"), state);
    }
    // Tells the control worker that this execution's work is over, which ends the health
    // loop (a Parallel branch cannot see its sibling).
    work.insert(
        "Work done".into(),
        json!({
            "Type": "Task",
            "Resource": activities.control,
            "Parameters": {"action": "work-done", "pipeline": p.name, "execution.$": "$$.Execution.Id"},
            "ResultPath": null,
            "Retry": retriers(&RetryPolicy::cheap()),
            "Catch": [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": "Work end"}],
            "Next": "Work end"
        }),
    );
    work.insert("Work end".into(), json!({"Type": "Succeed"}));
    let work_start = if depth == 0 { "Work done" } else { "Level 0" };

    let control = &activities.control;
    let health = json!({
        "StartAt": "Health wait",
        "States": {
            "Health wait": {"Type": "Wait", "Seconds": health_check.as_secs().max(1), "Next": "Health check"},
            "Health check": {
                "Type": "Task",
                "Resource": control,
                "Parameters": {"action": "health-check", "pipeline": p.name, "execution.$": "$$.Execution.Id"},
                "ResultPath": "$.health",
                "Retry": retriers(&RetryPolicy::cheap()),
                "Catch": [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.health_error", "Next": "Health wait"}],
                "Next": "Health finished?"
            },
            "Health finished?": {
                "Type": "Choice",
                "Choices": [{"Variable": "$.health.finished", "BooleanEquals": true, "Next": "Health end"}],
                "Default": "Health wait"
            },
            "Health end": {"Type": "Succeed"}
        }
    });

    let mut normalized = Map::new();
    for (i, t) in tasks.iter().enumerate() {
        normalized.insert(
            format!("{}.$", result_key(i, t)),
            json!(path(i).replacen("$.", "$.run[0].", 1)),
        );
    }
    let failed_checks: Vec<Value> = tasks
        .iter()
        .enumerate()
        .map(|(i, t)| json!({"Variable": format!("$.tasks.{}.state", result_key(i, t)), "StringEquals": "failed"}))
        .collect();
    let check = if failed_checks.is_empty() {
        json!({"Type": "Pass", "Next": "Pipeline: succeeded"})
    } else {
        json!({
            "Type": "Choice",
            "Choices": [{"Or": failed_checks, "Next": "Pipeline: failed"}],
            "Default": "Pipeline: succeeded"
        })
    };
    Ok(json!({
        "Comment": format!("hgauto pipeline {} (generated by hgauto; do not edit)", p.name),
        "StartAt": "Pipeline: run",
        "States": {
            "Pipeline: run": {
                "Type": "Parallel",
                "Branches": [{"StartAt": work_start, "States": work}, health],
                "ResultPath": "$.run",
                "Next": "Pipeline: normalize results"
            },
            "Pipeline: normalize results": {
                "Type": "Pass",
                "Parameters": {"pipeline": p.name, "tasks": normalized},
                "Next": "Pipeline: check for failures"
            },
            "Pipeline: check for failures": check,
            "Pipeline: failed": {"Type": "Fail", "Error": "hgauto.StepsFailed", "Cause": "some tasks failed: see the output of Pipeline: normalize results"},
            "Pipeline: succeeded": {"Type": "Succeed"}
        }
    }))
}

/// `t3_build_3_1_debian`: a task's key in JSON paths (letters, digits and `_` only, and
/// unique through its index).
fn result_key(i: usize, t: &Task) -> String {
    let safe: String = t
        .name
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    format!("t{i}_{safe}")
}

fn task_branch(
    p: &Pipeline,
    a: &Activities,
    tasks: &[Task],
    t: usize,
    path: &dyn Fn(usize) -> String,
) -> Value {
    let task = &tasks[t];
    let step = &p.steps[task.step];
    let n = &task.name;
    let cell = serde_json::to_value(&task.cell).unwrap_or_default();
    let record = |state: &str, blocked: bool, extra: Value| {
        let mut v =
            json!({"task": n, "step": step.name, "cell": cell, "state": state, "blocked": blocked});
        merge(&mut v, extra);
        v
    };
    let catch = |next: String| json!([{"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": next}]);
    let mut states = Map::new();
    let s_blocked = format!("{n} blocked");
    let s_check = format!("{n} should_run");
    let s_choice = format!("{n} should_run?");
    let s_skipped = format!("{n} skipped");
    let s_start = format!("{n} get worker");
    let s_granted = format!("{n} worker?");
    let s_wait = format!("{n} wait worker");
    let s_run = n.clone();
    let s_free = format!("{n} free worker");
    let s_free_failed = format!("{n} free failed");
    let s_ok = format!("{n} succeeded");
    let s_failed = format!("{n} failed");
    let has_check = !matches!(step.should_run, super::step::ShouldRun::Always);
    let (resource, needs_worker) = match (&step.body, &step.worker) {
        (Body::Command { .. }, Some(kind)) => (a.workers[kind].clone(), Some(kind.clone())),
        _ => (a.control.clone(), None),
    };
    let after_deps = if has_check {
        s_check.clone()
    } else if needs_worker.is_some() {
        s_start.clone()
    } else {
        s_run.clone()
    };
    let start = if task.deps.is_empty() {
        after_deps.clone()
    } else {
        let conds: Vec<Value> = task
            .deps
            .iter()
            .map(|&d| json!({"Variable": format!("{}.blocked", path(d)), "BooleanEquals": true}))
            .collect();
        let cond = if conds.len() == 1 {
            conds[0].clone()
        } else {
            json!({"Or": conds})
        };
        let mut choice = cond;
        merge(&mut choice, json!({"Next": s_blocked}));
        states.insert(
            format!("{n} needs"),
            json!({"Type": "Choice", "Choices": [choice], "Default": after_deps}),
        );
        states.insert(
            s_blocked.clone(),
            json!({"Type": "Pass", "Parameters": record("skipped", true, json!({"reason": "a task it needs failed"})), "End": true}),
        );
        format!("{n} needs")
    };
    if has_check {
        states.insert(
            s_check.clone(),
            json!({
                "Type": "Task",
                "Resource": a.control,
                "Parameters": {"action": "should-run", "task": n, "step": step.name, "cell": cell, "mode.$": "$.mode"},
                "ResultPath": "$.check",
                "Retry": retriers(&RetryPolicy::cheap()),
                "Catch": catch(s_failed.clone()),
                "Next": s_choice
            }),
        );
        states.insert(
            s_choice.clone(),
            json!({
                "Type": "Choice",
                "Choices": [{"Variable": "$.check.run", "BooleanEquals": false, "Next": s_skipped}],
                "Default": if needs_worker.is_some() { s_start.clone() } else { s_run.clone() }
            }),
        );
        states.insert(
            s_skipped.clone(),
            json!({"Type": "Pass", "Parameters": record("skipped", false, json!({"reason.$": "$.check.reason"})), "End": true}),
        );
    }
    // A task on a worker holds one of its kind's `max_workers` slots while it runs; a
    // task granted none waits and asks again, so no more run at once than the cap and
    // none waits in the activity's queue (where its timeouts would already be running).
    let (after_run, after_failure) = match &needs_worker {
        Some(_) => (s_free.clone(), s_free_failed.clone()),
        None => (s_ok.clone(), s_failed.clone()),
    };
    if let Some(kind) = &needs_worker {
        let slot = |action: &str| {
            json!({
                "action": action, "kind": kind, "activity": resource, "task": n,
                "pipeline": p.name, "execution.$": "$$.Execution.Id"
            })
        };
        states.insert(
            s_start.clone(),
            json!({
                "Type": "Task",
                "Resource": a.control,
                "Parameters": slot("acquire-worker"),
                "ResultPath": "$.slot",
                "Retry": retriers(&RetryPolicy::cheap()),
                "Catch": catch(s_free_failed.clone()),
                "Next": s_granted
            }),
        );
        states.insert(
            s_granted,
            json!({
                "Type": "Choice",
                "Choices": [{"Variable": "$.slot.granted", "BooleanEquals": true, "Next": s_run}],
                "Default": s_wait
            }),
        );
        states.insert(
            s_wait,
            json!({"Type": "Wait", "Seconds": SLOT_WAIT_SECS, "Next": s_start}),
        );
        // A slot that cannot be given back is not a failure of the task.
        let free = |next: &str| {
            json!({
                "Type": "Task",
                "Resource": a.control,
                "Parameters": slot("release-worker"),
                "ResultPath": null,
                "Retry": retriers(&RetryPolicy::cheap()),
                "Catch": [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.release_error", "Next": next}],
                "Next": next
            })
        };
        states.insert(s_free, free(&s_ok));
        states.insert(s_free_failed, free(&s_failed));
    }
    let action = if needs_worker.is_some() {
        "run"
    } else {
        "function"
    };
    states.insert(
        s_run.clone(),
        json!({
            "Type": "Task",
            "Resource": resource,
            "Parameters": {
                "action": action, "task": n, "step": step.name, "cell": cell,
                "inputs.$": "$.inputs", "mode.$": "$.mode", "retry.$": "$$.State.RetryCount"
            },
            "TimeoutSeconds": step.timeout.as_secs().max(1),
            "HeartbeatSeconds": 300,
            "ResultPath": "$.out",
            "Retry": retriers(&step.kind.policy()),
            "Catch": catch(after_failure),
            "Next": after_run
        }),
    );
    states.insert(
        s_ok,
        json!({"Type": "Pass", "Parameters": record("succeeded", false, json!({"output.$": "$.out"})), "End": true}),
    );
    states.insert(
        s_failed,
        json!({"Type": "Pass", "Parameters": record("failed", true, json!({"error.$": "$.error"})), "End": true}),
    );
    json!({"StartAt": start, "States": states})
}

fn merge(into: &mut Value, from: Value) {
    if let (Value::Object(a), Value::Object(b)) = (into, from) {
        a.extend(b);
    }
}

/// EC2 user data for an on-demand worker, as HHVM's `worker.sh`: the worker serves one
/// activity. `init` runs once first and may define `cleanup()`, which runs before the
/// machine powers off (its shutdown behaviour terminates it), on success and on failure.
/// Each task runs `task_script` with the task's JSON input in `HGAUTO_TASK_INPUT`, with a
/// heartbeat every 60 s. A failed task ends the worker, so a retry gets a fresh machine;
/// `idle_polls` empty long polls (60 s each) in a row end it too. Every line goes to the
/// system log under `w_<instance id>`, and each task's part starts with its name.
pub fn worker_user_data(
    activity_arn: &str,
    region: &str,
    task_script: &str,
    init: Option<&str>,
    idle_polls: u32,
) -> String {
    let q = |s: &str| format!("'{}'", s.replace('\'', "'\\''"));
    let json_field = |field: &str| {
        format!(
            "python3 -c 'import json,sys; print(json.load(sys.stdin).get(\"{field}\") or \"\")'"
        )
    };
    format!(
        r#"#!/bin/bash
# hgauto pipeline worker (generated): one activity per worker.
export ACTIVITY_ARN={arn}
export AWS_DEFAULT_REGION={region}
TASK_SCRIPT={script}
INSTANCE_ID=$(cat /var/lib/cloud/data/instance-id 2>/dev/null || hostname)
exec > >(logger -t "w_$INSTANCE_ID") 2>&1
cleanup() {{ :; }}
{init}
trap 'cleanup; shutdown -h now' EXIT
idle=0
while [ "$idle" -lt {idle_polls} ]; do
  resp=$(aws stepfunctions get-activity-task --activity-arn "$ACTIVITY_ARN" --worker-name "$INSTANCE_ID") || {{ idle=$((idle+1)); continue; }}
  token=$(printf '%s' "$resp" | {token})
  if [ -z "$token" ]; then idle=$((idle+1)); continue; fi
  idle=0
  input=$(printf '%s' "$resp" | {input})
  task=$(printf '%s' "$input" | {task})
  echo "=== $task ==="
  ( while sleep 60; do aws stepfunctions send-task-heartbeat --task-token "$token" || exit; done ) &
  beat=$!
  HGAUTO_TASK_INPUT="$input" bash -c "$TASK_SCRIPT"
  code=$?
  kill "$beat" 2>/dev/null
  if [ "$code" -eq 0 ]; then
    aws stepfunctions send-task-success --task-token "$token" --task-output "{{\"machine\":\"$INSTANCE_ID\",\"task\":\"$task\"}}"
  else
    aws stepfunctions send-task-failure --task-token "$token" --error {fatal} --cause "$task failed on $INSTANCE_ID with exit code $code"
    exit 1
  fi
done
"#,
        arn = q(activity_arn),
        region = q(region),
        script = q(task_script),
        init = init.unwrap_or("# no init script"),
        idle_polls = idle_polls.max(1),
        token = json_field("taskToken"),
        input = json_field("input"),
        task = json_field("task"),
        fatal = FATAL_ERROR,
    )
}
