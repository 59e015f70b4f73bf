//! Ec2Provider under faults: 30% of API calls throttled by a proxy in front of moto, and
//! Ctrl-C (SIGINT) while several provisions run in parallel.

mod support;

use std::sync::Arc;
use std::time::Duration;

use hgauto_aws::Ec2Provider;
use hgauto_core::{MachineSpec, ResourceKind, ResourceProvider, TemporaryMachines};
use support::{
    child_env, config_for, live_instances, micro_linux_spec, some_image, spawn_provisioning_child,
    Moto, ThrottleProxy,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provisioning_ten_instances_survives_thirty_percent_throttling() {
    let moto = Moto::start();
    let proxy = ThrottleProxy::start(moto.port, 30);
    let state = tempfile::tempdir().unwrap();
    let p = Ec2Provider::new(config_for(&proxy.endpoint(), state.path()))
        .await
        .unwrap();
    let image = some_image(&p, false).await;
    let spec = MachineSpec::linux()
        .with_image(&image)
        .with_instance_type("t3.micro");
    // Ten instances in two concurrent launches, every call through the throttling proxy.
    let (a, b) = tokio::join!(p.provision(&spec, 5), p.provision(&spec, 5));
    let machines: Vec<_> = a.unwrap().into_iter().chain(b.unwrap()).collect();
    assert_eq!(machines.len(), 10);
    assert!(
        proxy.injected() >= 3,
        "the proxy throttled only {} of {} calls",
        proxy.injected(),
        proxy.injected() + proxy.forwarded()
    );
    // Exactly ten: a throttled RunInstances never reached moto, and retries did not duplicate.
    let direct = Ec2Provider::new(config_for(&moto.endpoint(), state.path()))
        .await
        .unwrap();
    assert_eq!(live_instances(&direct, "hgauto-").await.len(), 10);
    p.purge().await.unwrap();
    assert!(live_instances(&direct, "hgauto-").await.is_empty());
    assert!(direct.list_managed().await.unwrap().is_empty());
}

/// Runs in the child: three provisions of 3 in parallel under guards, then waits.
#[test]
#[ignore = "run as a child process by the Ctrl-C test"]
fn child_provisions_in_parallel() {
    let Some((endpoint, state)) = child_env() else {
        return;
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async move {
        let ec2 = Ec2Provider::new(config_for(&endpoint, std::path::Path::new(&state)))
            .await
            .unwrap();
        let spec = micro_linux_spec(&ec2).await;
        let p: Arc<dyn ResourceProvider> = Arc::new(ec2);
        println!("STARTING");
        let (a, b, c) = tokio::join!(
            TemporaryMachines::provision(p.clone(), &spec, 3),
            TemporaryMachines::provision(p.clone(), &spec, 3),
            TemporaryMachines::provision(p.clone(), &spec, 3),
        );
        println!("PROVISIONED");
        tokio::time::sleep(Duration::from_secs(300)).await;
        drop((a, b, c));
    });
}

#[test]
fn ctrl_c_during_parallel_provisioning_leaves_nothing() {
    let moto = Moto::start();
    let state = tempfile::tempdir().unwrap();
    // Interrupt as soon as the first launch is recorded, while the others are in flight.
    let mut child = spawn_provisioning_child("child_provisions_in_parallel", &moto, state.path());
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let status = child.wait().unwrap();
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(
        status.signal(),
        Some(libc::SIGINT),
        "the child dies of the signal after cleaning up: {status:?}"
    );

    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let p = Ec2Provider::new(config_for(&moto.endpoint(), state.path()))
            .await
            .unwrap();
        assert_eq!(
            live_instances(&p, "hgauto-").await.len(),
            0,
            "instances survived Ctrl-C"
        );
        let machines: Vec<_> = p
            .ledger()
            .records()
            .unwrap()
            .into_iter()
            .filter(|r| r.kind == ResourceKind::Machine)
            .collect();
        assert!(machines.is_empty(), "ledger still lists {machines:?}");
        p.purge().await.unwrap();
    });
}
