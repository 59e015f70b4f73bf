"""hgauto.Job and the job sources: a directory queue shared with a second process, leases
that run out, filters, and typed errors."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

import hgauto
from conftest import Moto


def test_directory_queue_leases_reports_and_history(tmp_path: Path) -> None:
    q = hgauto.DirJobSource(tmp_path / "q", lease_ttl=0.5)
    assert q.enqueue(hgauto.Job("a", "build/linux", revision="r1", payload={"pr": 7}))
    assert q.enqueue(hgauto.Job("b", "build/windows", revision="r1", priority=5))
    assert not q.enqueue(hgauto.Job("a", "build/linux"))

    first = q.next()
    assert first is not None and first.id == "b", "priority first"
    linux = q.next(checks=["build/linux"])
    assert linux is not None and linux.payload == {"pr": 7}
    assert linux.attempt == 1 and linux.lease_deadline_ms is not None
    assert q.next() is None

    time.sleep(0.7)
    with pytest.raises(hgauto.LeaseLost) as lost:
        q.heartbeat(linux)
    assert lost.value.job == "a"
    again = q.next(checks=["build/linux"])
    assert again is not None and again.attempt == 2
    q.started(again)
    q.report(again, "failed", "tests failed")
    q.report(again, "failed", "tests failed")
    q.release(first)
    b = q.next()
    assert b is not None and b.id == "b"
    q.report(b, "succeeded")
    assert q.outcomes() == {"a": "failed", "b": "succeeded"}

    q.enqueue(hgauto.Job("a2", "build/linux", revision="r1"))
    recheck = q.next()
    assert recheck is not None and recheck.previous == "failed"
    with pytest.raises(hgauto.InvalidInput):
        q.report(recheck, "exploded")
    with pytest.raises(hgauto.InvalidInput):
        q.next(shard=(3, 3))


def test_a_second_process_sees_the_same_queue(tmp_path: Path) -> None:
    root = tmp_path / "q"
    q = hgauto.DirJobSource(root)
    for i in range(20):
        q.enqueue(hgauto.Job(f"j{i}", "test", revision=f"r{i}"))
    # A plain file drop is a job too.
    tmp = root / ".drop"
    tmp.write_text(json.dumps({"id": "dropped", "check": "test"}))
    tmp.rename(root / "queue" / "dropped.json")
    script = (
        "import sys, hgauto\n"
        "q = hgauto.DirJobSource(sys.argv[1])\n"
        "n = 0\n"
        "while (j := q.next(shard=(0, 2))) is not None:\n"
        "    q.report(j, 'succeeded', 'child'); n += 1\n"
        "print(n)\n"
    )
    child = subprocess.run([sys.executable, "-c", script, str(root)], capture_output=True,
                           text=True, check=True)
    mine = 0
    while (j := q.next(shard=(1, 2))) is not None:
        q.report(j, "succeeded", "parent")
        mine += 1
    assert int(child.stdout) + mine == 21
    assert len(q.outcomes()) == 21


def test_list_source() -> None:
    s = hgauto.ListJobSource([hgauto.Job("x", "c")], lease_ttl=30)
    j = s.next()
    assert j is not None and j.source == "list"
    assert s.heartbeat(j) >= (j.lease_deadline_ms or 0)
    s.report(j, "skipped", "nothing to do")
    assert s.next() is None


def test_depth_counts_waiting_and_leased_jobs(tmp_path: Path) -> None:
    q = hgauto.DirJobSource(tmp_path / "q")
    for i in range(3):
        q.enqueue(hgauto.Job(f"j{i}", "build/linux", revision=f"r{i}"))
    q.enqueue(hgauto.Job("w", "build/windows", revision="r"))
    assert q.depth() == {"pending": 4, "leased": 0, "exact": True}
    job = q.next(checks=["build/linux"])
    assert job is not None
    assert q.depth(checks=["build/linux"]) == {"pending": 2, "leased": 1, "exact": True}
    q.report(job, "succeeded", "built")
    assert q.depth(checks=["build/linux"]) == {"pending": 2, "leased": 0, "exact": True}
    with pytest.raises(hgauto.InvalidInput):
        q.depth(shard=(2, 2))


def test_vcs_branch_source_turns_new_heads_into_jobs(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    env = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.invalid",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.invalid",
           "PATH": "/usr/local/bin:/usr/bin:/bin"}

    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=repo, env=env, check=True,
                              capture_output=True, text=True).stdout.strip()

    git("init", "-q", "-b", "main")
    (repo / "f").write_text("1\n")
    git("add", "f")
    git("commit", "-qm", "one")
    head = git("rev-parse", "HEAD")
    s = hgauto.VcsBranchSource(tmp_path / "jobs", share_base=tmp_path / "shares",
                               poll_interval=3600)
    s.watch(str(repo), ["main"], ["build/linux", "test/linux"])
    with pytest.raises(hgauto.InvalidInput):
        s.watch(str(repo), ["main"], ["x"], vcs="svn")
    assert s.poll() == 2
    assert s.poll() == 0
    jobs = [s.next(), s.next()]
    assert all(j is not None and j.revision == head for j in jobs)
    assert sorted(j.check for j in jobs if j) == ["build/linux", "test/linux"]
    assert s.next() is None


def test_sqs_job_source_against_moto(tmp_path: Path, moto: Moto) -> None:
    import hgauto.aws

    settings = moto.settings(tmp_path / "state")
    url, dlq = hgauto.aws.SqsJobSource.create_queues("py-jobs", 3, **settings)
    q = hgauto.aws.SqsJobSource(url, dead_letter_url=dlq, lease_ttl=5, wait=0, **settings)
    q.enqueue(hgauto.Job("m1", "build/linux", revision="abc", payload={"pr": 9}))
    depth = q.depth()
    assert depth is not None and depth["pending"] == 1 and depth["exact"] is False
    job = q.next(checks=["build/linux"])
    assert job is not None and job.payload == {"pr": 9} and job.attempt == 1
    assert q.next() is None
    q.heartbeat(job)
    q.report(job, "succeeded", "built")
    q.report(job, "succeeded", "built")
    with pytest.raises(hgauto.LeaseLost):
        q.heartbeat(job)

    # A prefetching consumer holds what it took until it hands it out or gives it back.
    fast = hgauto.aws.SqsJobSource(url, lease_ttl=60, wait=0, prefetch=3, **settings)
    for i in range(3):
        fast.enqueue(hgauto.Job(f"p{i}", "test"))
    first = fast.next()
    assert first is not None
    assert q.next() is None, "the other two are prefetched by `fast`"
    fast.release_prefetched()
    others = [q.next(), q.next()]
    assert all(o is not None for o in others)
    for o in others:
        assert o is not None
        q.report(o, "succeeded")
    fast.report(first, "succeeded")
