"""The wheel's `hgauto` console script runs the same command line as the Rust binary."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path


def hgauto_script() -> str:
    return str(Path(sys.executable).parent / "hgauto")


def test_console_script_lists_runs_and_exits_with_the_command_code(tmp_path: Path) -> None:
    env = dict(os.environ, HGAUTO_STATE_DIR=str(tmp_path / "state"))
    version = subprocess.run([hgauto_script(), "--version"], capture_output=True, text=True, env=env)
    assert version.returncode == 0 and version.stdout.startswith("hgauto "), version
    listed = subprocess.run([hgauto_script(), "--json", "list"], capture_output=True, text=True, env=env)
    assert listed.returncode == 0, listed.stderr
    doc = json.loads(listed.stdout)
    assert doc["hgauto"] == 1 and doc["resources"] == []
    ran = subprocess.run([hgauto_script(), "run", "--", "sh", "-c", "echo hello; exit 4"], capture_output=True, text=True, env=env)
    assert ran.returncode == 4, ran.stderr
    assert "] hello" in ran.stdout
    bad = subprocess.run([hgauto_script(), "frobnicate"], capture_output=True, text=True, env=env)
    assert bad.returncode == 2
