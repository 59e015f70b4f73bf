//! `checkout` with real git and Mercurial repositories made here: first checkout, a second
//! one through the pooled store, branches, stale locks, a lost revlog / pack file, an
//! interrupted clone, an unrelated repository at the destination (left alone), and purge.

use std::path::{Path, PathBuf};

use hgauto_ci::checkout::{checkout, CheckoutOptions, Vcs, Want};
use hgauto_core::retry::RetryPolicy;
use hgauto_core::Error;
use support::sh;

use hgauto_testkit::support;

/// An upstream repository with three commits on the default branch and one on `stable`.
/// Returns (path, [rev1, rev2, rev3], stable tip).
fn upstream(vcs: Vcs, dir: &Path) -> (PathBuf, Vec<String>, String) {
    let repo = dir.join("upstream");
    std::fs::create_dir(&repo).unwrap();
    let (init, commit, head, branch) = match vcs {
        Vcs::Git => (
            "git init -q -b main . && printf 'ignored.txt\\n' > .gitignore && git add .gitignore",
            "git add -A && git commit -q -m",
            "git rev-parse HEAD",
            "git checkout -q -b stable && echo s > stable.txt && git add -A && git commit -q -m stable && git rev-parse HEAD && git checkout -q main",
        ),
        Vcs::Hg => (
            "hg init . && printf 'syntax: glob\\nignored.txt\\n' > .hgignore && hg add -q .hgignore",
            "hg addremove -q && hg commit -q -m",
            "hg log -r . -T '{node}'",
            "hg branch -q stable && echo s > stable.txt && hg addremove -q && hg commit -q -m stable && hg log -r . -T '{node}' && hg update -q default",
        ),
    };
    sh(&repo, init);
    let mut revs = Vec::new();
    for i in 1..=3 {
        sh(&repo, &format!("echo v{i} > file.txt && {commit} c{i}"));
        revs.push(sh(&repo, head));
    }
    let stable = sh(&repo, branch);
    (repo, revs, stable)
}

fn opts(base: &Path) -> CheckoutOptions {
    let mut o = CheckoutOptions::new(base.join("shares"));
    o.retry = RetryPolicy::none();
    o
}

fn file(dest: &Path) -> String {
    std::fs::read_to_string(dest.join("file.txt"))
        .unwrap()
        .trim()
        .to_owned()
}

async fn first_and_second_checkout_share_the_store(vcs: Vcs) {
    let dir = tempfile::tempdir().unwrap();
    let (up, revs, stable) = upstream(vcs, dir.path());
    let url = up.to_str().unwrap();
    let o = opts(dir.path());
    let a = dir.path().join("a");
    let r = checkout(vcs, url, &a, &Want::Revision(revs[1].clone()), &o)
        .await
        .unwrap();
    assert!(r.cloned && !r.pulled, "{r:?}");
    assert_eq!(r.revision, revs[1]);
    assert_eq!(file(&a), "v2");
    assert!(r
        .store
        .ends_with(format!("{}/{}", vcs_name(vcs), root(vcs, &up))));

    // A second working copy: no clone, no pull (the revision is in the store).
    let b = dir.path().join("b");
    let r2 = checkout(vcs, url, &b, &Want::Revision(revs[0].clone()), &o)
        .await
        .unwrap();
    assert!(!r2.cloned && !r2.pulled, "{r2:?}");
    assert_eq!(r2.store, r.store);
    assert_eq!(file(&b), "v1");

    // A branch pulls and resolves; a new upstream commit is found by pulling.
    let r3 = checkout(vcs, url, &b, &Want::Branch("stable".into()), &o)
        .await
        .unwrap();
    assert_eq!(r3.revision, stable);
    assert!(b.join("stable.txt").exists());
    let (commit, head) = match vcs {
        Vcs::Git => ("git add -A && git commit -q -m c4", "git rev-parse HEAD"),
        Vcs::Hg => ("hg commit -q -m c4", "hg log -r . -T '{node}'"),
    };
    sh(&up, &format!("echo v4 > file.txt && {commit}"));
    let rev4 = sh(&up, head);
    let r4 = checkout(vcs, url, &a, &Want::Revision(rev4.clone()), &o)
        .await
        .unwrap();
    assert!(r4.pulled && !r4.cloned);
    assert_eq!(file(&a), "v4");

    // Unknown revisions and branches are NotFound.
    let missing = "0123456789abcdef0123456789abcdef01234567".to_owned();
    let e = checkout(vcs, url, &a, &Want::Revision(missing), &o)
        .await
        .unwrap_err();
    assert!(matches!(e, Error::NotFound { .. }), "{e}");
    let e = checkout(vcs, url, &a, &Want::Branch("nope".into()), &o)
        .await
        .unwrap_err();
    assert!(matches!(e, Error::NotFound { .. }), "{e}");
}

fn vcs_name(vcs: Vcs) -> &'static str {
    match vcs {
        Vcs::Git => "git",
        Vcs::Hg => "hg",
    }
}

fn root(vcs: Vcs, repo: &Path) -> String {
    match vcs {
        Vcs::Git => sh(repo, "git rev-list --max-parents=0 HEAD"),
        Vcs::Hg => sh(repo, "hg log -r 0 -T '{node}'"),
    }
}

#[tokio::test]
async fn git_first_and_second_checkout_share_the_store() {
    first_and_second_checkout_share_the_store(Vcs::Git).await;
}

#[tokio::test]
async fn hg_first_and_second_checkout_share_the_store() {
    first_and_second_checkout_share_the_store(Vcs::Hg).await;
}

async fn broken_stores_and_destinations_are_repaired(vcs: Vcs) {
    let dir = tempfile::tempdir().unwrap();
    let (up, revs, _) = upstream(vcs, dir.path());
    let url = up.to_str().unwrap();
    let o = opts(dir.path());
    let a = dir.path().join("a");
    let r = checkout(vcs, url, &a, &Want::Revision(revs[0].clone()), &o)
        .await
        .unwrap();
    let store = r.store.clone();

    // A stale lock left by a dead process (an hour old, for git, whose locks name nobody).
    match vcs {
        Vcs::Git => {
            let lock = store.join("refs/heads/main.lock");
            std::fs::write(&lock, "").unwrap();
            let hour_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
            std::fs::File::options()
                .write(true)
                .open(&lock)
                .unwrap()
                .set_modified(hour_ago)
                .unwrap();
        }
        Vcs::Hg => {
            let host = sh(dir.path(), "hostname");
            std::os::unix::fs::symlink(format!("{host}:999999"), store.join(".hg/store/lock"))
                .unwrap()
        }
    }
    let (commit, head) = match vcs {
        Vcs::Git => ("git add -A && git commit -q -m c4", "git rev-parse HEAD"),
        Vcs::Hg => ("hg commit -q -m c4", "hg log -r . -T '{node}'"),
    };
    sh(&up, &format!("echo v4 > file.txt && {commit}"));
    let rev4 = sh(&up, head);
    let r = checkout(vcs, url, &a, &Want::Revision(rev4.clone()), &o)
        .await
        .unwrap();
    assert!(
        r.recovered.iter().any(|x| x.contains("stale lock")),
        "{r:?}"
    );
    assert_eq!(file(&a), "v4");

    // A lost revlog / pack file: the store is rebuilt.
    match vcs {
        Vcs::Git => sh(
            &store,
            "rm -f objects/pack/*.pack; find objects -type f -path '*/[0-9a-f][0-9a-f]/*' -delete",
        ),
        Vcs::Hg => sh(&store, "rm .hg/store/data/file.txt.i"),
    };
    let b = dir.path().join("b");
    let r = checkout(vcs, url, &b, &Want::Revision(revs[2].clone()), &o)
        .await
        .unwrap();
    assert!(r.cloned, "{r:?}");
    assert!(
        r.recovered.iter().any(|x| x.contains("corrupt store")),
        "{r:?}"
    );
    assert_eq!(file(&b), "v3");

    // An interrupted clone (no completion marker): cloned again.
    std::fs::remove_file(store.join(".hgauto-store-ok")).unwrap();
    let r = checkout(vcs, url, &b, &Want::Revision(revs[1].clone()), &o)
        .await
        .unwrap();
    assert!(
        r.cloned && r.recovered.iter().any(|x| x.contains("unfinished")),
        "{r:?}"
    );
    assert_eq!(file(&b), "v2");

    // An unrelated repository at the destination is never deleted: its file in the way
    // refuses the update, and it is left as it was (tests/foreign_clones.rs has more).
    let c = dir.path().join("c");
    std::fs::create_dir(&c).unwrap();
    match vcs {
        Vcs::Git => sh(&c, "git init -q . && echo other > file.txt"),
        Vcs::Hg => sh(&c, "hg init . && echo other > file.txt"),
    };
    let e = checkout(vcs, url, &c, &Want::Revision(revs[2].clone()), &o)
        .await
        .unwrap_err();
    assert!(e.to_string().contains(&*c.to_string_lossy()), "{e}");
    assert_eq!(file(&c), "other");
    std::fs::remove_dir_all(&c).unwrap();
    checkout(vcs, url, &c, &Want::Revision(revs[2].clone()), &o)
        .await
        .unwrap();
    assert_eq!(file(&c), "v3");
    let d = dir.path().join("d");
    std::fs::create_dir(&d).unwrap();
    std::fs::write(d.join("precious"), "x").unwrap();
    let e = checkout(vcs, url, &d, &Want::Revision(revs[2].clone()), &o)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("refusing"), "{e}");
    assert!(d.join("precious").exists());

    // purge: exactly the revision's files remain.
    std::fs::write(c.join("untracked.txt"), "u").unwrap();
    std::fs::write(c.join("ignored.txt"), "i").unwrap();
    std::fs::write(c.join("file.txt"), "local change").unwrap();
    let r = checkout(
        vcs,
        url,
        &c,
        &Want::Revision(revs[2].clone()),
        &o.clone().with_purge(true),
    )
    .await
    .unwrap();
    assert_eq!(r.revision, revs[2]);
    assert_eq!(file(&c), "v3");
    assert!(!c.join("untracked.txt").exists() && !c.join("ignored.txt").exists());
}

#[tokio::test]
async fn git_broken_stores_and_destinations_are_repaired() {
    broken_stores_and_destinations_are_repaired(Vcs::Git).await;
}

#[tokio::test]
async fn hg_broken_stores_and_destinations_are_repaired() {
    broken_stores_and_destinations_are_repaired(Vcs::Hg).await;
}

#[tokio::test]
async fn an_unreachable_remote_is_retried_then_reported() {
    let dir = tempfile::tempdir().unwrap();
    let mut o = opts(dir.path());
    o.retry = RetryPolicy {
        max_retries: 2,
        base_delay: std::time::Duration::from_millis(10),
        factor: 2.0,
        max_delay: std::time::Duration::from_millis(50),
        jitter: hgauto_core::retry::Jitter::None,
    };
    // A closed loopback port: connection refused, a network error.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let e = checkout(
        Vcs::Git,
        &format!("http://127.0.0.1:{port}/repo.git"),
        &dir.path().join("x"),
        &Want::Branch("main".into()),
        &o,
    )
    .await
    .unwrap_err();
    assert!(e.to_string().to_lowercase().contains("connect"), "{e}");
    assert!(!dir.path().join("x").exists());
}

/// A server that accepts connections and never answers: a stalled fetch.
fn stalled_server() -> (u16, std::sync::mpsc::Sender<()>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (stop, stopped) = std::sync::mpsc::channel::<()>();
    std::thread::spawn(move || {
        listener.set_nonblocking(true).unwrap();
        let mut held = Vec::new();
        while stopped.try_recv().is_err() {
            if let Ok((c, _)) = listener.accept() {
                held.push(c);
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    });
    (port, stop)
}

/// Processes whose command line mentions `needle` (the stalled server's port).
fn processes_mentioning(needle: &str) -> Vec<String> {
    let mut found = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        if let Ok(cmdline) = std::fs::read(e.path().join("cmdline")) {
            let text = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            if text.contains(needle) && !text.contains("checkout-") {
                found.push(text);
            }
        }
    }
    found
}

#[tokio::test]
async fn a_stalled_fetch_is_killed_at_its_deadline() {
    for vcs in [Vcs::Git, Vcs::Hg] {
        let (port, stop) = stalled_server();
        let dir = tempfile::tempdir().unwrap();
        let o = opts(dir.path()).with_timeout(std::time::Duration::from_secs(2));
        let url = format!("http://127.0.0.1:{port}/repo");
        let started = std::time::Instant::now();
        let r = tokio::time::timeout(
            std::time::Duration::from_secs(60),
            checkout(
                vcs,
                &url,
                &dir.path().join("x"),
                &Want::Branch("main".into()),
                &o,
            ),
        )
        .await
        .unwrap_or_else(|_| panic!("{vcs:?}: the checkout hung past 60 s"));
        let e = r.unwrap_err();
        assert!(matches!(e, Error::Timeout { .. }), "{vcs:?}: {e}");
        assert!(
            started.elapsed() < std::time::Duration::from_secs(20),
            "{vcs:?}"
        );
        let left = processes_mentioning(&format!("127.0.0.1:{port}"));
        assert!(left.is_empty(), "{vcs:?}: still running: {left:?}");
        let _ = stop.send(());
    }
}

#[tokio::test]
async fn locks_of_a_live_process_or_too_young_are_kept() {
    let dir = tempfile::tempdir().unwrap();
    let (up, revs, _) = upstream(Vcs::Git, dir.path());
    let url = up.to_str().unwrap();
    let o = opts(dir.path());
    let a = dir.path().join("a");
    let r = checkout(Vcs::Git, url, &a, &Want::Revision(revs[0].clone()), &o)
        .await
        .unwrap();
    let lock = r.store.join("refs/heads/main.lock");
    let age = |secs: u64| {
        std::fs::File::options()
            .write(true)
            .open(&lock)
            .unwrap()
            .set_modified(std::time::SystemTime::now() - std::time::Duration::from_secs(secs))
            .unwrap();
    };
    // Old, but a process (a detached `git gc`, say) works in the store.
    std::fs::write(&lock, "").unwrap();
    age(3600);
    let mut gc = std::process::Command::new("sleep")
        .arg("60")
        .current_dir(&r.store)
        .spawn()
        .unwrap();
    let r2 = checkout(Vcs::Git, url, &a, &Want::Revision(revs[1].clone()), &o).await;
    let _ = gc.kill();
    let _ = gc.wait();
    let r2 = r2.unwrap();
    assert!(
        lock.exists(),
        "the lock of a live process was removed: {r2:?}"
    );
    assert!(
        !r2.recovered.iter().any(|x| x.contains("stale lock")),
        "{r2:?}"
    );
    // Nobody in the store, but the lock is seconds old: it may be a git that is starting.
    age(5);
    let r3 = checkout(Vcs::Git, url, &a, &Want::Revision(revs[2].clone()), &o)
        .await
        .unwrap();
    assert!(lock.exists(), "a young lock was removed: {r3:?}");
    // Old and nobody there: stale.
    age(3600);
    let r4 = checkout(Vcs::Git, url, &a, &Want::Revision(revs[1].clone()), &o)
        .await
        .unwrap();
    assert!(
        !lock.exists() && r4.recovered.iter().any(|x| x.contains("stale lock")),
        "{r4:?}"
    );
}
