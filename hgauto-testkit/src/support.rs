//! Test helpers shared by the crates' tests, and Debian's nginx on loopback with its own config, serving a directory
//! twice: normally (Range, ETag and Last-Modified as on a real mirror) and with
//! `max_ranges 0` (a server that ignores Range and always answers 200).

#[cfg(feature = "github")]
pub use crate::fake_github;

use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

pub use crate::fault_proxy::{FaultProxy, Faults};
use crate::ports::{free_port, wait_own_listener};

pub struct Nginx {
    /// Serves `root` with ranges.
    pub port: u16,
    /// Serves `root` but ignores Range.
    pub no_range_port: u16,
    pub root: PathBuf,
    child: Child,
    _dir: tempfile::TempDir,
}

fn nginx_binary() -> &'static str {
    if Path::new("/usr/sbin/nginx").exists() {
        "/usr/sbin/nginx"
    } else {
        "nginx"
    }
}

impl Nginx {
    pub fn start() -> Nginx {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("www");
        std::fs::create_dir(&root).unwrap();
        let user = if unsafe { libc::geteuid() } == 0 {
            "user root;"
        } else {
            ""
        };
        let conf_path = dir.path().join("nginx.conf");
        let localhost = std::net::Ipv4Addr::LOCALHOST;
        // Two ports: a lost race for either starts nginx again on two new ones.
        let mut started = None;
        for _ in 0..10 {
            let (port, no_range_port) = (free_port(localhost), free_port(localhost));
            let conf = include_str!("nginx.conf.template")
                .replace("@USER@", user)
                .replace("@DIR@", &dir.path().display().to_string())
                .replace("@ROOT@", &root.display().to_string())
                .replace("@NO_RANGE_PORT@", &no_range_port.to_string())
                .replace("@PORT@", &port.to_string());
            std::fs::write(&conf_path, conf).unwrap();
            let mut child = std::process::Command::new(nginx_binary())
                .arg("-p")
                .arg(dir.path())
                .arg("-c")
                .arg(&conf_path)
                .arg("-e")
                .arg(dir.path().join("error.log"))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("nginx starts (run scripts/test-all to install nginx-light)");
            let limit = Duration::from_secs(20);
            if wait_own_listener(&mut child, localhost, port, "nginx", limit)
                && wait_own_listener(&mut child, localhost, no_range_port, "nginx", limit)
            {
                started = Some((child, port, no_range_port));
                break;
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        let (child, port, no_range_port) = started.unwrap_or_else(|| {
            panic!(
                "nginx did not start: {}",
                std::fs::read_to_string(dir.path().join("error.log")).unwrap_or_default()
            )
        });
        Nginx {
            port,
            no_range_port,
            root,
            child,
            _dir: dir,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}/{path}", self.port)
    }

    /// Writes `data` as `name` under the served root.
    pub fn serve(&self, name: &str, data: &[u8]) {
        let p = self.root.join(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, data).unwrap();
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // SIGTERM: the master stops its workers (SIGKILL would orphan them on the ports).
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(10) {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Deterministic pseudo-random bytes.
pub fn blob(len: usize, seed: u32) -> Vec<u8> {
    (0..len as u32)
        .map(|i| (i.wrapping_mul(2_654_435_761).wrapping_add(seed) >> 13) as u8)
        .collect()
}

pub fn sha256(data: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(data))
}

/// Writes `{name}-{version}-py3-none-any.whl` providing module `name`.
pub fn wheel(dir: &Path, name: &str, version: &str) {
    let path = dir.join(format!("{name}-{version}-py3-none-any.whl"));
    let mut zip = zip::ZipWriter::new(std::fs::File::create(path).unwrap());
    let info = format!("{name}-{version}.dist-info");
    let files = [
        (format!("{name}/__init__.py"), format!("VERSION = {version:?}\n")),
        (
            format!("{info}/METADATA"),
            format!("Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"),
        ),
        (
            format!("{info}/WHEEL"),
            "Wheel-Version: 1.0\nGenerator: hgauto-test\nRoot-Is-Purelib: true\nTag: py3-none-any\n".into(),
        ),
    ];
    let mut record = String::new();
    let o = zip::write::SimpleFileOptions::default();
    for (p, body) in &files {
        zip.start_file(p.as_str(), o).unwrap();
        std::io::Write::write_all(&mut zip, body.as_bytes()).unwrap();
        let h = base64::Engine::encode(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
            sha2::Digest::finalize(sha2::Digest::chain_update(sha2::Sha256::default(), body)),
        );
        record.push_str(&format!("{p},sha256={h},{}\n", body.len()));
    }
    record.push_str(&format!("{info}/RECORD,,\n"));
    zip.start_file(format!("{info}/RECORD"), o).unwrap();
    std::io::Write::write_all(&mut zip, record.as_bytes()).unwrap();
    zip.finish().unwrap();
}

/// Runs `script` with `sh -e` in `dir` as a test author would (git and hg identities set),
/// asserts it succeeded, and returns its trimmed stdout.
pub fn sh(dir: &Path, script: &str) -> String {
    let out = std::process::Command::new("sh")
        .arg("-ec")
        .arg(script)
        .current_dir(dir)
        .env("HGUSER", "test <test@example.invalid>")
        .env("GIT_AUTHOR_NAME", "test")
        .env("GIT_AUTHOR_EMAIL", "test@example.invalid")
        .env("GIT_COMMITTER_NAME", "test")
        .env("GIT_COMMITTER_EMAIL", "test@example.invalid")
        .env("HGPLAIN", "1")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{script}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

pub use crate::child::run_ignored_test as run_child_test;

/// Waits until the process whose pid is written in `pidfile` is gone (dead, or a zombie
/// waiting for its reaper); fails naming `what` if it is still running after 30 s.
pub fn wait_until_gone(pidfile: &Path, what: &str) {
    let pid: i32 = std::fs::read_to_string(pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let gone = || {
        std::fs::read_to_string(format!("/proc/{pid}/stat")).map_or(true, |s| {
            s.rsplit_once(')')
                .is_some_and(|(_, r)| r.trim_start().starts_with('Z'))
        })
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while !gone() {
        assert!(
            Instant::now() < deadline,
            "{what} (pid {pid}) is still running"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}
