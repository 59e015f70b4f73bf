//! Credentials in a repository URL never reach git's or hg's argv: `checkout` of
//! `http://user:SECRET@...` against a loopback server that requires Basic auth (git smart
//! HTTP through `git http-backend`, hg through hgweb) succeeds, while wrappers on PATH record
//! every argv git and hg were given. One test in this binary: it sets PATH for the process.

use hgauto_testkit::support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use hgauto_ci::checkout::{checkout, CheckoutOptions, Vcs, Want};
use hgauto_core::retry::RetryPolicy;
use support::sh;

/// The auth-requiring server (see `auth_vcs_server.py`), killed on drop.
struct Server {
    child: Child,
    port: u16,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn which(program: &str) -> PathBuf {
    let out = Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .output()
        .unwrap();
    PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
}

/// The interpreter hg runs under (its `#!` line): hgweb needs hg's modules.
fn hg_python(hg: &Path) -> String {
    let text = std::fs::read_to_string(hg).unwrap();
    let first = text.lines().next().unwrap();
    first.trim_start_matches("#!").trim().to_owned()
}

fn serve(root: &Path, user: &str, password: &str, hg: &Path) -> Server {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/auth_vcs_server.py");
    let portfile = root.join("port");
    let python = hg_python(hg);
    let mut argv = python.split_whitespace();
    let child = Command::new(argv.next().unwrap())
        .args(argv)
        .arg(&script)
        .args([
            root.to_str().unwrap(),
            user,
            password,
            portfile.to_str().unwrap(),
        ])
        .spawn()
        .unwrap();
    let mut server = Server { child, port: 0 };
    let deadline = Instant::now() + Duration::from_secs(60);
    while !portfile.exists() {
        assert!(
            server.child.try_wait().unwrap().is_none(),
            "the server exited"
        );
        assert!(Instant::now() < deadline, "the server never listened");
        std::thread::sleep(Duration::from_millis(20));
    }
    server.port = std::fs::read_to_string(&portfile).unwrap().parse().unwrap();
    server
}

/// Wrappers named git and hg that log their argv (one line per run), then run the real one.
fn wrappers(dir: &Path, log: &Path, git: &Path, hg: &Path) -> PathBuf {
    let bin = dir.join("bin");
    std::fs::create_dir(&bin).unwrap();
    for (name, real) in [("git", git), ("hg", hg)] {
        let path = bin.join(name);
        let script = format!(
            "#!/bin/sh\nprintf '%s\\n' \"{name} $*\" >> '{}'\nexec '{}' \"$@\"\n",
            log.display(),
            real.display()
        );
        std::fs::write(&path, script).unwrap();
        sh(dir, &format!("chmod 755 '{}'", path.display()));
    }
    bin
}

fn opts(base: &Path) -> CheckoutOptions {
    let mut o = CheckoutOptions::new(base.join("shares"));
    o.retry = RetryPolicy::none();
    o
}

#[tokio::test]
async fn credentials_in_urls_reach_the_server_but_never_argv() {
    let (git, hg) = (which("git"), which("hg"));
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("srv");
    std::fs::create_dir_all(root.join("git")).unwrap();
    std::fs::create_dir_all(root.join("hg")).unwrap();
    let work = dir.path().join("work");
    std::fs::create_dir(&work).unwrap();
    sh(
        &work,
        "git init -q -b main g && cd g && echo g > file.txt && git add -A && git commit -q -m g \
         && git clone -q --bare . ../../srv/git/repo.git",
    );
    sh(
        &work,
        "hg init ../srv/hg/repo && cd ../srv/hg/repo && echo h > file.txt && hg addremove -q \
         && hg commit -q -m h",
    );
    let log = dir.path().join("argv.log");
    let bin = wrappers(dir.path(), &log, &git, &hg);
    // The only test in this binary, so no other thread reads the environment meanwhile.
    std::env::set_var(
        "PATH",
        format!("{}:{}", bin.display(), std::env::var("PATH").unwrap()),
    );
    let server = serve(&root, "bot", "S3CRET-pw", &hg);
    let base = format!("http://127.0.0.1:{}", server.port);
    let o = opts(dir.path());

    for (vcs, path, branch) in [
        (Vcs::Git, "git/repo.git", "main"),
        (Vcs::Hg, "hg/repo", "default"),
    ] {
        let want = Want::Branch(branch.into());
        let dest = dir.path().join(format!("co-{vcs:?}"));
        let bare = format!("{base}/{path}");
        let refused = checkout(vcs, &bare, &dest.with_extension("anon"), &want, &o).await;
        assert!(
            refused.is_err(),
            "{vcs:?}: the server let an anonymous clone through"
        );
        let with_creds = format!("http://bot:S3CRET%2Dpw@127.0.0.1:{}/{path}", server.port);
        let report = checkout(vcs, &with_creds, &dest, &want, &o)
            .await
            .unwrap_or_else(|e| panic!("{vcs:?}: {e}"));
        assert_eq!(report.revision.len(), 40);
        assert!(dest.join("file.txt").is_file());
        // A second checkout pulls through the store.
        checkout(vcs, &with_creds, &dest, &want, &o).await.unwrap();
    }
    let argv = std::fs::read_to_string(&log).unwrap();
    assert!(argv.contains(&format!("{base}/git/repo.git")), "{argv}");
    assert!(argv.contains(&format!("{base}/hg/repo")), "{argv}");
    assert!(!argv.contains("S3CRET") && !argv.contains("bot@"), "{argv}");
    // Nothing the checkouts left behind holds the password.
    let found = Command::new("grep")
        .args(["-rl", "S3CRET", dir.path().join("shares").to_str().unwrap()])
        .args([dir.path().join("co-Git"), dir.path().join("co-Hg")])
        .output()
        .unwrap();
    assert!(
        found.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&found.stdout)
    );
}
