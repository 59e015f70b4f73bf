//! Crash safety: a provisioning process killed with SIGKILL leaves nothing after `sweep`;
//! instances past their deadline are swept; live ones of a live creator are not.

mod support;

use std::time::Duration;

use hgauto_aws::Ec2Provider;
use hgauto_core::{MachineSpec, ResourceKind, ResourceProvider};
use support::{
    child_env, config_for, live_instances, micro_linux_spec, some_image, spawn_provisioning_child,
    Moto,
};

/// Runs in the child: provisions 5 instances, then waits to be killed.
/// A moto_server, a provider over it with its own state, and a t3.micro Linux spec on an
/// image moto knows.
async fn linux_micros() -> (Moto, tempfile::TempDir, Ec2Provider, MachineSpec) {
    let moto = Moto::start();
    let state = tempfile::tempdir().unwrap();
    let p = Ec2Provider::new(config_for(&moto.endpoint(), state.path()))
        .await
        .unwrap();
    let image = some_image(&p, false).await;
    let spec = MachineSpec::linux()
        .with_image(&image)
        .with_instance_type("t3.micro");
    (moto, state, p, spec)
}

#[test]
#[ignore = "run as a child process by the crash test"]
fn child_provisions_five() {
    let Some((endpoint, state)) = child_env() else {
        return;
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async move {
        let p = Ec2Provider::new(config_for(&endpoint, std::path::Path::new(&state)))
            .await
            .unwrap();
        let spec = micro_linux_spec(&p).await;
        println!("STARTING");
        let _ = p.provision(&spec, 5).await;
        println!("PROVISIONED");
        tokio::time::sleep(Duration::from_secs(300)).await;
    });
}

#[test]
fn sigkill_mid_provision_then_sweep_leaves_nothing() {
    let moto = Moto::start();
    let state = tempfile::tempdir().unwrap();
    // Kill it the moment its ledger shows the launch (pending record or instances).
    let mut child = spawn_provisioning_child("child_provisions_five", &moto, state.path());
    child.kill().unwrap();
    child.wait().unwrap();

    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let p = Ec2Provider::new(config_for(&moto.endpoint(), state.path()))
            .await
            .unwrap();
        // A launch cut off mid-way may still be materialising: sweep until clean (bounded),
        // as a periodic sweep would.
        let mut clean = false;
        for _ in 0..25 {
            p.sweep(Duration::ZERO).await.unwrap();
            let machines = p
                .ledger()
                .records()
                .unwrap()
                .into_iter()
                .filter(|r| r.kind == ResourceKind::Machine)
                .count();
            if live_instances(&p, "hgauto-").await.is_empty() && machines == 0 {
                clean = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        assert!(
            clean,
            "left: {} live instances, ledger {:?}",
            live_instances(&p, "hgauto-").await.len(),
            p.ledger().records().unwrap()
        );
        // The supporting resources are purge's job.
        p.purge().await.unwrap();
        assert!(p.ledger().records().unwrap().is_empty());
    });
}

#[tokio::test]
async fn sweep_takes_expired_instances_and_spares_live_ones() {
    let (_moto, _state, p, spec) = linux_micros().await;
    let expired = p
        .provision(&spec.clone().with_lifetime(Duration::ZERO), 1)
        .await
        .unwrap();
    let kept = p
        .provision(&spec.with_lifetime(Duration::from_secs(3600)), 1)
        .await
        .unwrap();
    let report = p.sweep(Duration::from_secs(600)).await.unwrap();
    assert!(
        report.removed.contains(&expired[0].id().to_owned()),
        "{report:?}"
    );
    assert!(
        !report.removed.contains(&kept[0].id().to_owned()),
        "{report:?}"
    );
    assert_eq!(live_instances(&p, "hgauto-").await.len(), 1);
    p.purge().await.unwrap();
}

/// A long-lived machine whose deadline was moved on is not swept when the first one passes.
#[tokio::test]
async fn an_extended_deadline_keeps_a_machine_from_the_sweep() {
    let (_moto, _state, p, spec) = linux_micros().await;
    let spec = spec.with_lifetime(Duration::ZERO);
    let machines = p.provision(&spec, 2).await.unwrap();
    let (kept, gone) = (machines[0].id().to_owned(), machines[1].id().to_owned());
    let until = hgauto_core::clock::unix_now() + 3600;
    p.extend_deadline(std::slice::from_ref(&kept), until)
        .await
        .unwrap();
    let managed = p.list_managed().await.unwrap();
    let record = managed.iter().find(|m| m.id == kept).expect("listed");
    assert_eq!(record.deadline, Some(until));
    let report = p.sweep(Duration::from_secs(600)).await.unwrap();
    assert!(report.removed.contains(&gone), "{report:?}");
    assert!(!report.removed.contains(&kept), "{report:?}");
    assert_eq!(live_instances(&p, "hgauto-").await.len(), 1);
    let e = p
        .extend_deadline(&["sg-123".to_owned()], until)
        .await
        .unwrap_err();
    assert!(matches!(e, hgauto_core::Error::InvalidInput { .. }), "{e}");
    p.purge().await.unwrap();
}

/// A pipeline worker's label is the instance's `Name` tag, as the EC2 console shows it.
#[tokio::test]
async fn set_label_names_the_instance() {
    let (_moto, _state, p, spec) = linux_micros().await;
    let id = p.provision(&spec, 1).await.unwrap()[0].id().to_owned();
    for label in ["ww-0-builder", "wa-1-build-3.1-debian"] {
        p.set_label(&id, label).await.unwrap();
    }
    let name = live_instances(&p, "hgauto-").await[0]
        .tags()
        .iter()
        .find(|t| t.key() == Some("Name"))
        .and_then(|t| t.value().map(str::to_owned));
    assert_eq!(name.as_deref(), Some("wa-1-build-3.1-debian"));
    let e = p.set_label("ami-123", "x").await.unwrap_err();
    assert!(matches!(e, hgauto_core::Error::InvalidInput { .. }), "{e}");
    p.purge().await.unwrap();
}

#[tokio::test]
async fn sweep_takes_ledger_instances_that_stay_unreachable_after_the_grace_period() {
    use hgauto_aws::ec2::ProbeTarget;
    use std::sync::Mutex;
    let (_moto, _state, p, spec) = linux_micros().await;
    let ms = p.provision(&spec, 2).await.unwrap();
    let (dead, alive) = (ms[0].id().to_owned(), ms[1].id().to_owned());
    let probed: Mutex<Vec<ProbeTarget>> = Mutex::new(Vec::new());
    let dead2 = dead.clone();
    let probe =
        |t: ProbeTarget| -> std::pin::Pin<Box<dyn std::future::Future<Output = bool> + Send>> {
            let up = t.id != dead2;
            probed.lock().unwrap().push(t);
            Box::pin(async move { up })
        };
    // Within the grace period nobody is probed or removed.
    let report = p
        .sweep_with(Duration::from_secs(3600), &probe)
        .await
        .unwrap();
    assert!(report.removed.is_empty(), "{report:?}");
    assert!(probed.lock().unwrap().is_empty());
    // After it, the unreachable one goes; the reachable one stays.
    let report = p.sweep_with(Duration::ZERO, &probe).await.unwrap();
    assert_eq!(report.removed, vec![dead.clone()]);
    let targets = probed.lock().unwrap().clone();
    assert_eq!(targets.len(), 2);
    assert!(targets.iter().all(|t| t.address.is_some() && !t.ssm));
    let live: Vec<String> = live_instances(&p, "hgauto-")
        .await
        .iter()
        .filter_map(|i| i.instance_id().map(str::to_owned))
        .collect();
    assert_eq!(live, vec![alive]);
    assert!(p.ledger().records().unwrap().iter().all(|r| r.id != dead));
    p.purge().await.unwrap();
}

/// A sweep from cron next to a live `ensure_image` (its build instance running, then
/// stopped by its own poweroff, never reachable over SSH) leaves the build alone, even
/// with a probe that finds every instance unreachable and no grace period.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sweep_during_an_image_build_leaves_the_build_alone() {
    use std::sync::Arc;
    let moto = Moto::start();
    let state = tempfile::tempdir().unwrap();
    let p = Arc::new(
        Ec2Provider::new(config_for(&moto.endpoint(), state.path()))
            .await
            .unwrap(),
    );
    let image = some_image(&p, false).await;
    let mut recipe = hgauto_core::ImageRecipe::new("swept", hgauto_core::Platform::Linux, &image)
        .with_script("true");
    recipe.instance_type = Some("t3.micro".into());
    let builder = {
        let p = p.clone();
        tokio::spawn(async move { p.ensure_image(&recipe).await })
    };
    // The build's own poweroff, 3 s after the instance runs (moto runs no user data).
    let poweroff = support::play_build_instances(Duration::from_secs(3), p.client().clone());
    let unreachable = |_t: hgauto_aws::ec2::ProbeTarget| -> std::pin::Pin<Box<dyn std::future::Future<Output = bool> + Send>> {
        Box::pin(async { false })
    };
    let mut sweeps = 0;
    while !builder.is_finished() {
        let report = p.sweep_with(Duration::ZERO, &unreachable).await.unwrap();
        // Once the image exists, `ensure_image` terminates its build instance itself, and
        // a sweep may then forget that instance's record (reported as removed). Before it,
        // no instance may go.
        let instances: Vec<&String> = report
            .removed
            .iter()
            .filter(|id| id.starts_with("i-"))
            .collect();
        if !instances.is_empty() {
            let images = p
                .client()
                .describe_images()
                .owners("self")
                .send()
                .await
                .unwrap();
            assert!(
                !images.images().is_empty(),
                "swept {instances:?} before the image existed"
            );
        }
        sweeps += 1;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    poweroff.abort();
    let built = builder.await.unwrap();
    assert!(built.is_ok(), "the build failed: {built:?}");
    assert!(sweeps >= 5, "only {sweeps} sweeps ran during the build");
    p.purge().await.unwrap();
}

/// A pipeline's control worker starts an on-demand worker on EC2 that boots HHVM's
/// `worker.sh` for its activity (user data), labelled with the activity.
#[tokio::test]
async fn control_starts_ec2_workers_with_the_worker_script() {
    use base64::Engine as _;
    use hgauto_pipeline::{Control, Pipeline, Step, StepCommand, WorkerBoot, WorkerKind};
    let (_moto, _state, p, spec) = linux_micros().await;
    let pipeline = Pipeline::builder("fleet")
        .worker("builder", WorkerKind::new(spec))
        .step(Step::command(
            "build",
            "builder",
            StepCommand::argv(["make"]),
        ))
        .build()
        .unwrap();
    let p = std::sync::Arc::new(p);
    let control = Control::new(pipeline, Default::default())
        .unwrap()
        .provider(p.clone())
        .worker_boot(WorkerBoot {
            region: "us-east-1".into(),
            task_script: "make -C /src build".into(),
            init: None,
            idle_polls: 10,
        });
    let activity = "arn:aws:states:us-east-1:123456789012:activity:fleet-builder";
    let out = control
        .handle(
            &serde_json::json!({"action": "start-worker", "kind": "builder", "activity": activity}),
        )
        .await
        .unwrap();
    let id = out["machine"].as_str().unwrap().to_owned();
    let attr = p
        .client()
        .describe_instance_attribute()
        .instance_id(&id)
        .attribute(aws_sdk_ec2::types::InstanceAttributeName::UserData)
        .send()
        .await
        .unwrap();
    let encoded = attr.user_data().and_then(|v| v.value()).unwrap_or_default();
    let script = String::from_utf8(
        base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .unwrap(),
    )
    .unwrap();
    assert!(
        script.contains(&format!("export ACTIVITY_ARN='{activity}'")),
        "{script}"
    );
    assert!(script.contains("TASK_SCRIPT='make -C /src build'"));
    let tagged = live_instances(&p, "hgauto-").await[0]
        .tags()
        .iter()
        .any(|t| t.key() == Some("hgauto-activity") && t.value() == Some(activity));
    assert!(tagged, "the worker is tagged with its activity");
    p.purge().await.unwrap();
}
