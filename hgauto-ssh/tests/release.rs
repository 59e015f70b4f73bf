//! The release flow across three real destinations: pypiserver (htpasswd, over HTTP), an
//! SFTP host (the test sshd, files at mode 0664 as Mercurial publishes them) and a local
//! directory, with SHA256SUMS signed by a key `minisign -G` made, checked afterwards with
//! `sha256sum -c` and `minisign -V`.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use hgauto_core::{DirPublisher, Error, RemoteMachine};
use hgauto_release::{Release, ReleaseReport, SigningKey, Status};
use hgauto_ssh::{SshMachine, SshPublisher};
use hgauto_testkit::dists;
use hgauto_testkit::fixtures::run_ok;
use hgauto_testkit::pypiserver::{uploader, PypiServer};
use support::{Sshd, UserKeys};

/// Everything one scenario needs: three destinations and a directory of built artifacts.
struct World {
    pypi: PypiServer,
    _sshd: Sshd,
    machine: SshMachine,
    /// The SFTP destination, relative to the remote home, and where that is locally.
    remote_dir: String,
    remote_local: PathBuf,
    mirror: PathBuf,
    dist: PathBuf,
    key_pub: PathBuf,
    key_sec: PathBuf,
    _work: tempfile::TempDir,
    _state: tempfile::TempDir,
}

const WHEEL: &str = "relpkg-2.0-py3-none-any.whl";
const SDIST: &str = "relpkg-2.0.tar.gz";
const INSTALLER: &str = "relpkg-2.0-x64.exe";

impl World {
    async fn new() -> World {
        let work = tempfile::tempdir().unwrap();
        let dist = work.path().join("dist");
        std::fs::create_dir(&dist).unwrap();
        dists::wheel(&dist, "relpkg", "2.0", &[1u8; 50_000]);
        dists::sdist(&dist, "relpkg", "2.0", b"source");
        std::fs::write(dist.join(INSTALLER), [2u8; 70_000]).unwrap();
        // An unencrypted key pair, made by the real minisign.
        let key_pub = work.path().join("release.pub");
        let key_sec = work.path().join("release.key");
        run_ok(
            Command::new("minisign")
                .args(["-G", "-W", "-f", "-p"])
                .arg(&key_pub)
                .arg("-s")
                .arg(&key_sec),
        );

        let keys = UserKeys::new();
        let sshd = Sshd::start("127.0.0.2", &keys);
        let state = tempfile::tempdir().unwrap();
        let machine = SshMachine::from_config(sshd.config(&keys, state.path()));
        machine.wait_ready(Duration::from_secs(20)).await.unwrap();
        let home = machine
            .exec(&hgauto_core::Command::new("pwd"))
            .await
            .unwrap()
            .stdout_str()
            .trim()
            .to_owned();
        let remote_dir = format!("hgauto-release-{:08x}", rand_u32());
        World {
            pypi: PypiServer::start(),
            _sshd: sshd,
            remote_local: Path::new(&home).join(&remote_dir),
            machine,
            remote_dir,
            mirror: work.path().join("mirror"),
            dist,
            key_pub,
            key_sec,
            _work: work,
            _state: state,
        }
    }

    fn release(&self) -> Release {
        let pypi = uploader(&self.pypi.url(), &self.pypi.password)
            .build()
            .unwrap();
        let sftp = SshPublisher::new(self.machine.clone(), &self.remote_dir).with_mode(0o664);
        Release::new(&self.dist)
            .expect_glob("*.whl", Some(1))
            .expect(SDIST)
            .expect_glob("*.exe", Some(1))
            .sign_with(SigningKey::from_file(&self.key_sec, None).unwrap())
            .publish_to("pypi", Arc::new(pypi), &["*.whl", "*.tar.gz"])
            .unwrap()
            .publish_to("sftp", Arc::new(sftp), &[])
            .unwrap()
            .publish_to("mirror", Arc::new(DirPublisher::new(&self.mirror)), &[])
            .unwrap()
    }

    fn nothing_published(&self) {
        assert!(self.pypi.stored().is_empty(), "{:?}", self.pypi.stored());
        assert!(
            !self.remote_local.exists(),
            "the SFTP directory was created"
        );
        assert!(!self.mirror.exists(), "the mirror was created");
    }

    async fn cleanup(&self) {
        let _ = self
            .machine
            .exec(&hgauto_core::Command::new("rm").args(["-rf", &self.remote_dir]))
            .await;
    }
}

fn rand_u32() -> u32 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos()
}

/// The files a full release publishes to a destination that takes everything.
fn everything() -> Vec<String> {
    let mut names: Vec<String> = [WHEEL, SDIST, INSTALLER, "SHA256SUMS"]
        .iter()
        .flat_map(|n| [n.to_string(), format!("{n}.minisig")])
        .collect();
    names.sort();
    names
}

fn listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

/// `sha256sum -c` and `minisign -V` accept what a destination holds.
fn verify_with_real_tools(dir: &Path, key_pub: &Path) {
    let out = run_ok(
        Command::new("sha256sum")
            .args(["-c", "SHA256SUMS"])
            .current_dir(dir),
    );
    assert_eq!(out.lines().count(), 3, "{out}");
    for name in [WHEEL, SDIST, INSTALLER, "SHA256SUMS"] {
        run_ok(
            Command::new("minisign")
                .arg("-V")
                .arg("-p")
                .arg(key_pub)
                .arg("-m")
                .arg(dir.join(name)),
        );
    }
}

fn statuses(report: &ReleaseReport, destination: &str) -> Vec<(String, Status)> {
    report
        .entries
        .iter()
        .filter(|e| e.destination == destination)
        .map(|e| (e.artifact.clone(), e.status))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn release_to_pypi_sftp_and_a_directory_survives_a_missing_file_and_a_down_index() {
    let mut w = World::new().await;

    // 1. An expected file is missing: nothing is uploaded anywhere.
    let moved = w.dist.with_file_name("moved.exe");
    std::fs::rename(w.dist.join(INSTALLER), &moved).unwrap();
    let err = w.release().run().await.unwrap_err();
    assert!(matches!(err, Error::InvalidInput { .. }), "{err:?}");
    assert!(err.to_string().contains("\"*.exe\""), "{err}");
    w.nothing_published();
    std::fs::rename(&moved, w.dist.join(INSTALLER)).unwrap();

    // 2. The index is down: the SFTP host and the mirror get everything, PyPI fails.
    w.pypi.stop();
    let report = w.release().run().await.unwrap();
    assert!(!report.ok());
    for (artifact, status) in statuses(&report, "pypi") {
        let want = if artifact == WHEEL || artifact == SDIST {
            Status::Failed
        } else {
            Status::SkippedByFilter
        };
        assert_eq!(status, want, "pypi {artifact}: {}", report.to_json());
    }
    for d in ["sftp", "mirror"] {
        assert!(
            statuses(&report, d)
                .iter()
                .all(|(_, s)| *s == Status::Published),
            "{d}: {}",
            report.to_json()
        );
    }
    assert!(report.failures().all(|e| e.error.is_some()));
    assert_eq!(listing(&w.mirror), everything());
    assert_eq!(listing(&w.remote_local), everything());
    let mtimes: Vec<_> = everything()
        .iter()
        .map(|n| {
            std::fs::metadata(w.mirror.join(n))
                .unwrap()
                .modified()
                .unwrap()
        })
        .collect();

    // 3. The index is back: a re-run uploads only what PyPI misses.
    w.pypi.restart();
    let report = w.release().run().await.unwrap();
    assert!(report.ok(), "{}", report.to_json());
    assert_eq!(report.status(WHEEL, "pypi"), Some(Status::Published));
    assert_eq!(report.status(SDIST, "pypi"), Some(Status::Published));
    for d in ["sftp", "mirror"] {
        assert!(
            statuses(&report, d)
                .iter()
                .all(|(_, s)| *s == Status::AlreadyPresent),
            "{d}: {}",
            report.to_json()
        );
    }
    assert_eq!(w.pypi.stored(), vec![WHEEL.to_owned(), SDIST.to_owned()]);
    let after: Vec<_> = everything()
        .iter()
        .map(|n| {
            std::fs::metadata(w.mirror.join(n))
                .unwrap()
                .modified()
                .unwrap()
        })
        .collect();
    assert_eq!(mtimes, after, "the re-run rewrote mirror files");

    // What landed is intact, signed, and published with the requested mode.
    verify_with_real_tools(&w.mirror, &w.key_pub);
    verify_with_real_tools(&w.remote_local, &w.key_pub);
    let modes = w
        .machine
        .exec(&hgauto_core::Command::script(format!(
            "cd {} && stat -c '%a' *",
            w.remote_dir
        )))
        .await
        .unwrap();
    assert!(
        modes.stdout_str().lines().all(|m| m == "664"),
        "{}",
        modes.stdout_str()
    );
    let round: ReleaseReport = serde_json::from_str(&report.to_json()).unwrap();
    assert_eq!(round, report);

    // A third run changes nothing anywhere.
    let report = w.release().run().await.unwrap();
    assert_eq!(report.with_status(Status::Published).count(), 0);
    w.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_conflict_at_one_destination_uploads_nothing_anywhere() {
    let w = World::new().await;
    std::fs::create_dir(&w.mirror).unwrap();
    std::fs::write(w.mirror.join(SDIST), b"another build of the same name").unwrap();
    let err = w.release().run().await.unwrap_err();
    assert!(matches!(err, Error::Conflict { .. }), "{err:?}");
    assert!(err.to_string().contains(SDIST), "{err}");
    assert!(w.pypi.stored().is_empty());
    assert!(!w.remote_local.exists());
    assert_eq!(listing(&w.mirror), vec![SDIST.to_owned()]);
    w.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skipped_destinations_are_not_touched() {
    let w = World::new().await;
    let report = w.release().skip("pypi").skip("sftp").run().await.unwrap();
    assert!(report.ok(), "{}", report.to_json());
    assert_eq!(report.status(WHEEL, "pypi"), Some(Status::Skipped));
    assert_eq!(
        report.status(INSTALLER, "pypi"),
        Some(Status::SkippedByFilter)
    );
    assert_eq!(report.status(WHEEL, "sftp"), Some(Status::Skipped));
    assert_eq!(report.status(WHEEL, "mirror"), Some(Status::Published));
    assert!(w.pypi.stored().is_empty());
    assert!(!w.remote_local.exists());
    let err = w.release().skip("s3").run().await.unwrap_err();
    assert!(err.to_string().contains("pypi, sftp, mirror"), "{err}");
    w.cleanup().await;
}
