"""hgauto.Agent: a Python function as the build, over a directory queue: every job built
and reported once, failures and exceptions as failed outcomes, silent mode, the status."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import List

import hgauto


def fill(q: hgauto.DirJobSource, n: int) -> None:
    for i in range(n):
        q.enqueue(hgauto.Job(f"j{i:02}", "build", revision=f"r{i}"))


def test_a_python_build_runs_for_every_job(tmp_path: Path) -> None:
    q = hgauto.DirJobSource(tmp_path / "q")
    fill(q, 6)
    seen: List[str] = []

    def build(job: hgauto.Job, *, log: str, debug: bool) -> object:
        seen.append(job.id)
        Path(log).open("a").write(f"building {job.id}\n")
        if job.id == "j01":
            return ("failed", "2 tests failed")
        if job.id == "j02":
            raise RuntimeError("the compiler crashed")
        return f"built {job.revision}"

    agent = hgauto.Agent(q, tmp_path / "agent" / "state", build, name="py-agent")
    results = []
    while (r := agent.run_once()) is not None:
        results.append(r)
    assert sorted(seen) == [f"j{i:02}" for i in range(6)]
    by_job = {r["job"]: r for r in results}
    assert by_job["j01"]["status"] == "failed" and by_job["j01"]["summary"] == "2 tests failed"
    assert by_job["j02"]["status"] == "failed" and "the compiler crashed" in str(by_job["j02"]["summary"])
    assert by_job["j03"] == {
        "job": "j03", "status": "succeeded", "summary": "built r3", "reported": True, "recheck": False,
    }
    assert q.outcomes()["j02"] == "failed"
    status = agent.status()
    assert status["agent"] == "py-agent" and status["ready"] is True
    logs = list((tmp_path / "agent" / "state" / "logs").iterdir())
    assert any("building j03" in p.read_text() for p in logs)


def test_silent_agents_report_nothing_and_stop_ends_run(tmp_path: Path) -> None:
    q = hgauto.DirJobSource(tmp_path / "q")
    fill(q, 2)
    config = tmp_path / "agent" / "config"
    config.mkdir(parents=True)
    (config / "silent").write_text("1")
    (config / "min-loop-seconds").write_text("0.05")
    agent = hgauto.Agent(q, tmp_path / "agent" / "state", lambda job, **kw: None)
    r = agent.run_once()
    assert r is not None and r["reported"] is False
    assert q.outcomes() == {}
    (config / "silent").unlink()
    threading.Timer(0.5, agent.stop).start()
    started = time.monotonic()
    agent.run()
    assert time.monotonic() - started < 10
    assert len(q.outcomes()) == 2
    assert agent.status()["state"] == "stopped"
