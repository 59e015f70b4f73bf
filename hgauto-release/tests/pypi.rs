//! PypiPublisher against a real pypiserver (htpasswd, uploads over HTTP): the shared
//! publisher suite, a pip install round trip of a package built by setuptools in the test,
//! wrong credentials, broken distributions, and concurrent uploads of one file.

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use hgauto_core::retry::RetryPolicy;
use hgauto_core::{Artifact, Error, Publisher};
use hgauto_release::PypiPublisher;
use hgauto_testkit::dists;
use hgauto_testkit::fault_proxy::{FaultProxy, Faults};
use hgauto_testkit::fixtures::{quick_retry, run_ok};
use hgauto_testkit::publisher::{run_all_with, Sdists};
use hgauto_testkit::pypiserver::{uploader, venv_program, PypiServer, USER};

/// A publisher to `server` that reads nothing from this process's environment.
fn publisher(server: &PypiServer, password: &str) -> PypiPublisher {
    uploader(&server.url(), password).build().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pypiserver_passes_the_publisher_suite() {
    let server = PypiServer::start();
    let p = publisher(&server, &server.password);
    run_all_with(&p, &Sdists).await;
}

/// A small project with a module, built by setuptools (no network: no build isolation).
fn build_project(root: &Path, name: &str, version: &str) -> Vec<Artifact> {
    let src = root.join("src");
    std::fs::create_dir_all(src.join(name)).unwrap();
    std::fs::write(
        src.join(name).join("__init__.py"),
        format!("GREETING = 'hello from {name} {version}'\n"),
    )
    .unwrap();
    std::fs::write(
        src.join("pyproject.toml"),
        format!(
            "[build-system]\nrequires = [\"setuptools\"]\nbuild-backend = \"setuptools.build_meta\"\n\n\
             [project]\nname = \"{name}\"\nversion = \"{version}\"\ndescription = \"round trip\"\n\
             requires-python = \">=3.8\"\n"
        ),
    )
    .unwrap();
    let out = root.join("dist");
    run_ok(
        Command::new(venv_program("python"))
            .args(["-m", "build", "--no-isolation", "--outdir"])
            .arg(&out)
            .arg(&src),
    );
    let mut files: Vec<_> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| Artifact::from_file(e.unwrap().path()).unwrap())
        .collect();
    files.sort_by(|a, b| a.name.cmp(&b.name));
    assert_eq!(files.len(), 2, "a wheel and an sdist: {files:?}");
    files
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn built_package_round_trips_through_pip() {
    let server = PypiServer::start();
    let work = tempfile::tempdir().unwrap();
    let files = build_project(work.path(), "hgauto_roundtrip", "0.4.2");
    let p = publisher(&server, &server.password);

    let report = p.publish(&files).await.unwrap();
    assert_eq!(report.published.len(), 2, "{report:?}");
    let names: Vec<String> = files.iter().map(|a| a.name.clone()).collect();
    assert_eq!(server.stored(), names);
    for a in &files {
        assert!(p.exists(a).await.unwrap(), "{} listed", a.name);
        let stored = std::fs::read(server.packages().join(&a.name)).unwrap();
        assert_eq!(stored, std::fs::read(&a.path).unwrap(), "{} intact", a.name);
    }
    let again = p.publish(&files).await.unwrap();
    assert_eq!(again.already_present.len(), 2, "{again:?}");

    let venv = work.path().join("venv");
    run_ok(Command::new("python3").arg("-m").arg("venv").arg(&venv));
    run_ok(
        Command::new(venv.join("bin/pip"))
            .args(["install", "-q", "--no-deps", "--disable-pip-version-check"])
            .args(["--index-url", &server.index_url()])
            .arg("hgauto-roundtrip==0.4.2"),
    );
    let greeting = run_ok(Command::new(venv.join("bin/python")).args([
        "-c",
        "import hgauto_roundtrip; print(hgauto_roundtrip.GREETING)",
    ]));
    assert_eq!(greeting.trim(), "hello from hgauto_roundtrip 0.4.2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_password_is_an_auth_error_and_stores_nothing() {
    let server = PypiServer::start();
    let work = tempfile::tempdir().unwrap();
    let wheel = dists::wheel(work.path(), "denied", "1.0", b"x");
    let a = Artifact::from_file(&wheel).unwrap();
    let wrong = "not-the-password-123";
    let err = publisher(&server, wrong)
        .publish(std::slice::from_ref(&a))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Auth { .. }), "{err:?}");
    let shown = format!("{err} {err:?}");
    assert!(shown.contains(USER), "{shown}");
    assert!(!shown.contains(wrong), "{shown}");
    assert!(server.stored().is_empty(), "{:?}", server.stored());

    let token = "pypi-AgEIcHlwaS5vcmcCJDAwMDAwMDAwLTAwMDAtMDAwMC0wMDAwLTAwMDAwMDAwMDAwMAAC";
    let p = PypiPublisher::builder()
        .repository_url(server.url())
        .token(token)
        .retry(quick_retry())
        .environment(HashMap::new())
        .build()
        .unwrap();
    let err = p.publish(&[a]).await.unwrap_err();
    assert!(
        matches!(err, Error::Auth { ref user, .. } if user == "__token__"),
        "{err:?}"
    );
    assert!(!format!("{err} {err:?} {p:?}").contains(token));
    assert!(server.stored().is_empty());
}

/// Not one request is made for a batch with a bad file in it: the publisher points at a
/// closed port, so any request would be a connection error instead.
#[tokio::test]
async fn broken_distributions_are_refused_before_any_request() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let p = uploader(&format!("http://127.0.0.1:{port}/"), "pw")
        .build()
        .unwrap();
    let work = tempfile::tempdir().unwrap();
    let good = Artifact::from_file(dists::wheel(work.path(), "good", "1.0", b"g")).unwrap();

    // A wheel whose METADATA has no Version.
    let broken = work.path().join("broken-1.0-py3-none-any.whl");
    {
        let mut z = zip::ZipWriter::new(std::fs::File::create(&broken).unwrap());
        let o = zip::write::SimpleFileOptions::default();
        z.start_file("broken-1.0.dist-info/METADATA", o).unwrap();
        std::io::Write::write_all(&mut z, b"Metadata-Version: 2.1\nName: broken\n\n").unwrap();
        z.finish().unwrap();
    }
    // A wheel named for another project than its METADATA says.
    let renamed = work.path().join("other-1.0-py3-none-any.whl");
    std::fs::copy(&good.path, &renamed).unwrap();
    // Not a zip at all, and not a distribution at all.
    let garbage = work.path().join("garbage-1.0-py3-none-any.whl");
    std::fs::write(&garbage, b"not a zip").unwrap();
    let notes = work.path().join("notes-1.0.txt");
    std::fs::write(&notes, b"text").unwrap();

    for (path, says) in [
        (&broken, "Version"),
        (&renamed, "METADATA says good 1.0"),
        (&garbage, "not a readable zip"),
        (&notes, "not a wheel"),
    ] {
        let bad = Artifact::from_file(path).unwrap();
        for call in ["check", "publish"] {
            let batch = [good.clone(), bad.clone()];
            let err = match call {
                "check" => p.check(&batch).await.unwrap_err(),
                _ => p.publish(&batch).await.unwrap_err(),
            };
            let text = err.to_string();
            assert!(matches!(err, Error::InvalidInput { .. }), "{call} {text}");
            assert!(
                text.contains(&bad.name) && text.contains(says),
                "{call}: {text}"
            );
        }
    }
}

/// Two publishers upload the same file at once: whichever way they interleave, one stores
/// it and the other finds it there (a taken name with the same content is not a conflict).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_uploads_of_one_file_both_succeed() {
    let server = PypiServer::start();
    let work = tempfile::tempdir().unwrap();
    let a =
        Artifact::from_file(dists::wheel(work.path(), "raced", "1.0", &[7u8; 300_000])).unwrap();
    let p1 = Arc::new(publisher(&server, &server.password));
    let p2 = Arc::new(publisher(&server, &server.password));
    let (r1, r2) = tokio::join!(
        p1.publish(std::slice::from_ref(&a)),
        p2.publish(std::slice::from_ref(&a))
    );
    let (r1, r2) = (r1.unwrap(), r2.unwrap());
    assert_eq!(r1.published.len() + r2.published.len(), 1, "{r1:?} {r2:?}");
    assert_eq!(r1.already_present.len() + r2.already_present.len(), 1);
    assert_eq!(server.stored(), vec![a.name.clone()]);
}

/// The environment and `.pypirc` supply what the caller did not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_from_twine_variables_and_pypirc() {
    let server = PypiServer::start();
    let work = tempfile::tempdir().unwrap();
    let a = Artifact::from_file(dists::sdist(work.path(), "fromenv", "1.0", b"e")).unwrap();
    let env: HashMap<String, String> = [
        ("TWINE_REPOSITORY_URL", server.url()),
        ("TWINE_USERNAME", USER.to_owned()),
        ("TWINE_PASSWORD", server.password.clone()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    let p = PypiPublisher::builder()
        .environment(env)
        .retry(quick_retry())
        .build()
        .unwrap();
    assert_eq!(p.publish(&[a]).await.unwrap().published.len(), 1);

    let home = tempfile::tempdir().unwrap();
    std::fs::write(
        home.path().join(".pypirc"),
        format!(
            "[distutils]\nindex-servers =\n    local\n\n[local]\nrepository: {}\nusername: {USER}\npassword: {}\n",
            server.url(),
            server.password
        ),
    )
    .unwrap();
    let b = Artifact::from_file(dists::sdist(work.path(), "fromfile", "1.0", b"f")).unwrap();
    let p = PypiPublisher::builder()
        .repository("local")
        .environment(HashMap::from([(
            "HOME".to_owned(),
            home.path().display().to_string(),
        )]))
        .retry(quick_retry())
        .build()
        .unwrap();
    assert_eq!(p.publish(&[b]).await.unwrap().published.len(), 1);
    assert_eq!(server.stored().len(), 2);
}

fn patient() -> RetryPolicy {
    RetryPolicy {
        max_retries: 3,
        ..quick_retry()
    }
}

/// A publisher whose uploads go through a fault proxy, and whose index reads go straight
/// to the server.
fn through(proxy: &FaultProxy, server: &PypiServer, password: &str) -> PypiPublisher {
    uploader(&format!("http://127.0.0.1:{}/", proxy.port), password)
        .index_url(server.index_url())
        .retry(patient())
        .build()
        .unwrap()
}

fn payload(len: u32) -> Vec<u8> {
    (0..len).map(|i| (i * 7 % 251) as u8).collect()
}

/// An upload cut before the file began is retried, and the index gets the whole file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cut_uploads_are_retried() {
    let server = PypiServer::start();
    let proxy = FaultProxy::start(("127.0.0.1".into(), server.port), Faults::cut(300, 2));
    let work = tempfile::tempdir().unwrap();
    let a =
        Artifact::from_file(dists::wheel(work.path(), "flaky", "1.0", &payload(700_000))).unwrap();
    let report = through(&proxy, &server, &server.password)
        .publish(std::slice::from_ref(&a))
        .await
        .unwrap();
    assert_eq!(report.published, vec![a.name.clone()]);
    assert_eq!(proxy.cuts.load(Ordering::SeqCst), 2);
    let stored = std::fs::read(server.packages().join(&a.name)).unwrap();
    assert_eq!(stored, std::fs::read(&a.path).unwrap());
}

/// pypiserver keeps what it received of an upload cut in the middle of the file (it checks
/// no digest). The retry finds the name taken by other content: that is reported as what
/// it is, not as someone else's conflicting file, and not as a success.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partial_file_kept_by_the_index_is_named() {
    let server = PypiServer::start();
    let proxy = FaultProxy::start(("127.0.0.1".into(), server.port), Faults::cut(200_000, 1));
    let work = tempfile::tempdir().unwrap();
    let a =
        Artifact::from_file(dists::wheel(work.path(), "torn", "1.0", &payload(700_000))).unwrap();
    let err = through(&proxy, &server, &server.password)
        .publish(std::slice::from_ref(&a))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Integrity { .. }), "{err:?}");
    let text = err.to_string();
    assert!(text.contains("cut off") && text.contains(&a.name), "{text}");
    let kept = std::fs::metadata(server.packages().join(&a.name))
        .unwrap()
        .len();
    assert!(kept < a.size, "the index kept {kept} of {} bytes", a.size);
}

/// A 4xx answer is final however patient the policy: one upload, plus at most one
/// request without a file when the server closed before the answer could be read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_errors_are_not_retried() {
    let server = PypiServer::start();
    let proxy = FaultProxy::start(("127.0.0.1".into(), server.port), Faults::cut(u64::MAX, 0));
    let work = tempfile::tempdir().unwrap();
    let a =
        Artifact::from_file(dists::wheel(work.path(), "once", "1.0", &payload(300_000))).unwrap();
    for _ in 0..3 {
        let before = proxy.connections.load(Ordering::SeqCst);
        let err = through(&proxy, &server, "wrong-password")
            .publish(std::slice::from_ref(&a))
            .await
            .unwrap_err();
        assert!(matches!(err, Error::Auth { .. }), "{err:?}");
        let used = proxy.connections.load(Ordering::SeqCst) - before;
        assert!((1..=2).contains(&used), "{used} connections");
    }
    assert!(server.stored().is_empty());
}
