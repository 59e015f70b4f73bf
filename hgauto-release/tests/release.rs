//! Release options against real destinations (a directory and pypiserver): strict mode, a
//! destination that is down, the report file, unexpected files, signing keys from the
//! environment, and bad configurations.

use std::sync::Arc;

use hgauto_core::{DirPublisher, Error};
use hgauto_release::PypiPublisher;
use hgauto_release::{Release, ReleaseReport, SigningKey, Status};
use hgauto_testkit::dists;
use hgauto_testkit::pypiserver::{uploader, PypiServer};

fn pypi(url: &str, password: &str) -> Arc<PypiPublisher> {
    Arc::new(uploader(url, password).build().unwrap())
}

fn dist_dir() -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    dists::wheel(d.path(), "opts", "1.0", b"w");
    dists::sdist(d.path(), "opts", "1.0", b"s");
    std::fs::write(d.path().join("build.log"), "log\n").unwrap();
    d
}

fn closed_port_url() -> String {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    format!("http://127.0.0.1:{port}/")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strict_mode_uploads_nothing_when_a_destination_is_down() {
    let dist = dist_dir();
    let out = tempfile::tempdir().unwrap();
    let mirror = out.path().join("mirror");
    let release = || {
        Release::new(dist.path())
            .expect_glob("*.whl", Some(1))
            .expect_glob("*.tar.gz", Some(1))
            .allow_unexpected(true)
            .publish_to(
                "pypi",
                pypi(&closed_port_url(), "pw"),
                &["*.whl", "*.tar.gz"],
            )
            .unwrap()
            .publish_to("mirror", Arc::new(DirPublisher::new(&mirror)), &[])
            .unwrap()
    };
    let err = release().strict(true).run().await.unwrap_err();
    assert!(matches!(err, Error::Connection { .. }), "{err:?}");
    assert!(!mirror.exists());

    // Not strict: the mirror completes, the index's entries fail, the log file is left out.
    let report_path = out.path().join("report.json");
    let report = release().report_to(&report_path).run().await.unwrap();
    assert!(!report.ok());
    assert_eq!(report.ignored, vec!["build.log".to_owned()]);
    assert_eq!(
        report.status("opts-1.0.tar.gz", "pypi"),
        Some(Status::Failed)
    );
    assert_eq!(
        report.status("SHA256SUMS", "mirror"),
        Some(Status::Published)
    );
    let saved: ReleaseReport =
        serde_json::from_str(&std::fs::read_to_string(&report_path).unwrap()).unwrap();
    assert_eq!(saved, report);
    assert!(!mirror.join("build.log").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_configurations_are_refused_before_anything() {
    let dist = dist_dir();
    let server = PypiServer::start();
    let e = Release::new(dist.path())
        .expect_glob("*", None)
        .run()
        .await
        .unwrap_err();
    assert!(e.to_string().contains("no destination"), "{e}");
    let e = Release::new(dist.path())
        .expect_glob("*", None)
        .publish_to("a", pypi(&server.url(), &server.password), &["["])
        .unwrap_err();
    assert!(e.to_string().contains("filter \"[\""), "{e}");
    let e = Release::new(dist.path())
        .publish_to("a", pypi(&server.url(), &server.password), &[])
        .unwrap()
        .publish_to("a", pypi(&server.url(), &server.password), &[])
        .unwrap_err();
    assert!(e.to_string().contains("\"a\""), "{e}");
    // Every file to the index (a filter that overrides its own), the log and SHA256SUMS
    // included: refused as not distributions, before any upload.
    let e = Release::new(dist.path())
        .expect_glob("*", None)
        .publish_to("pypi", pypi(&server.url(), &server.password), &["*"])
        .unwrap()
        .run()
        .await
        .unwrap_err();
    assert!(matches!(e, Error::InvalidInput { .. }), "{e:?}");
    assert!(e.to_string().contains("build.log"), "{e}");
    assert!(server.stored().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signing_key_from_the_environment_signs_every_file() {
    let dist = dist_dir();
    let out = tempfile::tempdir().unwrap();
    let keys = tempfile::tempdir().unwrap();
    let (public, secret) = (keys.path().join("k.pub"), keys.path().join("k.key"));
    let made = std::process::Command::new("minisign")
        .args(["-G", "-W", "-f", "-p"])
        .arg(&public)
        .arg("-s")
        .arg(&secret)
        .output()
        .expect("minisign (run scripts/test-all to install it)");
    assert!(made.status.success());
    let var = format!("HGAUTO_TEST_MINISIGN_{}", std::process::id());
    std::env::set_var(&var, std::fs::read_to_string(&secret).unwrap());
    let key = SigningKey::from_env(&var, None).unwrap();
    std::env::remove_var(&var);
    assert!(!format!("{key:?}").contains(&std::fs::read_to_string(&secret).unwrap()[60..100]));
    let mirror = out.path().join("mirror");
    let report = Release::new(dist.path())
        .expect_glob("opts*", Some(2))
        .allow_unexpected(true)
        .sign_with(key)
        .publish_to("mirror", Arc::new(DirPublisher::new(&mirror)), &[])
        .unwrap()
        .run()
        .await
        .unwrap();
    assert!(report.ok());
    assert_eq!(
        report.artifacts.len(),
        6,
        "2 files, SHA256SUMS, 3 signatures"
    );
    for name in ["opts-1.0-py3-none-any.whl", "opts-1.0.tar.gz", "SHA256SUMS"] {
        let verified = std::process::Command::new("minisign")
            .args(["-Vq", "-p"])
            .arg(&public)
            .arg("-m")
            .arg(mirror.join(name))
            .status()
            .unwrap();
        assert!(verified.success(), "{name}");
    }
    assert!(SigningKey::from_env("HGAUTO_TEST_UNSET_VARIABLE", None).is_err());
}

/// With no filter of its own, a PyPI destination takes only the distributions (its
/// publisher's default), and a directory takes every file, `SHA256SUMS` included: the rule
/// lives in the library, so the command line, Python and Rust all get it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_index_without_a_filter_gets_only_the_distributions() {
    let dist = dist_dir();
    let server = PypiServer::start();
    let mirror = tempfile::tempdir().unwrap();
    let report = Release::new(dist.path())
        .expect_glob("*.whl", Some(1))
        .expect_glob("*.tar.gz", Some(1))
        .expect("build.log")
        .publish_to("pypi", pypi(&server.url(), &server.password), &[])
        .unwrap()
        .publish_to("mirror", Arc::new(DirPublisher::new(mirror.path())), &[])
        .unwrap()
        .run()
        .await
        .unwrap();
    assert!(report.ok(), "{report:?}");
    for name in ["build.log", "SHA256SUMS"] {
        assert_eq!(report.status(name, "pypi"), Some(Status::SkippedByFilter));
        assert_eq!(report.status(name, "mirror"), Some(Status::Published));
    }
    let mut stored = server.stored();
    stored.sort();
    assert_eq!(stored, ["opts-1.0-py3-none-any.whl", "opts-1.0.tar.gz"]);
}
