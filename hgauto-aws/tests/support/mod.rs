//! Test support: a real `moto_server` (AWS API emulator) on a free loopback port.
#![allow(dead_code)]

pub mod fake_agent;
pub mod fake_sfn;
pub mod pipelines;

use std::net::TcpListener;
use std::process::Stdio;
use std::time::{Duration, Instant};

use hgauto_aws::{AwsConfig, Ec2Provider};
use hgauto_testkit::moto::MotoServer;

/// A running moto_server (see `hgauto_testkit::moto`), killed on drop.
pub struct Moto {
    pub port: u16,
    _server: MotoServer,
}

impl Moto {
    pub fn start() -> Moto {
        let server = MotoServer::start();
        Moto {
            port: server.port,
            _server: server,
        }
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// A config for this moto with its own state dir and prefix.
    pub fn config(&self, state: &std::path::Path) -> AwsConfig {
        config_for(&self.endpoint(), state)
    }
}

/// An image moto knows (any Amazon-owned one), optionally of one platform (`windows`).
pub async fn some_image(p: &Ec2Provider, windows: bool) -> String {
    let out = p
        .client()
        .describe_images()
        .owners("amazon")
        .send()
        .await
        .unwrap();
    out.images()
        .iter()
        .find(|i| (i.platform().map(|p| p.as_str()) == Some("windows")) == windows)
        .and_then(|i| i.image_id())
        .unwrap()
        .to_owned()
}

/// A t3.micro Linux spec on one of moto's images: what the crash and interrupt tests
/// provision.
pub async fn micro_linux_spec(p: &Ec2Provider) -> hgauto_core::MachineSpec {
    hgauto_core::MachineSpec::linux()
        .with_image(some_image(p, false).await)
        .with_instance_type("t3.micro")
}

/// Instances tagged with `prefix` that are not terminated or terminating.
pub async fn live_instances(p: &Ec2Provider, prefix: &str) -> Vec<aws_sdk_ec2::types::Instance> {
    let out = p
        .client()
        .describe_instances()
        .filters(
            aws_sdk_ec2::types::Filter::builder()
                .name("tag:hgauto:prefix")
                .values(prefix)
                .build(),
        )
        .send()
        .await
        .unwrap();
    out.reservations()
        .iter()
        .flat_map(|r| r.instances().to_vec())
        .filter(|i| {
            !matches!(
                i.state().and_then(|s| s.name()).map(|n| n.as_str()),
                Some("terminated" | "shutting-down")
            )
        })
        .collect()
}

/// An HTTP proxy in front of moto that answers a share of requests itself with EC2's
/// throttling error (`RequestLimitExceeded`, HTTP 503) or a bare 503, as AWS does under
/// load. A throttled request never reaches moto. One request per connection.
///
/// The share is exact, not a coin toss: connection `n` is throttled when `n * percent / 100`
/// steps up, so any run of calls holds the stated share (rounded) and a test asserting
/// the proxy really throttled cannot fail by chance.
pub struct ThrottleProxy {
    pub port: u16,
    injected: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    forwarded: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl ThrottleProxy {
    pub fn start(upstream: u16, percent: u32) -> ThrottleProxy {
        use std::sync::atomic::{AtomicUsize, Ordering};
        use std::sync::Arc;
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let injected = Arc::new(AtomicUsize::new(0));
        let forwarded = Arc::new(AtomicUsize::new(0));
        let (inj, fwd) = (injected.clone(), forwarded.clone());
        let percent = u64::from(percent.min(100));
        std::thread::spawn(move || {
            for (n, conn) in (1u64..).zip(listener.incoming()) {
                let Ok(conn) = conn else { return };
                let (inj, fwd) = (inj.clone(), fwd.clone());
                let fault = (n * percent / 100) > ((n - 1) * percent / 100);
                // Alternate the two throttling answers AWS gives.
                let shape = if (n * percent / 100) % 2 == 0 {
                    Throttle::RequestLimitExceeded
                } else {
                    Throttle::Bare503
                };
                std::thread::spawn(move || {
                    let counter = if fault { &inj } else { &fwd };
                    if proxy_one(conn, upstream, fault.then_some(shape)).is_ok() {
                        counter.fetch_add(1, Ordering::Relaxed);
                    }
                });
            }
        });
        ThrottleProxy {
            port,
            injected,
            forwarded,
        }
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Requests answered with a throttling error.
    pub fn injected(&self) -> usize {
        self.injected.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Requests passed to moto.
    pub fn forwarded(&self) -> usize {
        self.forwarded.load(std::sync::atomic::Ordering::Relaxed)
    }
}

#[derive(Clone, Copy)]
enum Throttle {
    RequestLimitExceeded,
    Bare503,
}

fn proxy_one(
    mut client: std::net::TcpStream,
    upstream: u16,
    fault: Option<Throttle>,
) -> std::io::Result<()> {
    use std::io::{Read, Write};
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16384];
    let head_end = loop {
        let n = client.read(&mut chunk)?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let length: usize = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().ok())?
        })
        .unwrap_or(0);
    while buf.len() < head_end + length {
        let n = client.read(&mut chunk)?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    if let Some(shape) = fault {
        let body = if matches!(shape, Throttle::RequestLimitExceeded) {
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Response><Errors><Error>\
             <Code>RequestLimitExceeded</Code><Message>Request limit exceeded.</Message>\
             </Error></Errors><RequestID>hgauto-fault</RequestID></Response>"
        } else {
            ""
        };
        write!(
            client,
            "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/xml\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )?;
        return Ok(());
    }
    // Forward with `Connection: close`, so the response ends at EOF.
    let mut request = Vec::with_capacity(buf.len() + 32);
    for line in head.split("\r\n").filter(|l| !l.is_empty()) {
        if !line.to_ascii_lowercase().starts_with("connection:") {
            request.extend_from_slice(line.as_bytes());
            request.extend_from_slice(b"\r\n");
        }
    }
    request.extend_from_slice(b"Connection: close\r\n\r\n");
    request.extend_from_slice(&buf[head_end..]);
    let mut up = std::net::TcpStream::connect(("127.0.0.1", upstream))?;
    up.write_all(&request)?;
    std::io::copy(&mut up, &mut client)?;
    Ok(())
}

/// Runs an ignored test of this binary in a child process with its own environment.
pub fn run_child_test(name: &str, set: &[(&str, &str)], remove: &[&str]) {
    let set: Vec<(&str, &std::ffi::OsStr)> = set.iter().map(|(k, v)| (*k, v.as_ref())).collect();
    hgauto_testkit::child::run_ignored_test(name, &set, remove);
}

/// Env vars through which a crash test tells its child process where moto and the state are.
pub const CHILD_ENDPOINT: &str = "HGAUTO_TEST_CHILD_ENDPOINT";
pub const CHILD_STATE: &str = "HGAUTO_TEST_CHILD_STATE";

/// The endpoint and state dir, when this process is a crash test's child.
pub fn child_env() -> Option<(String, String)> {
    Some((
        std::env::var(CHILD_ENDPOINT).ok()?,
        std::env::var(CHILD_STATE).ok()?,
    ))
}

/// A config for `endpoint` with its own state dir.
pub fn config_for(endpoint: &str, state: &std::path::Path) -> AwsConfig {
    AwsConfig::new("us-east-1")
        .with_endpoint(endpoint)
        .with_state_dir(state)
        .with_allowed_cidr("127.0.0.1/32")
        // moto's consoles never show host keys: do not wait for them.
        .with_host_key_wait(std::time::Duration::ZERO)
}

/// Starts the ignored test `child_test` of this test binary as a child process pointed at
/// `moto` and `state`, and returns once its ledger shows a launch (a pending record or
/// instances), so the caller can kill or interrupt it mid-provision.
pub fn spawn_provisioning_child(
    child_test: &str,
    moto: &Moto,
    state: &std::path::Path,
) -> std::process::Child {
    use std::io::{BufRead, BufReader};
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--ignored",
            "--exact",
            child_test,
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENDPOINT, moto.endpoint())
        .env(CHILD_STATE, state)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || for _ in BufReader::new(stdout).lines() {});
    let ledger = state.join("ledger/ec2-us-east-1");
    let launched = || {
        std::fs::read_dir(&ledger)
            .map(|d| {
                d.flatten().any(|e| {
                    let n = e.file_name().to_string_lossy().into_owned();
                    n.starts_with("pending-") || n.starts_with("i-")
                })
            })
            .unwrap_or(false)
    };
    let started = Instant::now();
    while !launched() {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the child never started provisioning"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    child
}

/// moto does not execute user data, so nothing powers an image build instance off: this
/// task plays that part, stopping each image-build instance once it has run for `after`.
pub fn play_build_instances(
    after: Duration,
    client: aws_sdk_ec2::Client,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut first_seen: std::collections::HashMap<String, Instant> = Default::default();
        loop {
            let running = hgauto_testkit::ec2::build_instances(&client, true)
                .await
                .unwrap();
            let due: Vec<String> = hgauto_testkit::ec2::ids(&running)
                .into_iter()
                .filter(|id| {
                    first_seen
                        .entry(id.clone())
                        .or_insert_with(Instant::now)
                        .elapsed()
                        >= after
                })
                .collect();
            hgauto_testkit::ec2::stop(&client, due).await.unwrap();
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
}
