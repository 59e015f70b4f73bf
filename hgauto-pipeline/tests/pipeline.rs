//! The pipeline engine on the local provider, with real processes: a 3 x 4 matrix of
//! build, test and publish with injected failures, a worker lost mid-task, re-runs that
//! skip what is published, the fake and local modes, the HTML report in Chromium, and bad
//! input refused before any machine exists.

use std::collections::BTreeMap;
use std::time::Duration;

use hgauto_core::{Error, MachineSpec, ResourceProvider};
use hgauto_pipeline::{Pipeline, RunResult, Step, StepCommand, StepKind, TaskState, WorkerKind};

mod common;
use common::*;

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
