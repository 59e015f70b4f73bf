//! Working copies hgauto did not make (a person's own git or hg clone) go through
//! `checkout` and a self-update round: they are updated in place, and their untracked
//! files, ignored files and unpushed commits survive, or the run is refused with an error
//! that names the path and what would be lost. Nothing is ever deleted.

use hgauto_testkit::support;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use hgauto_agent::selfupdate::{SelfUpdate, UpdateRepo};
use hgauto_ci::checkout::{checkout, CheckoutOptions, Vcs, Want};
use hgauto_core::clock::ManualClock;
use hgauto_core::retry::RetryPolicy;
use support::sh;

/// An upstream repository with one commit on the default branch, ignoring `ignored.txt`.
fn upstream(vcs: Vcs, dir: &Path) -> PathBuf {
    let repo = dir.join("upstream");
    std::fs::create_dir(&repo).unwrap();
    sh(
        &repo,
        match vcs {
            Vcs::Git => "git init -q -b main . && printf 'ignored.txt\\n' > .gitignore && echo v1 > file.txt && git add -A && git commit -qm c1",
            Vcs::Hg => "hg init . && printf 'syntax: glob\\nignored.txt\\n' > .hgignore && echo v1 > file.txt && hg addremove -q && hg commit -m c1",
        },
    );
    repo
}

fn advance(vcs: Vcs, repo: &Path, text: &str) -> String {
    sh(
        repo,
        &match vcs {
            Vcs::Git => {
                format!("echo {text} > file.txt && git commit -qam {text} && git rev-parse HEAD")
            }
            Vcs::Hg => format!(
                "echo {text} > file.txt && hg commit -m {text} && hg log -r . -T '{{node}}'"
            ),
        },
    )
}

/// A clone made by hand (not sharing any hgauto store), with an untracked and an ignored
/// file.
fn hand_clone(vcs: Vcs, up: &Path, dir: &Path) -> PathBuf {
    let mine = dir.join("mine");
    sh(
        dir,
        &format!("{} clone -q {} mine", vcs.name(), up.display()),
    );
    std::fs::write(mine.join("untracked.txt"), "notes").unwrap();
    std::fs::write(mine.join("ignored.txt"), "SECRET=1").unwrap();
    mine
}

fn unpushed_commit(vcs: Vcs, mine: &Path) -> String {
    sh(
        mine,
        match vcs {
            Vcs::Git => "echo mine > local.txt && git add local.txt && git commit -qm mine && git rev-parse HEAD",
            Vcs::Hg => "echo mine > local.txt && hg add -q local.txt && hg commit -m mine && hg log -r . -T '{node}'",
        },
    )
}

fn has_commit(vcs: Vcs, mine: &Path, rev: &str) -> bool {
    let cmd = match vcs {
        Vcs::Git => format!("git cat-file -e {rev}^{{commit}} && echo yes"),
        Vcs::Hg => format!("hg log -r {rev} -T yes"),
    };
    sh(mine, &cmd) == "yes"
}

fn opts(dir: &Path) -> CheckoutOptions {
    let mut o = CheckoutOptions::new(dir.join("shares"));
    o.retry = RetryPolicy::none();
    o
}

fn read(p: PathBuf) -> String {
    std::fs::read_to_string(p).unwrap().trim().to_owned()
}

fn default_branch(vcs: Vcs) -> Want {
    Want::from_options(vcs, None, None).unwrap()
}

async fn a_hand_made_clone_is_updated_in_place_or_refused(vcs: Vcs) {
    let dir = tempfile::tempdir().unwrap();
    let up = upstream(vcs, dir.path());
    let mine = hand_clone(vcs, &up, dir.path());
    let url = up.to_str().unwrap();
    let o = opts(dir.path());

    // Clean but for untracked and ignored files: updated in place, both kept.
    let v2 = advance(vcs, &up, "v2");
    let r = checkout(vcs, url, &mine, &default_branch(vcs), &o)
        .await
        .unwrap();
    assert_eq!(r.revision, v2);
    assert!(r.recovered.iter().any(|x| x.contains("in place")), "{r:?}");
    assert_eq!(read(mine.join("file.txt")), "v2");
    assert_eq!(read(mine.join("untracked.txt")), "notes");
    assert_eq!(read(mine.join("ignored.txt")), "SECRET=1");

    // purge would delete them: refused, and they stay.
    let e = checkout(
        vcs,
        url,
        &mine,
        &default_branch(vcs),
        &o.clone().with_purge(true),
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(
        e.contains(&*mine.to_string_lossy()) && e.contains("untracked.txt") && e.contains("purge"),
        "{e}"
    );
    assert_eq!(read(mine.join("untracked.txt")), "notes");

    // An unpushed commit: refused, naming the path and the commit; nothing changes.
    let local = unpushed_commit(vcs, &mine);
    advance(vcs, &up, "v3");
    let e = checkout(vcs, url, &mine, &default_branch(vcs), &o)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains(&*mine.to_string_lossy())
            && e.contains("commits that are not in the remote")
            && e.contains(&local[..12]),
        "{e}"
    );
    assert!(has_commit(vcs, &mine, &local));
    assert_eq!(read(mine.join("local.txt")), "mine");
    assert_eq!(read(mine.join("file.txt")), "v2");
    assert_eq!(read(mine.join("untracked.txt")), "notes");
    assert_eq!(read(mine.join("ignored.txt")), "SECRET=1");

    // A local change to a tracked file: refused, naming the file.
    let fresh = dir.path().join("fresh");
    std::fs::create_dir(&fresh).unwrap();
    let mine2 = hand_clone(vcs, &up, &fresh);
    std::fs::write(mine2.join("file.txt"), "edited").unwrap();
    let e = checkout(vcs, url, &mine2, &default_branch(vcs), &o)
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("local changes") && e.contains("file.txt"), "{e}");
    assert_eq!(read(mine2.join("file.txt")), "edited");
}

#[tokio::test]
async fn git_hand_made_clone_is_updated_in_place_or_refused() {
    a_hand_made_clone_is_updated_in_place_or_refused(Vcs::Git).await;
}

#[tokio::test]
async fn hg_hand_made_clone_is_updated_in_place_or_refused() {
    a_hand_made_clone_is_updated_in_place_or_refused(Vcs::Hg).await;
}

async fn self_update_keeps_a_hand_made_working_copy(vcs: Vcs) {
    let dir = tempfile::tempdir().unwrap();
    let up = upstream(vcs, dir.path());
    let branch = match vcs {
        Vcs::Git => "main",
        Vcs::Hg => "default",
    };
    let mine = hand_clone(vcs, &up, dir.path());
    let local = unpushed_commit(vcs, &mine);
    let clock = ManualClock::new(1_700_000_000_000);
    let u = SelfUpdate::builder(dir.path().join("state"))
        .clock(Arc::new(clock.clone()))
        .quiet_window(Duration::ZERO)
        .checkout_options(opts(dir.path()))
        .repository(UpdateRepo {
            name: "configs".into(),
            vcs,
            url: up.display().to_string(),
            branch: branch.into(),
            working_copy: mine.clone(),
        })
        .build()
        .unwrap();
    advance(vcs, &up, "v2");
    clock.advance(Duration::from_secs(60));
    let e = u.update_once().await.unwrap_err().to_string();
    assert!(
        e.contains(&*mine.to_string_lossy()) && e.contains("commits that are not in the remote"),
        "{e}"
    );
    assert!(has_commit(vcs, &mine, &local));
    assert_eq!(read(mine.join("local.txt")), "mine");
    assert_eq!(read(mine.join("untracked.txt")), "notes");
    assert_eq!(read(mine.join("ignored.txt")), "SECRET=1");
    assert_eq!(read(mine.join("file.txt")), "v1");
}

#[tokio::test]
async fn git_self_update_keeps_a_hand_made_working_copy() {
    self_update_keeps_a_hand_made_working_copy(Vcs::Git).await;
}

#[tokio::test]
async fn hg_self_update_keeps_a_hand_made_working_copy() {
    self_update_keeps_a_hand_made_working_copy(Vcs::Hg).await;
}
