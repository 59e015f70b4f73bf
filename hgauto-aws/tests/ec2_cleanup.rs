//! Nothing is left when a caller stops waiting: a provision cancelled halfway, a guard
//! dropped on a current-thread runtime (which must not hang), and host keys of terminated
//! instances. API calls are bounded, and their errors say what kind of failure they are.

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use hgauto_aws::Ec2Provider;
use hgauto_core::backend::background;
use hgauto_core::{ApiErrorClass, MachineSpec, ResourceProvider, TemporaryMachines};
use support::{live_instances, some_image, Moto};

fn ledger_entries(state: &std::path::Path) -> Vec<String> {
    std::fs::read_dir(state.join("ledger/ec2-us-east-1"))
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with("i-") || n.starts_with("pending-"))
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provision_cancelled_halfway_leaves_no_instance() {
    let moto = Moto::start();
    let state = tempfile::tempdir().unwrap();
    let p = Arc::new(Ec2Provider::new(moto.config(state.path())).await.unwrap());
    let image = some_image(&p, false).await;
    let spec = MachineSpec::linux()
        .with_image(&image)
        .with_instance_type("t3.micro");
    // Key pair and group first, so the cancellation lands in the launch itself.
    p.ensure_key_pair().await.unwrap();
    for round in 0..5 {
        let provider: Arc<dyn ResourceProvider> = p.clone();
        let launched = async {
            while ledger_entries(state.path()).is_empty() {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            // Land at different moments: before, during and after RunInstances answers.
            tokio::time::sleep(Duration::from_millis(round * 15)).await;
        };
        tokio::select! {
            r = TemporaryMachines::provision(provider, &spec, 2) => {
                // It finished first: dropping the guard terminates.
                drop(r.unwrap());
            }
            () = launched => {}
        }
        assert!(
            background::drain(Duration::from_secs(60)).await,
            "round {round}: undo did not finish"
        );
        let left = live_instances(&p, "hgauto-").await;
        assert!(
            left.is_empty(),
            "round {round}: {} instances left running",
            left.len()
        );
        assert!(
            ledger_entries(state.path()).is_empty(),
            "round {round}: {:?}",
            ledger_entries(state.path())
        );
    }
}

/// `Drop` on a current-thread runtime blocks its only thread while a helper thread
/// terminates: it must not hang (the review suspected it would; it does not, and this
/// guards that).
#[test]
fn a_guard_dropped_on_a_current_thread_runtime_terminates_without_hanging() {
    let moto = Moto::start();
    let state = tempfile::tempdir().unwrap();
    let cfg = moto.config(state.path());
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let p = Arc::new(Ec2Provider::new(cfg).await.unwrap());
            let image = some_image(&p, false).await;
            let spec = MachineSpec::linux()
                .with_image(&image)
                .with_instance_type("t3.micro");
            let guard = TemporaryMachines::provision(p.clone(), &spec, 2)
                .await
                .unwrap();
            let started = Instant::now();
            drop(guard);
            let dropped_in = started.elapsed();
            background::drain(Duration::from_secs(60)).await;
            let _ = tx.send((dropped_in, live_instances(&p, "hgauto-").await.len()));
        });
    });
    let (dropped_in, left) = rx
        .recv_timeout(Duration::from_secs(120))
        .expect("dropping the guard hung the runtime");
    assert!(dropped_in < Duration::from_secs(30), "{dropped_in:?}");
    assert_eq!(left, 0, "instances left running");
}

#[tokio::test]
async fn ssh_host_keys_are_recorded_by_instance_id_and_go_with_the_instance() {
    let moto = Moto::start();
    let state = tempfile::tempdir().unwrap();
    let p = Ec2Provider::new(moto.config(state.path())).await.unwrap();
    let image = some_image(&p, false).await;
    let spec = MachineSpec::linux()
        .with_image(&image)
        .with_instance_type("t3.micro");
    let ms = p.provision(&spec, 1).await.unwrap();
    let id = ms[0].id().to_owned();
    let cfg = p.ssh_config(&id, "198.51.100.7", None).unwrap();
    assert_eq!(
        cfg.known_hosts_name(),
        id,
        "keys are recorded under the instance id"
    );
    // What accept-new would have recorded on the first connection.
    // (An ed25519 public key blob: the type, then the 32-byte key, each length-prefixed.)
    let blob = {
        let mut b = 11u32.to_be_bytes().to_vec();
        b.extend_from_slice(b"ssh-ed25519");
        b.extend_from_slice(&32u32.to_be_bytes());
        b.extend_from_slice(&[7; 32]);
        b
    };
    hgauto_ssh::known_hosts::add(&cfg.known_hosts, &id, &blob).unwrap();
    hgauto_ssh::known_hosts::add(&cfg.known_hosts, "other-host", &blob).unwrap();
    p.terminate(std::slice::from_ref(&id)).await.unwrap();
    let text = std::fs::read_to_string(&cfg.known_hosts).unwrap();
    assert!(!text.contains(&id), "{text}");
    assert!(text.contains("other-host"), "{text}");
}

/// A server that accepts connections and never answers.
fn stalled_endpoint() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for c in listener.incoming() {
            held.push(c);
        }
    });
    format!("http://127.0.0.1:{port}")
}

#[tokio::test]
async fn api_calls_to_a_stalled_endpoint_end_and_say_so() {
    let _moto = Moto::start(); // sets the test credentials
    let state = tempfile::tempdir().unwrap();
    let cfg = support::config_for(&stalled_endpoint(), state.path())
        .with_api_timeout(Duration::from_secs(1));
    let p = Ec2Provider::new(cfg).await.unwrap();
    let started = Instant::now();
    let e = tokio::time::timeout(Duration::from_secs(60), p.list_managed())
        .await
        .expect("list_managed hung")
        .unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(e.api_class(), Some(ApiErrorClass::Unavailable), "{e:?}");
    assert!(e.is_retryable());
    assert!(
        std::error::Error::source(&e).is_some(),
        "the SDK error is kept"
    );
}

/// A missing S3 bucket was a `ProvisionError` (Python users saw that for a 404): it is a
/// not-found error now, with the SDK's error as its source.
#[tokio::test]
async fn service_errors_keep_their_class_and_source() {
    use hgauto_core::{Artifact, Publisher};
    let moto = Moto::start();
    let state = tempfile::tempdir().unwrap();
    let cfg = moto.config(state.path());
    let publisher = hgauto_aws::S3Publisher::from_config(&cfg, "no-such-bucket", "p")
        .await
        .unwrap();
    let f = state.path().join("a.txt");
    std::fs::write(&f, "a").unwrap();
    let e = publisher
        .publish(&[Artifact::from_file(&f).unwrap()])
        .await
        .unwrap_err();
    assert!(e.is_not_found(), "{e:?}");
    assert_eq!(e.api_class(), Some(ApiErrorClass::NotFound));
    assert!(!e.is_retryable());
    let source = std::error::Error::source(&e).expect("the SDK error is kept");
    assert!(format!("{source:?}").contains("NoSuchBucket"), "{source:?}");
}
