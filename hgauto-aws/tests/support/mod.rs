//! Test support: a real `moto_server` (AWS API emulator) on a free loopback port.
#![allow(dead_code)]

pub mod fake_agent;

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use hgauto_aws::AwsConfig;

/// A running moto_server, killed on drop.
pub struct Moto {
    pub port: u16,
    child: Child,
}

/// `moto_server` from the project's test venv (made by scripts/test-all), else PATH.
fn moto_binary() -> PathBuf {
    let venv = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.venv-test/bin/moto_server");
    if venv.exists() {
        venv
    } else {
        PathBuf::from("moto_server")
    }
}

impl Moto {
    pub fn start() -> Moto {
        // Fake credentials for the SDK, and no instance-metadata lookups (no network).
        std::env::set_var("AWS_ACCESS_KEY_ID", "testing");
        std::env::set_var("AWS_SECRET_ACCESS_KEY", "testing");
        std::env::set_var("AWS_EC2_METADATA_DISABLED", "true");
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = std::process::Command::new(moto_binary())
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            // Validate like real AWS would: unknown types, AMIs and key pairs are errors.
            .env("MOTO_EC2_ENABLE_INSTANCE_TYPE_VALIDATION", "1")
            .env("MOTO_ENABLE_AMI_VALIDATION", "1")
            .env("MOTO_ENABLE_KEYPAIR_VALIDATION", "1")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("moto_server starts (run scripts/test-all to install it)");
        let started = Instant::now();
        loop {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "moto_server did not start"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Moto { port, child }
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// A config for this moto with its own state dir and prefix.
    pub fn config(&self, state: &std::path::Path) -> AwsConfig {
        AwsConfig::new("us-east-1")
            .with_endpoint(self.endpoint())
            .with_state_dir(state)
            .with_allowed_cidr("127.0.0.1/32")
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
