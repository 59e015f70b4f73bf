//! The local backend passes the shared RemoteMachine, ResourceProvider and Publisher suites.

use std::sync::Arc;

use hgauto_core::{
    DirPublisher, ImageRecipe, LocalProvider, MachineSpec, Platform, ResourceProvider,
};
use hgauto_testkit::provider::{self, ProviderCase};
use hgauto_testkit::{machine, publisher};

#[tokio::test]
async fn local_provider_passes_the_provider_suite() {
    let state = tempfile::tempdir().unwrap();
    let p = LocalProvider::new(state.path()).unwrap();
    let case = ProviderCase {
        spec: MachineSpec::linux(),
        bad_spec: MachineSpec::linux().with_image("no-such-image"),
        recipe: Some(
            ImageRecipe::new("conformance", Platform::Linux, "host")
                .with_script("echo built > built.txt"),
        ),
    };
    provider::run_all(&p, &case).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_machine_passes_the_machine_suite() {
    let state = tempfile::tempdir().unwrap();
    let provider = Arc::new(LocalProvider::new(state.path()).unwrap());
    let machines = provider.provision(&MachineSpec::linux(), 1).await.unwrap();
    machine::run_all(machines[0].as_ref(), machine::Capabilities::default()).await;
    provider
        .terminate(&[machines[0].id().to_owned()])
        .await
        .unwrap();
    assert!(provider.list_managed().await.unwrap().is_empty());
}

#[tokio::test]
async fn dir_publisher_passes_the_publisher_suite() {
    let out = tempfile::tempdir().unwrap();
    let p = DirPublisher::new(out.path().join("dist"));
    publisher::run_all(&p).await;
    // Nothing but published files is left in the directory (no temporaries).
    for e in std::fs::read_dir(out.path().join("dist")).unwrap() {
        let name = e.unwrap().file_name().into_string().unwrap();
        assert!(name.starts_with("conformance-"), "leftover {name}");
    }
}
