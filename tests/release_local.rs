//! End to end through the facade on the local backend: the same path as the release demo,
//! asserted: provision, sync, build and test, collect, publish, and nothing left behind.

use std::path::Path;
use std::sync::Arc;

use hgauto::{
    with_machines, Artifact, Command, DirPublisher, LocalProvider, MachineSpec, Publisher,
    ResourceProvider, SyncOptions,
};

const SAMPLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/sample-project");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn build_test_collect_publish_on_two_machines() {
    let state = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let provider = Arc::new(LocalProvider::new(state.path()).unwrap());
    let staging = out.path().join("staging");

    let artifacts = with_machines(provider.clone(), &MachineSpec::linux(), 2, |ms| {
        let staging = staging.clone();
        async move {
            let mut artifacts = Vec::new();
            for (m, variant) in ms.iter().zip(["release", "debug"]) {
                m.sync_tree(Path::new(SAMPLE), "src", &SyncOptions::default())
                    .await?;
                let make = Command::new("make")
                    .arg("dist")
                    .arg(format!("VARIANT={variant}"))
                    .current_dir("src");
                let output = m.exec_checked(&make).await?;
                assert!(output
                    .stdout_str()
                    .contains("ok   - long names are refused"));
                let name = format!("greet-0.3.1-{variant}.tar.gz");
                let local = staging.join(&name);
                m.get(&format!("src/dist/{name}"), &local).await?;
                artifacts.push(Artifact::from_file(&local)?);
            }
            Ok(artifacts)
        }
    })
    .await
    .unwrap();
    assert!(
        provider.list_managed().await.unwrap().is_empty(),
        "machines left after with_machines"
    );

    let publisher = DirPublisher::new(out.path().join("dist"));
    let first = publisher.publish(&artifacts).await.unwrap();
    assert_eq!(first.published.len(), 2);
    let again = publisher.publish(&artifacts).await.unwrap();
    assert_eq!(again.already_present.len(), 2);

    // The tarball really holds the built program.
    let listing = std::process::Command::new("tar")
        .arg("tzf")
        .arg(out.path().join("dist/greet-0.3.1-release.tar.gz"))
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&listing.stdout).contains("greet-0.3.1/bin/greet"));
}
