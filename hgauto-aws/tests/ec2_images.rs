//! Ec2Provider's images on moto_server: built once from a recipe, reused, stale ones removed,
//! and Windows images built from PowerShell user data.

mod support;

use std::time::Duration;

use hgauto_aws::Ec2Provider;
use hgauto_core::{MachineSpec, ResourceProvider};
use support::{live_instances, some_image, Moto};

async fn build_instances_launched(p: &Ec2Provider) -> usize {
    let all = hgauto_testkit::ec2::build_instances(p.client(), false);
    all.await.unwrap().len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn images_are_built_once_reused_and_stale_ones_removed() {
    let moto = Moto::start();
    let state = tempfile::tempdir().unwrap();
    let p = Ec2Provider::new(moto.config(state.path())).await.unwrap();
    let base = some_image(&p, false).await;
    let player = support::play_build_instances(Duration::ZERO, p.client().clone());
    let files = tempfile::tempdir().unwrap();
    let tool = files.path().join("tool.sh");
    std::fs::write(&tool, "echo v1\n").unwrap();
    let mut recipe = hgauto_core::ImageRecipe::new("builder", hgauto_core::Platform::Linux, &base)
        .with_file(&tool, "bin/tool.sh")
        .with_script("chmod +x bin/tool.sh");
    recipe.instance_type = Some("t3.micro".into());

    // Two concurrent calls: one build.
    let (a, b) = tokio::join!(p.ensure_image(&recipe), p.ensure_image(&recipe));
    let first = a.unwrap();
    assert_eq!(b.unwrap(), first);
    assert_eq!(build_instances_launched(&p).await, 1);
    let img = p
        .client()
        .describe_images()
        .image_ids(&first)
        .send()
        .await
        .unwrap();
    let fp_tag = img.images()[0]
        .tags()
        .iter()
        .find(|t| t.key() == Some("hgauto:fingerprint"))
        .and_then(|t| t.value())
        .map(str::to_owned);
    assert_eq!(fp_tag, Some(recipe.fingerprint().unwrap()));

    // Unchanged recipe: cache hit, nothing launched.
    assert_eq!(p.ensure_image(&recipe).await.unwrap(), first);
    assert_eq!(build_instances_launched(&p).await, 1);

    // Changed file content: a new image; the stale one and its snapshots are gone.
    let old_snapshots: Vec<String> = img.images()[0]
        .block_device_mappings()
        .iter()
        .filter_map(|m| m.ebs().and_then(|e| e.snapshot_id()).map(str::to_owned))
        .collect();
    std::fs::write(&tool, "echo v2\n").unwrap();
    let second = p.ensure_image(&recipe).await.unwrap();
    assert_ne!(second, first);
    let old = p
        .client()
        .describe_images()
        .owners("self")
        .send()
        .await
        .unwrap();
    assert!(
        old.images()
            .iter()
            .all(|i| i.image_id() != Some(first.as_str())),
        "stale image still registered"
    );
    for snap in old_snapshots {
        let r = p
            .client()
            .describe_snapshots()
            .snapshot_ids(&snap)
            .send()
            .await;
        assert!(
            r.map(|o| o.snapshots().is_empty()).unwrap_or(true),
            "snapshot {snap} survived"
        );
    }
    // Build instances are terminated; machines start from the image.
    assert!(live_instances(&p, "hgauto-").await.is_empty());
    let ms = p
        .provision(
            &MachineSpec::linux()
                .with_image(&second)
                .with_instance_type("t3.micro"),
            1,
        )
        .await
        .unwrap();
    assert_eq!(ms.len(), 1);
    player.abort();

    p.purge().await.unwrap();
    let left = p
        .client()
        .describe_images()
        .owners("self")
        .send()
        .await
        .unwrap();
    assert!(left.images().is_empty(), "purge left images");
    assert!(p.ledger().records().unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn windows_images_are_built_from_powershell_user_data() {
    use base64::Engine as _;
    let moto = Moto::start();
    let state = tempfile::tempdir().unwrap();
    let p = Ec2Provider::new(moto.config(state.path())).await.unwrap();
    let base = some_image(&p, true).await;
    let player = support::play_build_instances(Duration::ZERO, p.client().clone());
    let mut recipe =
        hgauto_core::ImageRecipe::new("winbuilder", hgauto_core::Platform::Windows, &base)
            .with_script("Install-WindowsFeature Web-Server");
    recipe.instance_type = Some("t3.medium".into());
    let image = p.ensure_image(&recipe).await.unwrap();
    player.abort();
    // The build instance booted with the recipe as PowerShell user data.
    let builds = hgauto_testkit::ec2::build_instances(p.client(), false);
    let builds = hgauto_testkit::ec2::ids(&builds.await.unwrap());
    let build = builds[0].as_str();
    let attr = p
        .client()
        .describe_instance_attribute()
        .instance_id(build)
        .attribute(aws_sdk_ec2::types::InstanceAttributeName::UserData)
        .send()
        .await
        .unwrap();
    let user_data = base64::engine::general_purpose::STANDARD
        .decode(attr.user_data().and_then(|u| u.value()).unwrap())
        .unwrap();
    let user_data = String::from_utf8(user_data).unwrap();
    assert!(user_data.starts_with("<powershell>"), "{user_data}");
    assert!(user_data.contains("Install-WindowsFeature Web-Server"));
    assert_eq!(p.ensure_image(&recipe).await.unwrap(), image, "cache hit");
    p.purge().await.unwrap();
}
