//! A secret-bearing URL through every helper (download, checkout, create_virtualenv), with
//! logs captured at TRACE: the secret appears in no log line, no error (Display or Debug)
//! and no file under the state directory, on failure and on success.

use hgauto_testkit::support;

use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use hgauto_ci::checkout::{checkout, CheckoutOptions, Vcs, Want};
use hgauto_ci::download::{download, DownloadOptions};
use hgauto_ci::venv::{create_virtualenv, VenvOptions};
use hgauto_core::retry::RetryPolicy;
use hgauto_testkit::fixtures::quick_retry;
use support::{blob, sh, Nginx};

const SECRET: &str = "S3cr3tT0ken";

/// Every log record of this test binary, at TRACE.
fn logs() -> Arc<Mutex<Vec<u8>>> {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let sink = buf.clone();
        tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .with_writer(move || Writer(sink.clone()))
            .init();
        buf
    })
    .clone()
}

struct Writer(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Writer {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Panics naming the place where the secret shows.
fn assert_nowhere(what: &str, text: &str) {
    assert!(
        !text.contains(SECRET),
        "the secret leaked into {what}: {text}"
    );
}

fn assert_no_file_has_it(root: &Path) {
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            assert_nowhere("a file name", &p.display().to_string());
            let m = std::fs::symlink_metadata(&p).unwrap();
            if m.is_dir() {
                stack.push(p);
            } else if m.is_file() {
                let data = std::fs::read(&p).unwrap();
                assert!(
                    !data.windows(SECRET.len()).any(|w| w == SECRET.as_bytes()),
                    "the secret was written to {}",
                    p.display()
                );
            }
        }
    }
}

fn check_error(e: &hgauto_core::Error) {
    assert_nowhere("an error", &format!("{e} / {e:?}"));
}

#[tokio::test]
async fn downloads_never_show_credentials_or_signatures() {
    let logs = logs();
    let state = tempfile::tempdir().unwrap();
    let o = DownloadOptions::default().with_retry(quick_retry());
    let urls = [
        format!("http://ci:{SECRET}@127.0.0.1:{}/x.tar.gz", closed_port()),
        format!("http://{SECRET}@127.0.0.1:{}/x.tar.gz", closed_port()),
        format!(
            "http://127.0.0.1:{}/x?X-Amz-Signature={SECRET}",
            closed_port()
        ),
        format!("not a url ci:{SECRET}@x"),
    ];
    for url in &urls {
        let e = download(url, &state.path().join("x"), &o)
            .await
            .unwrap_err();
        check_error(&e);
    }
    // Served: a 404, a wrong digest, a cut transfer (leaving a sidecar), and a success.
    let nginx = Nginx::start();
    let data = blob(300_000, 9);
    nginx.serve("ok.bin", &data);
    let with_secret = |path: &str| {
        format!(
            "http://ci:{SECRET}@127.0.0.1:{}/{path}?X-Amz-Signature={SECRET}",
            nginx.port
        )
    };
    let e = download(&with_secret("missing"), &state.path().join("m"), &o)
        .await
        .unwrap_err();
    check_error(&e);
    let e = download(
        &with_secret("ok.bin"),
        &state.path().join("bad"),
        &o.clone().with_sha256("0".repeat(64)),
    )
    .await
    .unwrap_err();
    check_error(&e);
    let proxy = support::FaultProxy::start(
        ("127.0.0.1".into(), nginx.port),
        support::Faults::cut(100_000, 100),
    );
    let cut = format!(
        "http://ci:{SECRET}@127.0.0.1:{}/ok.bin?X-Amz-Signature={SECRET}",
        proxy.port
    );
    let once = DownloadOptions::default().with_retry(RetryPolicy::none());
    let e = download(&cut, &state.path().join("cut.bin"), &once)
        .await
        .unwrap_err();
    check_error(&e);
    assert!(state.path().join(".cut.bin.hgauto-part.json").exists());
    download(&with_secret("ok.bin"), &state.path().join("ok.bin"), &o)
        .await
        .unwrap();
    assert_no_file_has_it(state.path());
    assert_nowhere("the logs", &String::from_utf8_lossy(&logs.lock().unwrap()));
}

#[tokio::test]
async fn checkouts_never_show_credentials() {
    let logs = logs();
    let state = tempfile::tempdir().unwrap();
    let steps = Arc::new(Mutex::new(Vec::<String>::new()));
    let seen = steps.clone();
    let mut o = CheckoutOptions::new(state.path().join("shares"));
    o.retry = quick_retry();
    o.progress = Some(hgauto_ci::StepProgress::new(move |s: &str| {
        seen.lock().unwrap().push(s.to_owned())
    }));
    for vcs in [Vcs::Git, Vcs::Hg] {
        let url = format!("http://ci:{SECRET}@127.0.0.1:{}/repo", closed_port());
        let e = checkout(
            vcs,
            &url,
            &state.path().join("w"),
            &Want::Branch("main".into()),
            &o,
        )
        .await
        .unwrap_err();
        check_error(&e);
    }
    // A real clone over HTTP (git's dumb protocol from nginx; hg serve), credentials in
    // the URL: nothing under the state directory may hold them afterwards.
    let nginx = Nginx::start();
    let up = state.path().join("up");
    std::fs::create_dir(&up).unwrap();
    sh(
        &up,
        "git init -q -b main . && echo v1 > f && git add f && git commit -q -m c1",
    );
    let bare = nginx.root.join("repo.git");
    sh(
        state.path(),
        &format!(
            "git clone -q --bare up {} && git -C {} update-server-info",
            bare.display(),
            bare.display()
        ),
    );
    let url = format!("http://ci:{SECRET}@127.0.0.1:{}/repo.git", nginx.port);
    checkout(
        Vcs::Git,
        &url,
        &state.path().join("wg"),
        &Want::Branch("main".into()),
        &o,
    )
    .await
    .unwrap();
    let hgup = state.path().join("hgup");
    std::fs::create_dir(&hgup).unwrap();
    sh(
        &hgup,
        "hg init . && echo v1 > f && hg add -q f && hg commit -q -m c1",
    );
    let port = closed_port();
    let mut serve = std::process::Command::new("hg")
        .args(["serve", "-a", "127.0.0.1", "-p", &port.to_string()])
        .current_dir(&hgup)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let started = std::time::Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "hg serve did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let url = format!("http://ci:{SECRET}@127.0.0.1:{port}/");
    let r = checkout(
        Vcs::Hg,
        &url,
        &state.path().join("wh"),
        &Want::Branch("default".into()),
        &o,
    )
    .await;
    let _ = serve.kill();
    let _ = serve.wait();
    r.unwrap();
    assert_no_file_has_it(&state.path().join("shares"));
    assert_no_file_has_it(&state.path().join("wg"));
    assert_no_file_has_it(&state.path().join("wh"));
    for s in steps.lock().unwrap().iter() {
        assert_nowhere("a progress line", s);
    }
    assert_nowhere("the logs", &String::from_utf8_lossy(&logs.lock().unwrap()));
}

#[tokio::test]
async fn virtualenv_installs_never_show_index_credentials() {
    let logs = logs();
    let dir = tempfile::tempdir().unwrap();
    let req = dir.path().join("requirements.txt");
    std::fs::write(&req, "hgauto-no-such-package==1.0\n").unwrap();
    let opts = VenvOptions {
        requirements: vec![req],
        index_url: Some(format!(
            "http://ci:{SECRET}@127.0.0.1:{}/simple",
            closed_port()
        )),
        find_links: vec![format!(
            "http://127.0.0.1:{}/links?token={SECRET}",
            closed_port()
        )],
        retry: RetryPolicy::none(),
        timeout: Duration::from_secs(120),
        ..VenvOptions::default()
    };
    let e = create_virtualenv(&dir.path().join("venv"), &opts)
        .await
        .unwrap_err();
    check_error(&e);
    assert_no_file_has_it(&dir.path().join("venv"));
    assert_nowhere("the logs", &String::from_utf8_lossy(&logs.lock().unwrap()));
}

/// PyPI credentials, at TRACE: a successful upload, a wrong password, an API token, and
/// credentials from `.pypirc`. Neither the secret nor the Basic authorization value that
/// carries it shows in a log line, an error, `Debug` output or the release report.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pypi_uploads_never_show_passwords_or_tokens() {
    use base64::Engine;
    use hgauto_core::{Artifact, Publisher};
    use hgauto_release::PypiPublisher;
    use hgauto_release::Release;
    use hgauto_testkit::dists;
    use hgauto_testkit::pypiserver::{uploader, PypiServer, USER};
    use std::collections::HashMap;

    let logs = logs();
    let password = format!("pw-{SECRET}-right");
    let server = PypiServer::start_with_password(&password);
    let work = tempfile::tempdir().unwrap();
    let a = Artifact::from_file(dists::wheel(work.path(), "quiet", "1.0", b"q")).unwrap();
    let wrong = uploader(&server.url(), &format!("pw-{SECRET}-wrong"))
        .build()
        .unwrap();
    let e = wrong.publish(std::slice::from_ref(&a)).await.unwrap_err();
    check_error(&e);
    assert_nowhere("Debug output", &format!("{wrong:?}"));

    let token = PypiPublisher::builder()
        .repository_url(server.url())
        .token(format!("pypi-{SECRET}"))
        .retry(quick_retry())
        .environment(HashMap::new())
        .build()
        .unwrap();
    check_error(&token.publish(std::slice::from_ref(&a)).await.unwrap_err());
    assert_nowhere("Debug output", &format!("{token:?}"));

    let home = tempfile::tempdir().unwrap();
    std::fs::write(
        home.path().join(".pypirc"),
        format!(
            "[local]\nrepository = {}\nusername = {USER}\npassword = {password}\n",
            server.url()
        ),
    )
    .unwrap();
    let right = PypiPublisher::builder()
        .repository("local")
        .environment(HashMap::from([(
            "HOME".to_owned(),
            home.path().display().to_string(),
        )]))
        .retry(quick_retry())
        .build()
        .unwrap();
    assert_nowhere("Debug output", &format!("{right:?}"));
    let dist = work.path().join("dist");
    std::fs::create_dir(&dist).unwrap();
    std::fs::copy(&a.path, dist.join(&a.name)).unwrap();
    let report_path = work.path().join("report.json");
    let report = Release::new(&dist)
        .expect(a.name.clone())
        .publish_to("pypi", std::sync::Arc::new(right), &["*.whl"])
        .unwrap()
        .report_to(&report_path)
        .run()
        .await
        .unwrap();
    assert!(report.ok(), "{}", report.to_json());
    assert_eq!(server.stored(), vec![a.name.clone()]);
    assert_no_file_has_it(work.path());

    let text = String::from_utf8_lossy(&logs.lock().unwrap()).into_owned();
    assert!(text.contains("uploaded"), "TRACE logs were captured");
    for secret in [
        password.clone(),
        format!("pw-{SECRET}-wrong"),
        format!("pypi-{SECRET}"),
    ] {
        for user in [USER, "__token__"] {
            let basic =
                base64::engine::general_purpose::STANDARD.encode(format!("{user}:{secret}"));
            assert!(
                !text.contains(&basic),
                "a Basic authorization value was logged"
            );
        }
    }
    assert_nowhere("the logs", &text);
}

/// A query part without `=` may be the token itself: masked in URLs and scrubbed from text.
#[test]
fn a_bare_query_token_is_masked() {
    use hgauto_core::redact::{redact_url, Secrets};
    let url = "https://example.org/artifact.tgz?SECRETTOKEN1234";
    assert_eq!(redact_url(url), "https://example.org/artifact.tgz?***");
    let s = Secrets::of_urls([url]);
    let said = s.scrub("curl: (22) 403 for SECRETTOKEN1234");
    assert!(!said.contains("SECRETTOKEN1234"), "{said}");
    // A name with an empty value is not a secret and stays.
    assert_eq!(
        redact_url("https://example.org/f?debug="),
        "https://example.org/f?debug="
    );
}

/// `Debug` of everything that holds a repository or upload URL hides its credentials.
#[test]
fn debug_of_update_repos_self_update_and_pypi_settings_hides_credentials() {
    use hgauto_agent::selfupdate::{SelfUpdate, UpdateRepo};
    use hgauto_release::pypi::PypiSettings;
    let url = format!("https://bot:{SECRET}@example.invalid/repo?{SECRET}");
    let repo = UpdateRepo {
        name: "tools".into(),
        vcs: Vcs::Git,
        url: url.clone(),
        branch: "prod".into(),
        working_copy: "/srv/tools".into(),
    };
    let builder = SelfUpdate::builder("/tmp/state").repository(repo.clone());
    let settings = PypiSettings {
        repository_url: Some(url.clone()),
        password: Some(SECRET.to_owned().into()),
        ..PypiSettings::default()
    };
    for shown in [
        format!("{repo:?}"),
        format!("{builder:?}"),
        format!("{:?}", builder.build().unwrap()),
        format!("{settings:?}"),
    ] {
        assert!(!shown.contains(SECRET), "{shown}");
        assert!(shown.contains("example.invalid"), "{shown}");
    }
}
