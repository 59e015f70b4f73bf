//! `create_virtualenv` with a wheelhouse of small wheels built here (no network): create,
//! install with uv and with pip, import in the new venv, reuse, and compatibility with
//! `python -m venv` tooling.

use std::path::{Path, PathBuf};
use std::time::Instant;

use hgauto_ci::venv::{create_virtualenv, Installer, VenvOptions};
use support::wheel;

use hgauto_testkit::support;

fn uv() -> PathBuf {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.venv-test/bin/uv");
    assert!(
        p.exists(),
        "uv is installed into .venv-test by scripts/test-all"
    );
    p
}

fn python(venv: &Path, code: &str) -> String {
    let out = std::process::Command::new(venv.join("bin/python"))
        .args(["-c", code])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn setup(dir: &Path) -> VenvOptions {
    let house = dir.join("wheelhouse");
    std::fs::create_dir(&house).unwrap();
    for (n, v) in [("alpha", "1.0"), ("beta", "2.1"), ("gamma", "0.3")] {
        wheel(&house, n, v);
    }
    let req = dir.join("requirements.txt");
    std::fs::write(&req, "alpha==1.0\nbeta\ngamma\n").unwrap();
    let con = dir.join("constraints.txt");
    std::fs::write(&con, "beta==2.1\n").unwrap();
    VenvOptions {
        requirements: vec![req],
        constraints: vec![con],
        find_links: vec![house.display().to_string()],
        no_index: true,
        ..VenvOptions::default()
    }
}

async fn create_install_import_reuse(installer: Installer, name: &str) {
    let dir = tempfile::tempdir().unwrap();
    let mut opts = setup(dir.path());
    opts.installer = installer;
    let venv = dir.path().join("venv");
    let r = create_virtualenv(&venv, &opts).await.unwrap();
    assert!(!r.reused);
    assert_eq!(r.installer.as_deref(), Some(name));
    assert_eq!(
        python(
            &venv,
            "import alpha, beta, gamma; print(alpha.VERSION, beta.VERSION, gamma.VERSION)"
        ),
        "1.0 2.1 0.3"
    );
    // A real venv: its own prefix, the base's stdlib, site-packages inside.
    let prefix = python(
        &venv,
        "import sys; print(sys.prefix != sys.base_prefix, sys.prefix)",
    );
    assert!(prefix.starts_with("True"), "{prefix}");
    let version = python(
        &venv,
        "import sys; print('%d.%d.%d' % sys.version_info[:3])",
    );
    assert_eq!(version, r.python_version);

    // Unchanged inputs: reused, nothing runs.
    let started = Instant::now();
    let again = create_virtualenv(&venv, &opts).await.unwrap();
    assert!(again.reused && again.installer.is_none());
    assert!(started.elapsed().as_millis() < 2000);
    // A changed requirement file: rebuilt.
    std::fs::write(&opts.requirements[0], "alpha==1.0\n").unwrap();
    let rebuilt = create_virtualenv(&venv, &opts).await.unwrap();
    assert!(!rebuilt.reused);
    let out = std::process::Command::new(venv.join("bin/python"))
        .args(["-c", "import beta"])
        .output()
        .unwrap();
    assert!(!out.status.success(), "beta is gone after the rebuild");
}

#[tokio::test]
async fn uv_installs_into_a_fast_venv_and_it_is_reused() {
    create_install_import_reuse(Installer::Uv(uv()), "uv").await;
}

#[tokio::test]
async fn pip_installs_when_uv_is_not_used() {
    create_install_import_reuse(Installer::Pip, "pip").await;
}

#[tokio::test]
async fn the_venv_works_with_activate_and_python_m_venv() {
    let dir = tempfile::tempdir().unwrap();
    let venv = dir.path().join("plain env");
    let r = create_virtualenv(&venv, &VenvOptions::default())
        .await
        .unwrap();
    assert!(r.installer.is_none());
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(". \"$1/bin/activate\" && command -v python && echo \"$VIRTUAL_ENV\"")
        .arg("sh")
        .arg(&venv)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains(&format!("{}/bin/python", venv.display())),
        "{text}"
    );
    // python -m venv accepts it as an environment to upgrade in place.
    let out = std::process::Command::new(venv.join("bin/python"))
        .args(["-m", "venv", "--upgrade", "--without-pip"])
        .arg(&venv)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let cfg = std::fs::read_to_string(venv.join("pyvenv.cfg")).unwrap();
    assert!(
        cfg.contains("include-system-site-packages = false"),
        "{cfg}"
    );

    // Bad input is named; a non-venv directory is never deleted.
    let e = create_virtualenv(
        &dir.path().join("x"),
        &VenvOptions {
            python: Some("/nonexistent/python9".into()),
            ..VenvOptions::default()
        },
    )
    .await
    .unwrap_err();
    assert!(e.to_string().contains("/nonexistent/python9"), "{e}");
    let precious = dir.path().join("data");
    std::fs::create_dir(&precious).unwrap();
    std::fs::write(precious.join("keep"), "x").unwrap();
    let e = create_virtualenv(&precious, &VenvOptions::default())
        .await
        .unwrap_err();
    assert!(e.to_string().contains("refusing"), "{e}");
    assert!(precious.join("keep").exists());
}

/// The real interpreter behind `python3` (not a launcher script).
fn real_python() -> PathBuf {
    let out = std::process::Command::new("python3")
        .args(["-c", "import sys; print(sys.executable)"])
        .output()
        .unwrap();
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}

/// What an attacker plants: a cached "answer" naming their own interpreter, under the
/// name hgauto gives the cache entry of `python`.
fn plant(cache: &Path, python: &Path, evil: &Path) {
    use sha2::{Digest, Sha256};
    use std::os::unix::fs::PermissionsExt;
    let mtime = std::fs::metadata(python)
        .unwrap()
        .modified()
        .unwrap()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let key = format!("{}@{mtime}", python.display());
    let name = format!(
        "{}.json",
        hex::encode(&Sha256::digest(key.as_bytes())[..12])
    );
    std::fs::create_dir_all(cache).unwrap();
    for d in [cache, cache.parent().unwrap()] {
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o777)).unwrap();
    }
    let version = python_version(python);
    let stdlib = std::process::Command::new(python)
        .args([
            "-c",
            "import sysconfig; print(sysconfig.get_paths()['stdlib'])",
        ])
        .output()
        .unwrap();
    let info = serde_json::json!({
        "executable": evil,
        "version": version,
        "major_minor": version.rsplit_once('.').unwrap().0,
        "stdlib": String::from_utf8_lossy(&stdlib.stdout).trim(),
        "key": key,
    });
    std::fs::write(cache.join(name), info.to_string()).unwrap();
}

fn python_version(python: &Path) -> String {
    let out = std::process::Command::new(python)
        .args(["-c", "import sys; print('%d.%d.%d' % sys.version_info[:3])"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// Runs in a child whose environment has no HOME or state directory and a TMPDIR of the
/// test's own: the interpreter cache falls back under TMPDIR, where another local user
/// could have planted answers, in the old shared `hgauto/` directory or in a world-writable
/// `hgauto-<uid>/`.
#[tokio::test]
#[ignore = "run as a child process by the planted-cache test"]
async fn child_ignores_a_planted_interpreter_cache() {
    let Some(tmp) = std::env::var_os("HGAUTO_TEST_TMP").map(PathBuf::from) else {
        return;
    };
    let python = real_python();
    let evil = tmp.join("evil-python");
    std::fs::write(&evil, "#!/bin/sh\necho pwned\n").unwrap();
    let uid = unsafe { libc::geteuid() };
    plant(&tmp.join("hgauto/python-info"), &python, &evil);
    plant(
        &tmp.join(format!("hgauto-{uid}/python-info")),
        &python,
        &evil,
    );
    let venv = tmp.join("venv");
    let opts = VenvOptions {
        python: Some(python.clone()),
        ..VenvOptions::default()
    };
    create_virtualenv(&venv, &opts).await.unwrap();
    let linked = std::fs::canonicalize(venv.join("bin/python")).unwrap();
    assert_eq!(
        linked,
        std::fs::canonicalize(&python).unwrap(),
        "a planted answer was used"
    );
}

#[test]
fn a_planted_interpreter_cache_is_never_used() {
    let dir = tempfile::tempdir().unwrap();
    support::run_child_test(
        "child_ignores_a_planted_interpreter_cache",
        &[
            ("TMPDIR", dir.path().as_os_str()),
            ("HGAUTO_TEST_TMP", dir.path().as_os_str()),
        ],
        &["HOME", "HGAUTO_STATE_DIR"],
    );
}
