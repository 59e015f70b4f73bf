//! The control worker of an exported pipeline, on the local provider: should_run answers,
//! function steps, worker starts labelled with their activity, and a health check that
//! replaces a lost worker until the execution's work is done.

use std::collections::BTreeMap;
use std::sync::Arc;

use hgauto_core::{DirPublisher, LocalProvider, MachineSpec, ResourceProvider};
use hgauto_pipeline::{Control, Pipeline, ShouldRun, Step, StepCommand, StepFailure, WorkerKind};
use serde_json::json;

fn pipeline(published: &std::path::Path) -> Pipeline {
    Pipeline::builder("ctl")
        .dimension("v", ["1", "2"])
        .worker("builder", WorkerKind::new(MachineSpec::linux()))
        .step(
            Step::command("build", "builder", StepCommand::argv(["make"]))
                .over(["v"])
                .should_run(ShouldRun::Published {
                    publisher: Arc::new(DirPublisher::new(published)),
                    artifacts: vec!["pkg-{v}.tgz".into()],
                }),
        )
        .step(
            Step::function("notify", |ctx| async move {
                if ctx.value("channel") == Some("broken") {
                    return Err(StepFailure::fatal("no such channel"));
                }
                Ok([(
                    "sent".to_owned(),
                    format!("{}@{}", ctx.task, ctx.value("channel").unwrap_or("")),
                )]
                .into())
            })
            .needs(["build"]),
        )
        .build()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_answers_checks_functions_starts_and_health_checks() {
    let dir = tempfile::tempdir().unwrap();
    let published = dir.path().join("dist");
    std::fs::create_dir_all(&published).unwrap();
    std::fs::write(published.join("pkg-1.tgz"), "built").unwrap();
    let provider = Arc::new(LocalProvider::new(dir.path().join("state")).unwrap());
    let inputs: BTreeMap<String, String> = [("channel".to_owned(), "#release".to_owned())].into();
    let control = Control::new(pipeline(&published), inputs)
        .unwrap()
        .provider(provider.clone());

    let done = control
        .handle(&json!({"action": "should-run", "task": "build-1", "mode": "normal"}))
        .await
        .unwrap();
    assert_eq!(done["run"], false);
    assert!(
        done["reason"]
            .as_str()
            .unwrap()
            .starts_with("already published to dir:"),
        "{done}"
    );
    let todo = control
        .handle(&json!({"action": "should-run", "task": "build-2", "mode": "normal"}))
        .await
        .unwrap();
    assert_eq!(todo, json!({"run": true, "reason": ""}));
    let fake = control
        .handle(&json!({"action": "should-run", "task": "build-1", "mode": "fake"}))
        .await
        .unwrap();
    assert_eq!(fake["run"], true, "fake runs skip no step");

    let out = control
        .handle(&json!({"action": "function", "task": "notify", "inputs": {}, "mode": "normal"}))
        .await
        .unwrap();
    assert_eq!(out, json!({"outputs": {"sent": "notify@#release"}}));
    let e = control
        .handle(&json!({"action": "function", "task": "notify", "inputs": {"channel": "broken"}, "mode": "normal"}))
        .await
        .unwrap_err();
    assert!(!e.retry && e.message.contains("no such channel"), "{e:?}");

    let activity = "arn:aws:states:us-east-1:1:activity:ctl-builder";
    let started = control
        .handle(&json!({"action": "acquire-worker", "kind": "builder", "activity": activity, "task": "build-2", "execution": "e1"}))
        .await
        .unwrap();
    assert_eq!(started["granted"], true);
    let first = started["machine"].as_str().unwrap().to_owned();
    let rec = provider.ledger().get(&first).unwrap().unwrap();
    assert_eq!(
        rec.details.get("label:hgauto-activity").map(String::as_str),
        Some(activity)
    );

    // A live worker: nothing to start.
    let hc = control
        .handle(&json!({"action": "health-check", "execution": "e1"}))
        .await
        .unwrap();
    assert_eq!(hc, json!({"finished": false, "started": []}));
    // The worker is lost: the health check starts another.
    provider
        .terminate(std::slice::from_ref(&first))
        .await
        .unwrap();
    let hc = control
        .handle(&json!({"action": "health-check", "execution": "e1"}))
        .await
        .unwrap();
    let replaced = hc["started"].as_array().unwrap();
    assert_eq!(replaced.len(), 1);
    assert_ne!(replaced[0], first.as_str());
    // Another execution asked for nothing; this one's work ends the loop.
    assert_eq!(
        control
            .handle(&json!({"action": "health-check", "execution": "e2"}))
            .await
            .unwrap()["started"],
        json!([])
    );
    control
        .handle(&json!({"action": "work-done", "execution": "e1"}))
        .await
        .unwrap();
    assert_eq!(
        control
            .handle(&json!({"action": "health-check", "execution": "e1"}))
            .await
            .unwrap()["finished"],
        true
    );

    for bad in [
        json!({"action": "dance"}),
        json!({"action": "should-run", "task": "nope"}),
        json!({"task": "x"}),
    ] {
        let e = control.handle(&bad).await.unwrap_err();
        assert!(!e.retry, "{bad}: {e:?}");
    }
    provider.purge().await.unwrap();

    // The local provider has no first boot to run HHVM's worker.sh at: refused, not ignored.
    let booted = Control::new(pipeline(&published), BTreeMap::new())
        .unwrap()
        .provider(provider.clone())
        .worker_boot(hgauto_pipeline::WorkerBoot {
            region: "us-east-1".into(),
            task_script: "make".into(),
            init: None,
            idle_polls: 1,
        });
    let e = booted
        .handle(&json!({"action": "start-worker", "kind": "builder", "activity": activity}))
        .await
        .unwrap_err();
    assert!(e.message.contains("user data"), "{e:?}");
    assert!(provider.list_managed().await.unwrap().is_empty());
}

/// 10 tasks of a kind capped at 2 workers: 2 slots at a time, never more than 2 machines,
/// a freed slot goes to a waiting task on the worker already up, a lost worker is
/// replaced on the next grant, and the end of the execution frees what it still held.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_slots_keep_a_step_within_max_workers() {
    let dir = tempfile::tempdir().unwrap();
    let provider = Arc::new(LocalProvider::new(dir.path().join("state")).unwrap());
    let values: Vec<String> = (0..10).map(|i| i.to_string()).collect();
    let p = Pipeline::builder("capped")
        .dimension("v", values)
        .worker(
            "builder",
            WorkerKind::new(MachineSpec::linux()).max_workers(2),
        )
        .step(Step::command("build", "builder", StepCommand::argv(["make"])).over(["v"]))
        .build()
        .unwrap();
    let control = Control::new(p, BTreeMap::new())
        .unwrap()
        .provider(provider.clone());
    let activity = "arn:aws:states:us-east-1:1:activity:capped-builder";
    let ask = |action: &'static str, task: String| json!({"action": action, "kind": "builder", "activity": activity, "task": task, "execution": "e1"});
    let live = || async {
        provider
            .list_managed()
            .await
            .unwrap()
            .iter()
            .filter(|r| r.exists)
            .count()
    };
    let mut granted = Vec::new();
    for round in 0..2 {
        for i in 0..10 {
            let a = control
                .handle(&ask("acquire-worker", format!("build-{i}")))
                .await
                .unwrap();
            if a["granted"] == true && !granted.contains(&i) {
                granted.push(i);
            }
            assert!(live().await <= 2, "round {round}, task {i}");
        }
    }
    assert_eq!(granted, [0, 1], "two slots, and asking again keeps them");
    assert_eq!(live().await, 2);

    // A freed slot goes to the next task that asks, on the workers already up.
    control
        .handle(&ask("release-worker", "build-0".into()))
        .await
        .unwrap();
    let a = control
        .handle(&ask("acquire-worker", "build-5".into()))
        .await
        .unwrap();
    assert_eq!(a, json!({"granted": true, "machine": null}));
    assert_eq!(
        control
            .handle(&ask("acquire-worker", "build-6".into()))
            .await
            .unwrap()["granted"],
        false
    );
    // A worker powers off (a failed task ends it): the next grant starts one in its place.
    let ids: Vec<String> = provider
        .list_managed()
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.id)
        .collect();
    provider.terminate(&ids[..1]).await.unwrap();
    control
        .handle(&ask("release-worker", "build-1".into()))
        .await
        .unwrap();
    let a = control
        .handle(&ask("acquire-worker", "build-6".into()))
        .await
        .unwrap();
    assert_eq!(a["granted"], true);
    assert!(a["machine"].is_string(), "{a}");
    assert_eq!(live().await, 2);

    // The end of the execution frees its slots: another execution gets both.
    control
        .handle(&json!({"action": "work-done", "execution": "e1"}))
        .await
        .unwrap();
    for task in ["build-7", "build-8"] {
        let mut req = ask("acquire-worker", task.into());
        req["execution"] = "e2".into();
        assert_eq!(control.handle(&req).await.unwrap()["granted"], true);
    }
    assert_eq!(live().await, 2);
    provider.purge().await.unwrap();
}
