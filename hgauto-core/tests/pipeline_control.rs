//! The control worker of an exported pipeline, on the local provider: should_run answers,
//! function steps, worker starts labelled with their activity, and a health check that
//! replaces a lost worker until the execution's work is done.

use std::collections::BTreeMap;
use std::sync::Arc;

use hgauto_core::pipeline::{
    Control, Pipeline, ShouldRun, Step, StepCommand, StepFailure, WorkerKind,
};
use hgauto_core::{DirPublisher, LocalProvider, MachineSpec, ResourceProvider};
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
        .handle(&json!({"action": "start-worker", "kind": "builder", "activity": activity, "execution": "e1"}))
        .await
        .unwrap();
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
        .worker_boot(hgauto_core::pipeline::WorkerBoot {
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
