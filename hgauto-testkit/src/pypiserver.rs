//! A real `pypiserver` on a free loopback port, with an htpasswd file, for the PyPI
//! publisher's tests and benchmark. Installed into `.venv-test` by `scripts/test-all`.
//!
//! pypiserver checks htpasswd entries through passlib, which fails at verification when
//! bcrypt 4.1 or newer is installed beside it. The entries here are apr1 (Apache's MD5),
//! which passlib checks itself, and the test venv has no bcrypt.

use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::Duration;

/// The user the server accepts uploads from.
pub const USER: &str = "uploader";

/// A running pypiserver, killed on drop.
pub struct PypiServer {
    /// Its port on 127.0.0.1.
    pub port: u16,
    /// The password of [`USER`] (random per server).
    pub password: String,
    dir: tempfile::TempDir,
    child: Child,
}

/// A publisher builder for tests: uploads to `url` as [`USER`] with `password`, retries
/// once quickly, and reads nothing from this process's environment (feature `pypi`).
#[cfg(feature = "pypi")]
pub fn uploader(url: &str, password: &str) -> hgauto_release::PypiPublisherBuilder {
    hgauto_release::PypiPublisher::builder()
        .repository_url(url)
        .username(USER)
        .password(password)
        .retry(super::fixtures::quick_retry())
        .environment(std::collections::HashMap::new())
}

/// A program of the project's test venv (made by scripts/test-all), else from PATH.
pub fn venv_program(name: &str) -> PathBuf {
    let venv = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../.venv-test/bin")
        .join(name);
    if venv.exists() {
        venv
    } else {
        PathBuf::from(name)
    }
}

const LOCALHOST: std::net::Ipv4Addr = std::net::Ipv4Addr::LOCALHOST;

impl PypiServer {
    /// Starts a server whose uploads need [`USER`] and [`password`](Self::password), and
    /// which never redirects a missing project to PyPI.
    pub fn start() -> PypiServer {
        Self::start_with_password(&format!("pw-{:016x}", rand::random::<u64>()))
    }

    /// [`start`](Self::start), with `password` for [`USER`].
    pub fn start_with_password(password: &str) -> PypiServer {
        let password = password.to_owned();
        let dir = tempfile::tempdir().expect("temporary directory");
        let packages = dir.path().join("packages");
        std::fs::create_dir(&packages).expect("packages directory");
        let htpasswd = dir.path().join("htpasswd");
        let made = std::process::Command::new(venv_program("python"))
            .arg("-c")
            .arg(
                "import sys\nfrom passlib.apache import HtpasswdFile\n\
                 f = HtpasswdFile(sys.argv[1], new=True, default_scheme='apr_md5_crypt')\n\
                 f.set_password(sys.argv[2], sys.stdin.read())\nf.save()\n",
            )
            .arg(&htpasswd)
            .arg(USER)
            .stdin(Stdio::piped())
            .spawn()
            .and_then(|mut c| {
                use std::io::Write;
                c.stdin
                    .take()
                    .expect("stdin")
                    .write_all(password.as_bytes())?;
                c.wait()
            })
            .expect("python with passlib (run scripts/test-all to install it)");
        assert!(made.success(), "writing the htpasswd file failed");

        let (child, port) = super::ports::spawn_listening("pypi-server", LOCALHOST, |port| {
            command(dir.path(), port)
        });
        PypiServer {
            port,
            password,
            dir,
            child,
        }
    }

    /// Starts the server again after [`stop`](Self::stop), on the same port with the same
    /// files and users.
    pub fn restart(&mut self) {
        self.stop();
        let mut child = command(self.dir.path(), self.port)
            .spawn()
            .expect("pypi-server starts (run scripts/test-all to install it)");
        let own = super::ports::wait_own_listener(
            &mut child,
            LOCALHOST,
            self.port,
            "pypi-server",
            Duration::from_secs(30),
        );
        assert!(
            own,
            "pypi-server could not listen on its port {} again",
            self.port
        );
        self.child = child;
    }

    /// The upload endpoint.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/", self.port)
    }

    /// The simple index, for `pip install --index-url`.
    pub fn index_url(&self) -> String {
        format!("http://127.0.0.1:{}/simple/", self.port)
    }

    /// The directory the server keeps packages in (to check, never to write).
    pub fn packages(&self) -> PathBuf {
        self.dir.path().join("packages")
    }

    /// The names of the files the server holds, sorted.
    pub fn stored(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(self.packages())
            .map(|entries| {
                entries
                    .filter_map(|e| e.ok()?.file_name().into_string().ok())
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    }

    /// Stops the server (a destination that is down), keeping its files.
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The pypi-server command over `root`'s `packages` and `htpasswd`, on `port`.
fn command(root: &Path, port: u16) -> std::process::Command {
    let mut cmd = std::process::Command::new(venv_program("pypi-server"));
    cmd.args(["run", "-i", "127.0.0.1", "-p", &port.to_string()])
        .args(["-a", "update", "-P"])
        .arg(root.join("htpasswd"))
        .args(["--disable-fallback", "--log-stream", "none"])
        .arg(root.join("packages"))
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    cmd
}

impl Drop for PypiServer {
    fn drop(&mut self) {
        self.stop();
    }
}
