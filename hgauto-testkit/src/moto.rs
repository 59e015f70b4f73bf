//! `moto_server` (the AWS API emulator) on a free loopback port, for the AWS backends'
//! tests and benchmarks. It validates like AWS does: unknown instance types, images and key
//! pairs are errors, and AWS-managed IAM policies exist.

use std::process::{Child, Stdio};

use super::ports::spawn_listening;
use super::pypiserver::venv_program;

/// moto_server's `main`, with SQS receives made atomic (see the script for why).
const LAUNCHER: &str = include_str!("moto_launcher.py");

/// A running moto_server, killed on drop.
pub struct MotoServer {
    /// Its port on 127.0.0.1.
    pub port: u16,
    child: Child,
}

impl MotoServer {
    /// Starts moto_server with the project's test venv's Python (made by scripts/test-all),
    /// else `python3` from PATH, and waits until it listens. Sets fake credentials for the
    /// SDK and turns off instance-metadata lookups (no network).
    pub fn start() -> MotoServer {
        std::env::set_var("AWS_ACCESS_KEY_ID", "testing");
        std::env::set_var("AWS_SECRET_ACCESS_KEY", "testing");
        std::env::set_var("AWS_EC2_METADATA_DISABLED", "true");
        let (child, port) = spawn_listening("moto_server", std::net::Ipv4Addr::LOCALHOST, |port| {
            let mut cmd = std::process::Command::new(venv_program("python3"));
            cmd.args(["-c", LAUNCHER, "-H", "127.0.0.1", "-p", &port.to_string()])
                .env("MOTO_EC2_ENABLE_INSTANCE_TYPE_VALIDATION", "1")
                .env("MOTO_ENABLE_AMI_VALIDATION", "1")
                .env("MOTO_ENABLE_KEYPAIR_VALIDATION", "1")
                .env("MOTO_IAM_LOAD_MANAGED_POLICIES", "true")
                .stdout(Stdio::null())
                .stderr(Stdio::null());
            cmd
        });
        MotoServer { port, child }
    }

    /// `http://127.0.0.1:<port>`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for MotoServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
