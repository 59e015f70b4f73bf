//! `download` against a real nginx on loopback: resume after cut connections, a server
//! that ignores Range, corrupted bodies, Retry-After, proxies from the environment,
//! concurrency and extraction.

use hgauto_testkit::support;

use std::io::{Read, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hgauto_ci::download::{download, download_many, DownloadOptions};
use hgauto_core::retry::{Jitter, RetryPolicy};
use hgauto_core::Error;
use support::{blob, sha256, FaultProxy, Faults, Nginx};

/// Retries quickly (the policy's shape is tested elsewhere).
fn fast() -> RetryPolicy {
    RetryPolicy {
        max_retries: 6,
        base_delay: Duration::from_millis(10),
        factor: 2.0,
        max_delay: Duration::from_millis(100),
        jitter: Jitter::None,
    }
}

/// Files in `dir` (to check nothing partial is left).
fn listing(dir: &std::path::Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[tokio::test]
async fn downloads_verify_report_progress_and_land_by_rename() {
    let nginx = Nginx::start();
    let data = blob(3 << 20, 1);
    nginx.serve("pkg/tool.bin", &data);
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("sub/tool.bin");
    let seen = Arc::new(AtomicU64::new(0));
    let s = seen.clone();
    let opts = DownloadOptions::default()
        .with_sha256(sha256(&data).to_uppercase())
        .with_size(data.len() as u64)
        .with_progress(move |done, total| {
            assert_eq!(total, Some(3 << 20));
            s.store(done, Ordering::Relaxed);
        });
    let r = download(&nginx.url("pkg/tool.bin"), &dest, &opts)
        .await
        .unwrap();
    assert_eq!((r.bytes, r.requests, r.resumed), (data.len() as u64, 1, 0));
    assert_eq!(r.sha256, sha256(&data));
    assert_eq!(seen.load(Ordering::Relaxed), data.len() as u64);
    assert!(std::fs::read(&dest).unwrap() == data);
    assert_eq!(listing(dest.parent().unwrap()), ["tool.bin"]);

    let missing = download(&nginx.url("nope"), &dir.path().join("nope"), &opts).await;
    assert!(matches!(missing, Err(Error::NotFound { ref what }) if what.ends_with("/nope")));
}

#[tokio::test]
async fn cut_connections_resume_with_range_and_the_hash_matches() {
    let nginx = Nginx::start();
    let data = blob(4 << 20, 2);
    nginx.serve("big.bin", &data);
    // The first three connections die after ~1 MB each.
    let proxy = FaultProxy::start(("127.0.0.1".into(), nginx.port), Faults::cut(1 << 20, 3));
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("big.bin");
    let opts = DownloadOptions::default()
        .with_sha256(sha256(&data))
        .with_retry(fast());
    let url = format!("http://127.0.0.1:{}/big.bin", proxy.port);
    let r = download(&url, &dest, &opts).await.unwrap();
    assert!(proxy.cuts.load(Ordering::SeqCst) >= 3);
    assert_eq!(r.requests, 4, "{r:?}");
    assert_eq!(
        r.resumed, 3,
        "each retry continued where the last stopped: {r:?}"
    );
    assert_eq!(r.restarted, 0);
    assert!(std::fs::read(&dest).unwrap() == data);
    assert_eq!(listing(dir.path()), ["big.bin"]);
}

#[tokio::test]
async fn a_partial_file_from_an_earlier_run_is_resumed() {
    let nginx = Nginx::start();
    let data = blob(2 << 20, 3);
    nginx.serve("f.bin", &data);
    let proxy = FaultProxy::start(("127.0.0.1".into(), nginx.port), Faults::cut(700_000, 1));
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("f.bin");
    let url = format!("http://127.0.0.1:{}/f.bin", proxy.port);
    let once = DownloadOptions::default()
        .with_sha256(sha256(&data))
        .with_retry(RetryPolicy::none());
    let first = download(&url, &dest, &once).await;
    assert!(first.is_err(), "the cut connection fails without retries");
    assert!(!dest.exists());
    let part = std::fs::metadata(dir.path().join(".f.bin.hgauto-part"))
        .unwrap()
        .len();
    assert!(part > 0 && part < data.len() as u64, "{part}");
    let r = download(&url, &dest, &once).await.unwrap();
    assert_eq!((r.requests, r.resumed), (1, 1), "{r:?}");
    assert!(std::fs::read(&dest).unwrap() == data);
    assert_eq!(listing(dir.path()), ["f.bin"]);
}

#[tokio::test]
async fn a_server_that_ignores_range_restarts_instead_of_corrupting() {
    let nginx = Nginx::start();
    let data = blob(3 << 20, 4);
    nginx.serve("f.bin", &data);
    let proxy = FaultProxy::start(
        ("127.0.0.1".into(), nginx.no_range_port),
        Faults::cut(1 << 20, 1),
    );
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("f.bin");
    let url = format!("http://127.0.0.1:{}/f.bin", proxy.port);
    let opts = DownloadOptions::default()
        .with_sha256(sha256(&data))
        .with_retry(fast());
    let r = download(&url, &dest, &opts).await.unwrap();
    assert_eq!((r.requests, r.resumed, r.restarted), (2, 0, 1), "{r:?}");
    assert!(std::fs::read(&dest).unwrap() == data);
}

#[tokio::test]
async fn a_corrupted_body_is_an_integrity_error_and_leaves_nothing() {
    let nginx = Nginx::start();
    let data = blob(1 << 20, 5);
    nginx.serve("f.bin", &data);
    let proxy = FaultProxy::start(("127.0.0.1".into(), nginx.port), Faults::corrupt(500_000));
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("f.bin");
    let url = format!("http://127.0.0.1:{}/f.bin", proxy.port);
    let opts = DownloadOptions::default()
        .with_sha256(sha256(&data))
        .with_retry(fast());
    let err = download(&url, &dest, &opts).await.unwrap_err();
    assert!(
        matches!(&err, Error::Integrity { expected, .. } if *expected == sha256(&data)),
        "{err}"
    );
    assert!(!err.is_retryable());
    assert_eq!(proxy.connections.load(Ordering::SeqCst), 1, "never retried");
    assert!(listing(dir.path()).is_empty(), "{:?}", listing(dir.path()));
}

/// A one-shot HTTP server: answers each connection with the next canned response.
fn canned(responses: Vec<Vec<u8>>) -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for (conn, resp) in listener.incoming().zip(responses) {
            let mut conn = conn.unwrap();
            let mut buf = [0u8; 4096];
            let _ = conn.read(&mut buf);
            let _ = conn.write_all(&resp);
        }
    });
    port
}

#[tokio::test]
async fn retry_after_is_honoured_for_503_and_429() {
    let body = b"finally";
    let ok = format!(
        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let mut ok = ok.into_bytes();
    ok.extend_from_slice(body);
    let port = canned(vec![
        b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_vec(),
        b"HTTP/1.1 429 Too Many Requests\r\nRetry-After: 1\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_vec(),
        ok,
    ]);
    let dir = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let r = download(
        &format!("http://127.0.0.1:{port}/x"),
        &dir.path().join("x"),
        &DownloadOptions::default().with_retry(fast()),
    )
    .await
    .unwrap();
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(r.requests, 3);
    assert_eq!(std::fs::read(dir.path().join("x")).unwrap(), body);
    // A 4xx other than 429 is not retried.
    let port = canned(vec![
        b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_vec(),
    ]);
    let e = download(
        &format!("http://127.0.0.1:{port}/y"),
        &dir.path().join("y"),
        &DownloadOptions::default().with_retry(fast()),
    )
    .await
    .unwrap_err();
    assert!(e.to_string().contains("403"), "{e}");
}

/// Runs in a child process whose environment names the proxy (the environment is
/// process-wide, so the parent's other tests never see it).
#[tokio::test]
#[ignore = "run as a child process by the proxy test"]
async fn child_downloads_through_the_environment_proxy() {
    let Ok(direct) = std::env::var("HGAUTO_TEST_DIRECT_URL") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let once = DownloadOptions::default().with_retry(RetryPolicy::none());
    // Through HTTP_PROXY: the client never resolves the name, the proxy answers.
    let r = download(
        "http://mirror.invalid/via-proxy.txt",
        &dir.path().join("a"),
        &once,
    )
    .await
    .unwrap();
    assert_eq!(r.bytes, 18);
    // NO_PROXY (127.0.0.1): straight to the server.
    let r = download(&direct, &dir.path().join("b"), &once)
        .await
        .unwrap();
    assert_eq!(r.bytes, 18);
}

#[test]
fn http_proxy_and_no_proxy_come_from_the_environment() {
    let nginx = Nginx::start();
    nginx.serve("via-proxy.txt", b"through the proxy\n");
    // nginx answers absolute-URI requests, so it can stand in for a forward proxy; the
    // fault proxy in front counts the connections that reach it.
    let proxy = FaultProxy::start(("127.0.0.1".into(), nginx.port), Faults::cut(u64::MAX, 0));
    let direct = nginx.url("via-proxy.txt");
    let proxy_url = format!("http://127.0.0.1:{}", proxy.port);
    support::run_child_test(
        "child_downloads_through_the_environment_proxy",
        &[
            ("HTTP_PROXY", proxy_url.as_ref()),
            ("NO_PROXY", "127.0.0.1".as_ref()),
            ("HGAUTO_TEST_DIRECT_URL", direct.as_ref()),
        ],
        &[],
    );
    assert_eq!(
        proxy.connections.load(Ordering::SeqCst),
        1,
        "only the proxied download went through the proxy"
    );
}

#[tokio::test]
async fn many_downloads_run_concurrently_and_archives_extract() {
    let nginx = Nginx::start();
    let mut items = Vec::new();
    let dir = tempfile::tempdir().unwrap();
    for i in 0..8u32 {
        let data = blob(200_000 + i as usize, i);
        nginx.serve(&format!("f{i}"), &data);
        items.push((
            nginx.url(&format!("f{i}")),
            dir.path().join(format!("f{i}")),
            DownloadOptions::default().with_sha256(sha256(&data)),
        ));
    }
    let results = download_many(items, 3).await;
    assert!(results.iter().all(|r| r.is_ok()), "{results:?}");
    assert_eq!(listing(dir.path()).len(), 8);

    // A tar.gz made here with a mode to keep and a link inside.
    let src = tempfile::tempdir().unwrap();
    std::fs::create_dir(src.path().join("bin")).unwrap();
    std::fs::write(src.path().join("bin/tool"), b"#!/bin/sh\necho hi\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(
        src.path().join("bin/tool"),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    std::os::unix::fs::symlink("tool", src.path().join("bin/alias")).unwrap();
    let status = std::process::Command::new("tar")
        .arg("-czf")
        .arg(nginx.root.join("tool.tar.gz"))
        .arg("-C")
        .arg(src.path())
        .arg("bin")
        .status()
        .unwrap();
    assert!(status.success());
    let out = dir.path().join("tool");
    download(
        &nginx.url("tool.tar.gz"),
        &dir.path().join("tool.tar.gz"),
        &DownloadOptions::default().extract_to(&out),
    )
    .await
    .unwrap();
    let m = std::fs::metadata(out.join("bin/tool")).unwrap();
    assert_eq!(m.permissions().mode() & 0o777, 0o755);
    assert_eq!(
        std::fs::read_link(out.join("bin/alias")).unwrap(),
        std::path::Path::new("tool")
    );
}

fn response(head: &str, body: &[u8]) -> Vec<u8> {
    let mut r = head.replace('\n', "\r\n").into_bytes();
    r.extend_from_slice(b"\r\n");
    r.extend_from_slice(body);
    r
}

/// A proxy or server that honours Range but ignores If-Range: after the first connection
/// is cut, the file changes (new content and ETag, same length) and the 206 carries the
/// rest of the *new* file. Splicing it onto the old prefix would be silent corruption.
#[tokio::test]
async fn a_206_of_a_changed_file_restarts_instead_of_splicing() {
    let (v1, v2) = (blob(64 * 1024, 1), blob(64 * 1024, 2));
    let (n, h) = (v1.len(), v1.len() / 2);
    let port = canned(vec![
        response(
            &format!("HTTP/1.1 200 OK\nContent-Length: {n}\nETag: \"v1\"\nConnection: close\n"),
            &v1[..h],
        ),
        response(
            &format!(
                "HTTP/1.1 206 Partial Content\nContent-Range: bytes {h}-{}/{n}\n\
                 Content-Length: {}\nETag: \"v2\"\nConnection: close\n",
                n - 1,
                n - h
            ),
            &v2[h..],
        ),
        response(
            &format!("HTTP/1.1 200 OK\nContent-Length: {n}\nETag: \"v2\"\nConnection: close\n"),
            &v2,
        ),
    ]);
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("f");
    let r = download(
        &format!("http://127.0.0.1:{port}/f"),
        &dest,
        &DownloadOptions::default().with_retry(fast()),
    )
    .await
    .unwrap();
    assert!(
        std::fs::read(&dest).unwrap() == v2,
        "bytes of two versions were spliced"
    );
    assert_eq!(r.sha256, sha256(&v2));
    assert_eq!((r.requests, r.resumed), (3, 0), "{r:?}");
    assert!(r.restarted >= 1, "{r:?}");
    assert_eq!(listing(dir.path()), ["f"]);
}

/// The sha256 field is public: an uppercase digest set there is the same digest.
#[tokio::test]
async fn an_uppercase_sha256_in_the_public_field_is_accepted() {
    let nginx = Nginx::start();
    let data = blob(10_000, 3);
    nginx.serve("u.bin", &data);
    let dir = tempfile::tempdir().unwrap();
    let mut o = DownloadOptions::default().with_retry(fast());
    o.sha256 = Some(sha256(&data).to_uppercase());
    let r = download(&nginx.url("u.bin"), &dir.path().join("u.bin"), &o)
        .await
        .unwrap();
    assert_eq!(r.sha256, sha256(&data));
    assert_eq!(std::fs::read(dir.path().join("u.bin")).unwrap(), data);
}

/// A server that answers every connection at once (each on its own thread), pausing in
/// the middle of the body, so two downloads overlap.
fn slow_server(body: Vec<u8>, pause: Duration) -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let body = body.clone();
            std::thread::spawn(move || {
                let mut conn = conn.unwrap();
                let mut buf = [0u8; 4096];
                let _ = conn.read(&mut buf);
                let head = format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nETag: \"e\"\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                let _ = conn.write_all(head.as_bytes());
                let _ = conn.write_all(&body[..body.len() / 2]);
                std::thread::sleep(pause);
                let _ = conn.write_all(&body[body.len() / 2..]);
            });
        }
    });
    port
}

#[tokio::test]
async fn two_downloads_to_one_destination_take_turns() {
    let data = blob(256 * 1024, 4);
    let port = slow_server(data.clone(), Duration::from_millis(400));
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("same.bin");
    let url = format!("http://127.0.0.1:{port}/same.bin");
    let o = DownloadOptions::default()
        .with_retry(RetryPolicy::none())
        .with_sha256(sha256(&data));
    let (a, b) = tokio::join!(download(&url, &dest, &o), download(&url, &dest, &o));
    a.unwrap();
    b.unwrap();
    assert!(std::fs::read(&dest).unwrap() == data);
    assert_eq!(
        listing(dir.path()),
        ["same.bin"],
        "no lock or part file left"
    );
}

/// The resume sidecar is private and names the URL only by a hash: a presigned URL's
/// signature is not written to disk.
#[tokio::test]
async fn the_resume_sidecar_is_private_and_holds_no_url() {
    use std::os::unix::fs::PermissionsExt;
    let data = blob(32 * 1024, 5);
    let port = canned(vec![response(
        &format!(
            "HTTP/1.1 200 OK\nContent-Length: {}\nETag: \"x\"\nConnection: close\n",
            data.len()
        ),
        &data[..1000],
    )]);
    let dir = tempfile::tempdir().unwrap();
    let url = format!("http://127.0.0.1:{port}/f?X-Amz-Signature=SIDECARSECRET");
    let e = download(
        &url,
        &dir.path().join("f"),
        &DownloadOptions::default().with_retry(RetryPolicy::none()),
    )
    .await
    .unwrap_err();
    assert!(e.is_retryable(), "{e}");
    let sidecar = dir.path().join(".f.hgauto-part.json");
    let text = std::fs::read_to_string(&sidecar).unwrap();
    assert!(
        !text.contains("SIDECARSECRET") && !text.contains("127.0.0.1"),
        "{text}"
    );
    let mode = std::fs::metadata(&sidecar).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
}
