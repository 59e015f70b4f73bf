"""examples/python/experiment.py end to end: local machines, then the test sshd."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path
from typing import List

import pytest

from conftest import Nginx, Sshd
from test_helpers import git, make_wheel

SCRIPT = Path(__file__).resolve().parents[2] / "examples" / "python" / "experiment.py"
TOOL = b"""#!/bin/sh
# Counts the files of a tree and checks that it has a README.
set -e
echo "files: $(find "$1" -type f | wc -l)"
test -f "$1/README"
echo "tool: ok"
"""


@pytest.fixture
def inputs(tmp_path: Path, nginx: Nginx) -> List[str]:
    repo = tmp_path / "repo"
    (repo / "lib").mkdir(parents=True)
    git("init", "-q", "-b", "main", cwd=repo)
    (repo / "README").write_text("experiment\n")
    (repo / "lib" / "mod.py").write_text("X = 1\n")
    git("add", ".", cwd=repo)
    git("commit", "-q", "-m", "init", cwd=repo)
    revision = git("rev-parse", "HEAD", cwd=repo)
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    make_wheel(wheels, "expdep", "2.0")
    req = tmp_path / "requirements.txt"
    req.write_text("expdep==2.0\n")
    (nginx.root / "tool.sh").write_bytes(TOOL)
    return [
        "--repo", str(repo), "--revision", revision,
        "--requirements", str(req), "--find-links", str(wheels), "--no-index",
        "--tool-url", nginx.url("tool.sh"), "--tool-sha256", hashlib.sha256(TOOL).hexdigest(),
        "--work", str(tmp_path / "work"), "--summary", str(tmp_path / "summary.json"),
    ]


def run(args: List[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True,
                          timeout=300)


def check_summary(path: Path, machines: int = 2) -> None:
    summary = json.loads(path.read_text())["actions"]
    assert set(summary) == {"checkout", "create-venv", "download-tool", "run-tests"}
    tests = summary["run-tests"]
    assert tests["failed"] == 0 and len(tests["machines"]) == machines
    for m in tests["machines"]:
        assert m["ok"] and "files: 2" in m["stdout"] and "tool: ok" in m["stdout"]


def test_local_machines(inputs: List[str], tmp_path: Path) -> None:
    p = run(inputs)
    assert p.returncode == 0, p.stderr
    check_summary(tmp_path / "summary.json")
    # Logged through Python's logging: the script's own and hgauto's Rust records.
    assert "##### run-tests" in p.stderr and "hgauto.core" in p.stderr
    # A second run reuses the store and the venv.
    again = run([*inputs, "--serial"])
    assert again.returncode == 0, again.stderr
    summary = json.loads((tmp_path / "summary.json").read_text())["actions"]
    assert summary["create-venv"]["reused"] is True
    assert summary["checkout"]["cloned"] is False
    assert "[" in again.stderr and "stdout] tool: ok" in again.stderr


def test_ssh_hosts(inputs: List[str], tmp_path: Path, sshd: Sshd) -> None:
    p = run([*inputs, "--ssh", f"127.0.0.1:{sshd.port}", "--ssh-user", sshd.user,
             "--ssh-key", str(sshd.key)])
    assert p.returncode == 0, p.stderr
    check_summary(tmp_path / "summary.json")


def test_wrong_sha256_fails_with_a_clear_error(inputs: List[str], tmp_path: Path) -> None:
    args = list(inputs)
    args[args.index("--tool-sha256") + 1] = "0" * 64
    p = run(args)
    assert p.returncode == 2
    assert "download-tool failed: integrity check failed" in p.stderr
    assert "retryable: False" in p.stderr
