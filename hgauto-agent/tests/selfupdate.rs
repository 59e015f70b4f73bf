//! Self-update against real git and Mercurial repositories (time injected): a change to
//! two repositories inside the quiet window applies once, after it; the ready flag skips
//! the wait; a failing check blocks and says so; a failing hook rolls back; a stale lock
//! is taken over and a fresh one respected; the Nagios check goes 0, 1, 2 as "out of
//! sync" ages.

use hgauto_testkit::support;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use hgauto_agent::selfupdate::{SelfUpdate, SelfUpdateBuilder, UpdateOutcome, UpdateRepo};
use hgauto_ci::checkout::Vcs;
use hgauto_core::clock::{Clock, ManualClock};
use support::sh;

const MINUTE: Duration = Duration::from_secs(60);

/// A repository with one commit on `production`; returns its path.
fn upstream(vcs: Vcs, dir: &Path, name: &str) -> PathBuf {
    let repo = dir.join(name);
    std::fs::create_dir_all(&repo).unwrap();
    match vcs {
        Vcs::Git => sh(
            &repo,
            "git init -q -b production && echo 0 > config && git add config && git commit -qm c0",
        ),
        Vcs::Hg => sh(
            &repo,
            "hg init && hg branch -q production && echo 0 > config && hg add -q config && hg commit -m c0",
        ),
    };
    repo
}

/// Commits `text` as the new content of `config` on `production`; returns the head.
fn commit(vcs: Vcs, repo: &Path, text: &str) -> String {
    match vcs {
        Vcs::Git => sh(
            repo,
            &format!("echo '{text}' > config && git commit -qam '{text}' && git rev-parse HEAD"),
        ),
        Vcs::Hg => sh(
            repo,
            &format!(
                "echo '{text}' > config && hg commit -m '{text}' && hg log -r . -T '{{node}}'"
            ),
        ),
    }
}

struct World {
    dir: tempfile::TempDir,
    clock: ManualClock,
    git: PathBuf,
    hg: PathBuf,
}

impl World {
    fn new() -> World {
        let dir = tempfile::tempdir().unwrap();
        let git = upstream(Vcs::Git, dir.path(), "buildbot-configs");
        let hg = upstream(Vcs::Hg, dir.path(), "tools");
        World {
            clock: ManualClock::new(1_700_000_000_000),
            git,
            hg,
            dir,
        }
    }

    fn live(&self, name: &str) -> PathBuf {
        self.dir.path().join("live").join(name)
    }

    fn updater(&self) -> SelfUpdateBuilder {
        SelfUpdate::builder(self.dir.path().join("state"))
            .clock(Arc::new(self.clock.clone()))
            .quiet_window(10 * MINUTE)
            .repository(UpdateRepo {
                name: "buildbot-configs".into(),
                vcs: Vcs::Git,
                url: self.git.display().to_string(),
                branch: "production".into(),
                working_copy: self.live("buildbot-configs"),
            })
            .repository(UpdateRepo {
                name: "tools".into(),
                vcs: Vcs::Hg,
                url: self.hg.display().to_string(),
                branch: "production".into(),
                working_copy: self.live("tools"),
            })
    }

    fn running(&self, name: &str) -> String {
        std::fs::read_to_string(self.live(name).join("config"))
            .unwrap()
            .trim()
            .to_owned()
    }

    /// A hook that appends the running configs to `hook.log` and exits with `code`.
    fn hook(&self, code: i32) -> Vec<String> {
        let log = self.dir.path().join("hook.log");
        vec![
            "sh".into(),
            "-c".into(),
            format!(
                "echo \"$(cat \"$HGAUTO_UPDATE_BUILDBOT_CONFIGS_DIR/config\") $(cat \"$HGAUTO_UPDATE_TOOLS_DIR/config\")\" >> '{}'; exit {code}",
                log.display()
            ),
        ]
    }

    fn hook_runs(&self) -> Vec<String> {
        std::fs::read_to_string(self.dir.path().join("hook.log"))
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }
}

#[tokio::test]
async fn changes_to_two_repositories_apply_once_after_the_quiet_window() {
    let w = World::new();
    let u = w.updater().hook(w.hook(0)).build().unwrap();
    assert_eq!(
        u.update_once().await.unwrap(),
        UpdateOutcome::InSync,
        "first round: the working copies are made"
    );
    assert_eq!(
        (
            w.running("buildbot-configs").as_str(),
            w.running("tools").as_str()
        ),
        ("0", "0")
    );

    let a = commit(Vcs::Git, &w.git, "a1");
    w.clock.advance(MINUTE);
    assert!(matches!(
        u.update_once().await.unwrap(),
        UpdateOutcome::Waiting { .. }
    ));
    w.clock.advance(3 * MINUTE);
    let b = commit(Vcs::Hg, &w.hg, "b1");
    let second_seen = w.clock.now_ms();
    let waiting = u.update_once().await.unwrap();
    assert_eq!(
        waiting,
        UpdateOutcome::Waiting {
            until_ms: second_seen + 10 * 60_000
        },
        "the window restarts when the second repository moves"
    );
    // Nine minutes after the second change: still waiting; ten: applied, once.
    w.clock.advance(9 * MINUTE);
    assert!(matches!(
        u.update_once().await.unwrap(),
        UpdateOutcome::Waiting { .. }
    ));
    w.clock.advance(MINUTE);
    match u.update_once().await.unwrap() {
        UpdateOutcome::Applied { running } => {
            assert_eq!(running["buildbot-configs"], a);
            assert_eq!(running["tools"], b);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        (
            w.running("buildbot-configs").as_str(),
            w.running("tools").as_str()
        ),
        ("a1", "b1")
    );
    assert_eq!(w.hook_runs(), ["a1 b1"]);
    w.clock.advance(MINUTE);
    assert_eq!(u.update_once().await.unwrap(), UpdateOutcome::InSync);
    assert_eq!(w.hook_runs().len(), 1, "applied once");
    let state = u.state().unwrap();
    assert_eq!(state.out_of_sync_since_ms, None);
    assert_eq!(state.running["tools"], b);
}

#[tokio::test]
async fn the_ready_flag_applies_without_waiting() {
    let w = World::new();
    let flag = w.dir.path().join("ready");
    let u = w.updater().ready_flag(&flag).build().unwrap();
    u.update_once().await.unwrap();
    commit(Vcs::Git, &w.git, "urgent");
    assert!(matches!(
        u.update_once().await.unwrap(),
        UpdateOutcome::Waiting { .. }
    ));
    std::fs::write(&flag, "").unwrap();
    assert!(matches!(
        u.update_once().await.unwrap(),
        UpdateOutcome::Applied { .. }
    ));
    assert_eq!(w.running("buildbot-configs"), "urgent");
    assert!(!flag.exists(), "the flag is used up");
}

#[tokio::test]
async fn a_failing_check_blocks_the_update_and_the_status_says_so() {
    let w = World::new();
    // The check reads the staged tree: a config saying "broken" fails it.
    let u = w
        .updater()
        .quiet_window(Duration::ZERO)
        .check_command([
            "sh",
            "-c",
            "if grep -q broken \"$HGAUTO_UPDATE_BUILDBOT_CONFIGS_DIR/config\"; then echo 'checkconfig: bad master.cfg' >&2; exit 3; fi",
        ])
        .build()
        .unwrap();
    u.update_once().await.unwrap();
    commit(Vcs::Git, &w.git, "broken");
    match u.update_once().await.unwrap() {
        UpdateOutcome::Blocked { reason } => {
            assert!(
                reason.contains("check command exited 3: checkconfig: bad master.cfg"),
                "{reason}"
            )
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(w.running("buildbot-configs"), "0", "nothing applied");
    let state = u.state().unwrap();
    assert!(state.last_error.as_deref().unwrap().contains("checkconfig"));
    assert!(state.out_of_sync_since_ms.is_some());
    let (code, message) = u.nagios(30, 60);
    assert_eq!(code, 0, "{message}");
    assert!(
        message.contains("last error: check command exited 3"),
        "{message}"
    );
    // A fix upstream goes through.
    commit(Vcs::Git, &w.git, "fixed");
    assert!(matches!(
        u.update_once().await.unwrap(),
        UpdateOutcome::Applied { .. }
    ));
    assert_eq!(u.state().unwrap().last_error, None);
}

#[tokio::test]
async fn a_failing_hook_rolls_the_working_copies_back() {
    let w = World::new();
    let u = w
        .updater()
        .quiet_window(Duration::ZERO)
        .hook(w.hook(1))
        .build()
        .unwrap();
    u.update_once().await.unwrap();
    commit(Vcs::Git, &w.git, "a2");
    commit(Vcs::Hg, &w.hg, "b2");
    match u.update_once().await.unwrap() {
        UpdateOutcome::RolledBack { reason } => {
            assert!(reason.contains("hook exited 1"), "{reason}")
        }
        other => panic!("{other:?}"),
    }
    // The hook saw the new revisions, then ran again on the old ones after the rollback.
    assert_eq!(w.hook_runs(), ["a2 b2", "0 0"]);
    assert_eq!(
        (
            w.running("buildbot-configs").as_str(),
            w.running("tools").as_str()
        ),
        ("0", "0")
    );
    let state = u.state().unwrap();
    assert!(state.last_error.unwrap().contains("rolled back"));
    assert_ne!(state.running["tools"], state.seen["tools"].revision);
    let rejected = state.rejected.expect("the failed heads are recorded");
    assert_eq!(rejected.heads["tools"], state.seen["tools"].revision);

    // The same heads are not applied again: skipped, the hook left alone, and the state
    // and the Nagios line say so.
    for _ in 0..2 {
        match u.update_once().await.unwrap() {
            UpdateOutcome::Skipped { reason } => {
                assert!(
                    reason.contains("failed before") && reason.contains("hook exited 1"),
                    "{reason}"
                )
            }
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(w.hook_runs(), ["a2 b2", "0 0"]);
    let (_, line) = u.nagios(30, 60);
    assert!(line.contains("skipping buildbot-configs"), "{line}");
    let json = std::fs::read_to_string(w.dir.path().join("state/selfupdate.json")).unwrap();
    assert!(json.contains("\"rejected\""), "{json}");

    // Once a branch moves, the new heads are tried (and fail again here).
    commit(Vcs::Git, &w.git, "a3");
    assert!(matches!(
        u.update_once().await.unwrap(),
        UpdateOutcome::RolledBack { .. }
    ));
    assert_eq!(w.hook_runs(), ["a2 b2", "0 0", "a3 b2", "0 0"]);
}

/// A hook that leaves a process behind and outlives its timeout: the whole group goes.
#[tokio::test]
async fn a_timed_out_hook_is_killed_with_everything_it_started() {
    let w = World::new();
    let pidfile = w.dir.path().join("grandchild.pid");
    let hook = vec![
        "sh".to_owned(),
        "-c".to_owned(),
        format!("sleep 600 & echo $! > '{}'; wait", pidfile.display()),
    ];
    let u = w
        .updater()
        .quiet_window(Duration::ZERO)
        .command_timeout(Duration::from_secs(1))
        .hook(hook)
        .build()
        .unwrap();
    u.update_once().await.unwrap();
    commit(Vcs::Git, &w.git, "a2");
    match u.update_once().await.unwrap() {
        UpdateOutcome::RolledBack { reason } => {
            assert!(reason.contains("did not finish"), "{reason}")
        }
        other => panic!("{other:?}"),
    }
    // Killed by the group kill (and reaped by init: it was the shell's child).
    support::wait_until_gone(&pidfile, "the hook's sleep, past its timeout");
}

/// `watch` survives a remote that is briefly gone: the failure is told, retried, and the
/// watch goes on to an in-sync round once it is back.
#[tokio::test]
async fn watch_retries_a_transient_failure_instead_of_ending() {
    let w = World::new();
    let u = w.updater().quiet_window(Duration::ZERO).build().unwrap();
    u.update_once().await.unwrap();
    let moved = w.dir.path().join("moved-away");
    std::fs::rename(&w.hg, &moved).unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let watch = u.watch(Duration::from_secs(3600), move |r| {
        let _ = tx.send(match r {
            Ok(o) => Ok(o.clone()),
            Err(e) => Err(e.to_string()),
        });
    });
    let check = async {
        let first = rx.recv().await.unwrap();
        assert!(first.is_err(), "{first:?}");
        std::fs::rename(&moved, &w.hg).unwrap();
        loop {
            match rx.recv().await.unwrap() {
                Ok(UpdateOutcome::InSync) => break,
                Err(_) => continue,
                other => panic!("{other:?}"),
            }
        }
    };
    tokio::select! {
        _ = watch => panic!("watch ended"),
        _ = check => {}
    }
}

#[tokio::test]
async fn a_stale_lock_is_taken_over_and_a_fresh_one_respected() {
    let w = World::new();
    let u = w.updater().quiet_window(Duration::ZERO).build().unwrap();
    let lock = w.dir.path().join("state/selfupdate.lock");
    let now = w.clock.now_ms();
    std::fs::write(
        &lock,
        format!("{{\"pid\": 1, \"taken_ms\": {}}}", now - 60 * 60_000),
    )
    .unwrap();
    assert_eq!(
        u.update_once().await.unwrap(),
        UpdateOutcome::Locked,
        "an hour-old lock is held"
    );
    std::fs::write(
        &lock,
        format!("{{\"pid\": 1, \"taken_ms\": {}}}", now - 121 * 60_000),
    )
    .unwrap();
    assert_eq!(
        u.update_once().await.unwrap(),
        UpdateOutcome::InSync,
        "a 121-minute-old lock is stale"
    );
    assert!(!lock.exists(), "released after the round");
    // A holder that crashed (its pid is gone) is taken over at once, however fresh.
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let dead = child.id();
    child.wait().unwrap();
    std::fs::write(&lock, format!("{{\"pid\": {dead}, \"taken_ms\": {now}}}")).unwrap();
    assert_eq!(u.update_once().await.unwrap(), UpdateOutcome::InSync);
}

#[tokio::test]
async fn the_nagios_check_goes_ok_warning_critical_as_out_of_sync_ages() {
    let w = World::new();
    let u = w.updater().quiet_window(24 * 60 * MINUTE).build().unwrap();
    u.update_once().await.unwrap();
    assert_eq!(u.nagios(30, 60).0, 0);
    commit(Vcs::Hg, &w.hg, "late");
    u.update_once().await.unwrap();
    w.clock.advance(10 * MINUTE);
    assert_eq!(u.nagios(30, 60).0, 0);
    w.clock.advance(21 * MINUTE);
    let (code, message) = u.nagios(30, 60);
    assert_eq!(code, 1, "{message}");
    assert!(
        message.starts_with("SELFUPDATE WARNING - out of sync for 31 min (tools "),
        "{message}"
    );
    w.clock.advance(30 * MINUTE);
    assert_eq!(u.nagios(30, 60).0, 2);
}

#[test]
fn bad_configurations_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let e = SelfUpdate::builder(dir.path()).build().unwrap_err();
    assert!(e.to_string().contains("no repository"), "{e}");
    let repo = |name: &str| UpdateRepo {
        name: name.into(),
        vcs: Vcs::Git,
        url: "/nowhere".into(),
        branch: "production".into(),
        working_copy: dir.path().join(name),
    };
    let e = SelfUpdate::builder(dir.path())
        .repository(repo("a b"))
        .build()
        .unwrap_err();
    assert!(e.to_string().contains("\"a b\""), "{e}");
    // `.` and `..` would stage into the staging area itself or its parent.
    for dots in [".", ".."] {
        let e = SelfUpdate::builder(dir.path())
            .repository(repo(dots))
            .build()
            .unwrap_err();
        assert!(e.to_string().contains(&format!("{dots:?}")), "{e}");
    }
    let e = SelfUpdate::builder(dir.path())
        .repository(repo("a"))
        .repository(repo("a"))
        .build()
        .unwrap_err();
    assert!(e.to_string().contains("twice"), "{e}");
    let e = SelfUpdate::builder(dir.path())
        .repository(repo("a"))
        .hook(Vec::<String>::new())
        .build()
        .unwrap_err();
    assert!(e.to_string().contains("program"), "{e}");
}
