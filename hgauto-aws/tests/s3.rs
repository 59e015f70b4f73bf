//! S3Publisher against moto_server: the shared Publisher suite, plus what S3 records.

mod support;

use hgauto_aws::S3Publisher;
use hgauto_core::conformance::publisher;
use hgauto_core::{Artifact, Error, Publisher};
use support::Moto;

async fn client(moto: &Moto, state: &std::path::Path) -> aws_sdk_s3::Client {
    let sdk = moto.config(state).sdk_config().await;
    let conf = aws_sdk_s3::config::Builder::from(&sdk)
        .force_path_style(true)
        .build();
    aws_sdk_s3::Client::from_conf(conf)
}

#[tokio::test]
async fn s3_publisher_passes_the_publisher_suite() {
    let moto = Moto::start();
    let state = tempfile::tempdir().unwrap();
    let c = client(&moto, state.path()).await;
    c.create_bucket().bucket("releases").send().await.unwrap();
    let p = S3Publisher::from_config(&moto.config(state.path()), "releases", "hgauto/dist")
        .await
        .unwrap();
    publisher::run_all(&p).await;

    // Every object carries its sha256, and nothing else was written.
    let listed = c.list_objects_v2().bucket("releases").send().await.unwrap();
    for obj in listed.contents() {
        let key = obj.key().unwrap();
        assert!(key.starts_with("hgauto/dist/conformance-"), "{key}");
        let head = c
            .head_object()
            .bucket("releases")
            .key(key)
            .send()
            .await
            .unwrap();
        let sha = head
            .metadata()
            .unwrap()
            .get(hgauto_aws::s3::SHA256_METADATA)
            .unwrap();
        assert_eq!(sha.len(), 64);
    }
}

#[tokio::test]
async fn an_object_not_published_by_hgauto_is_a_conflict() {
    let moto = Moto::start();
    let state = tempfile::tempdir().unwrap();
    let c = client(&moto, state.path()).await;
    c.create_bucket()
        .bucket("foreign-objects")
        .send()
        .await
        .unwrap();
    c.put_object()
        .bucket("foreign-objects")
        .key("x.tar.gz")
        .body(b"foreign".to_vec().into())
        .send()
        .await
        .unwrap();
    let p = S3Publisher::from_config(&moto.config(state.path()), "foreign-objects", "")
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("x.tar.gz"), b"ours").unwrap();
    let a = Artifact::from_file(dir.path().join("x.tar.gz")).unwrap();
    let e = p.publish(&[a]).await.unwrap_err();
    assert!(
        matches!(e, Error::Conflict { ref reason, .. } if reason.contains("not published by hgauto")),
        "{e:?}"
    );
}

#[tokio::test]
async fn missing_credentials_and_bad_region_are_named_before_any_call() {
    std::env::remove_var("AWS_ACCESS_KEY_ID");
    std::env::remove_var("AWS_SECRET_ACCESS_KEY");
    std::env::set_var("AWS_EC2_METADATA_DISABLED", "true");
    std::env::set_var("AWS_CONFIG_FILE", "/nonexistent");
    std::env::set_var("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent");
    let state = tempfile::tempdir().unwrap();
    let cfg = hgauto_aws::AwsConfig::new("us-east-1")
        .with_endpoint("http://127.0.0.1:9")
        .with_state_dir(state.path());
    let e = S3Publisher::from_config(&cfg, "b", "").await.unwrap_err();
    assert!(
        matches!(e, Error::Auth { .. }) && e.to_string().contains("credentials"),
        "{e:?}"
    );
    let typo = hgauto_aws::AwsConfig::new("eu-wset-1").with_state_dir(state.path());
    let e = S3Publisher::from_config(&typo, "b", "").await.unwrap_err();
    assert!(
        e.to_string().contains("eu-wset-1") && e.to_string().contains("eu-west-1"),
        "{e}"
    );
}
