//! An interrupt during provisioning starts the teardown at once, whatever provisioning is
//! waiting for. With the default `host_key_wait` (120 s), moto's consoles never show host
//! keys, so without that the process would sit out the whole wait before cleaning up.
//! SIGINT and SIGTERM land at seeded random moments of the first 3 s: before the launch,
//! during it, and while the instances boot and their host keys are awaited.

mod support;

use std::io::{BufRead, BufReader};
use std::os::unix::process::ExitStatusExt;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hgauto_aws::Ec2Provider;
use hgauto_core::{ResourceKind, ResourceProvider, TemporaryMachines};
use support::{
    child_env, config_for, live_instances, micro_linux_spec, Moto, CHILD_ENDPOINT, CHILD_STATE,
};

/// Well above the few seconds the teardown takes (terminate, then look again for a launch
/// still in flight), and far below the 120 s host-key wait an interrupt used to sit out.
const EXIT_BOUND: Duration = Duration::from_secs(30);

/// Runs in the child: two guarded provisions of 2 with the default host-key wait.
#[test]
#[ignore = "run as a child process by the interrupt test"]
fn child_provisions_with_the_default_host_key_wait() {
    let Some((endpoint, state)) = child_env() else {
        return;
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async move {
        let config = config_for(&endpoint, std::path::Path::new(&state))
            .with_host_key_wait(Duration::from_secs(120));
        let ec2 = Ec2Provider::new(config).await.unwrap();
        let spec = micro_linux_spec(&ec2).await;
        let p: Arc<dyn ResourceProvider> = Arc::new(ec2);
        println!("STARTING");
        let (a, b) = tokio::join!(
            TemporaryMachines::provision(p.clone(), &spec, 2),
            TemporaryMachines::provision(p.clone(), &spec, 2),
        );
        println!("PROVISIONED {} {}", a.is_ok(), b.is_ok());
        tokio::time::sleep(Duration::from_secs(300)).await;
    });
}

#[test]
fn an_interrupt_mid_provision_tears_down_at_once_and_leaves_nothing() {
    let moto = Moto::start();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut rng = 20261207u64;
    let mut took = Vec::new();
    for (trial, sig) in [libc::SIGINT, libc::SIGTERM, libc::SIGINT, libc::SIGTERM]
        .into_iter()
        .enumerate()
    {
        let state = tempfile::tempdir().unwrap();
        let mut child = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--ignored",
                "--exact",
                "child_provisions_with_the_default_host_key_wait",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ENDPOINT, moto.endpoint())
            .env(CHILD_STATE, state.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        assert!(
            lines
                .by_ref()
                .map_while(Result::ok)
                .any(|l| l.ends_with("STARTING")),
            "trial {trial}: the child never started"
        );
        std::thread::spawn(move || for _ in lines {});
        // xorshift: a fixed, reproducible spread of moments over the first 3 s.
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        std::thread::sleep(Duration::from_millis(rng % 3000));
        let signalled = Instant::now();
        unsafe { libc::kill(child.id() as i32, sig) };
        let status = child.wait().unwrap();
        let elapsed = signalled.elapsed();
        took.push(elapsed);
        assert_eq!(status.signal(), Some(sig), "trial {trial}: {status:?}");
        assert!(
            elapsed < EXIT_BOUND,
            "trial {trial}: the child took {elapsed:?} to act on signal {sig}"
        );
        rt.block_on(async {
            let p = Ec2Provider::new(config_for(&moto.endpoint(), state.path()))
                .await
                .unwrap();
            let live = live_instances(&p, "hgauto-").await;
            assert!(
                live.is_empty(),
                "trial {trial}: {} instances left",
                live.len()
            );
            let machines: Vec<_> = p
                .ledger()
                .records()
                .unwrap()
                .into_iter()
                .filter(|r| r.kind == ResourceKind::Machine)
                .collect();
            assert!(
                machines.is_empty(),
                "trial {trial}: the ledger lists {machines:?}"
            );
            p.purge().await.unwrap();
        });
    }
    eprintln!("signal to exit: {took:?}");
}
