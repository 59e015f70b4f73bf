"""hgauto.SelfUpdate over real git repositories: the first update round makes the working copies, a
change waits for the ready flag, a failing hook rolls back, and the Nagios check."""

from __future__ import annotations

import subprocess
from pathlib import Path

import hgauto


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), *args], check=True, capture_output=True, text=True
    ).stdout.strip()


def upstream(root: Path, name: str) -> Path:
    repo = root / name
    repo.mkdir()
    git(repo, "init", "-q", "-b", "production")
    (repo / "config").write_text("0\n")
    git(repo, "add", "config")
    git(repo, "-c", "user.name=t", "-c", "user.email=t@example.org", "commit", "-qm", "c0")
    return repo


def commit(repo: Path, text: str) -> str:
    (repo / "config").write_text(text + "\n")
    git(repo, "-c", "user.name=t", "-c", "user.email=t@example.org", "commit", "-qam", text)
    return git(repo, "rev-parse", "HEAD")


def test_updates_wait_for_the_flag_and_a_failing_hook_rolls_back(tmp_path: Path) -> None:
    a, b = upstream(tmp_path, "configs"), upstream(tmp_path, "tools")
    live = tmp_path / "live"
    flag = tmp_path / "ready"
    hook_log = tmp_path / "hook.log"
    repos = [
        {"name": n, "vcs": "git", "url": str(p), "branch": "production", "working_copy": str(live / n)}
        for n, p in (("configs", a), ("tools", b))
    ]
    fail_marker = tmp_path / "fail-hook"
    u = hgauto.SelfUpdate(
        tmp_path / "state",
        repos,
        quiet_window=3600,
        ready_flag=flag,
        hook=["sh", "-c", f'echo "$HGAUTO_UPDATE_CONFIGS_REV" >> {hook_log}; test ! -e {fail_marker}'],
    )
    assert u.update_once() == {"outcome": "in_sync"}
    assert (live / "configs" / "config").read_text() == "0\n"

    head = commit(a, "1")
    assert u.update_once()["outcome"] == "waiting"
    code, message = u.nagios(30, 60)
    assert code == 0 and "out of sync" in message

    fail_marker.write_text("")
    flag.write_text("")
    r = u.update_once()
    assert r["outcome"] == "rolled_back" and "hook exited 1" in str(r["reason"])
    assert (live / "configs" / "config").read_text() == "0\n"
    assert u.state()["last_error"]

    old = git(a, "rev-parse", "HEAD~1")
    # After the rollback the hook ran again, on the old revision.
    assert hook_log.read_text().split() == [head, old]

    # The failed heads are skipped until a branch moves, even once the hook would pass.
    fail_marker.unlink()
    r = u.update_once()
    assert r["outcome"] == "skipped" and "failed before" in str(r["reason"]), r
    assert "skipping configs" in u.nagios(30, 60)[1]
    head = commit(a, "2")
    r = u.update_once()
    assert r["outcome"] == "applied", r
    assert r["running"] == {"configs": head, "tools": git(b, "rev-parse", "HEAD")}
    assert (live / "configs" / "config").read_text() == "2\n"
    assert not flag.exists()
    assert hook_log.read_text().split()[-1] == head
    assert u.nagios(30, 60) == (0, "SELFUPDATE OK - in sync")
