"""hgauto.Pipeline on local machines: a dict and a TOML file, Python function steps with
retries, the in-tree example end to end, fake mode, and bad input refused before any
machine exists."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, List

import pytest

import hgauto

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "python" / "pipeline.py"


def states(result: Dict[str, Any]) -> Dict[str, Any]:
    return {c["task"]: (c["state"], c["attempts"]) for s in result["steps"] for c in s["cells"]}


def test_function_steps_get_outputs_and_retry_by_kind(tmp_path: Path) -> None:
    calls: List[int] = []

    def flaky(ctx: Dict[str, Any]) -> Dict[str, str]:
        calls.append(ctx["attempt"])
        if ctx["attempt"] < 3:
            raise ConnectionError("index unreachable")
        return {"attempt": str(ctx["attempt"])}

    def fails(ctx: Dict[str, Any]) -> None:
        raise ValueError("2 tests failed")

    def after(ctx: Dict[str, Any]) -> Dict[str, str]:
        return {"saw": json.dumps(ctx["dependencies"], sort_keys=True)}

    p = hgauto.Pipeline.from_dict(
        {
            "name": "py",
            "dimensions": {"v": ["1", "2"]},
            "steps": [
                {"name": "upload", "function": "flaky", "kind": {"max_retries": 3, "base_delay_secs": 0.01}},
                {"name": "test", "function": "fails", "over": ["v"]},
                {"name": "notify", "function": "after", "needs": ["upload"]},
                {"name": "late", "function": "after", "needs": ["test"]},
            ],
        },
        functions={"flaky": flaky, "fails": fails, "after": after},
    )
    assert p.name == "py"
    assert p.plan() == ["upload", "test-1", "test-2", "notify", "late"]
    result = p.run(tmp_path / "out")
    assert states(result) == {
        "upload": ("succeeded", 3),
        "test-1": ("failed", 1),
        "test-2": ("failed", 1),
        "notify": ("succeeded", 1),
        "late": ("skipped", 0),
    }
    assert calls == [1, 2, 3]
    cells = {c["task"]: c for s in result["steps"] for c in s["cells"]}
    assert json.loads(cells["notify"]["outputs"]["saw"]) == {"upload": {"attempt": "3"}}
    # Whichever of its failed needs ended first.
    assert cells["late"]["reason"] in ("needs test-1, which failed", "needs test-2, which failed")
    assert result["ok"] is False
    assert [f["task"] for f in result["failures"]] == ["test-1", "test-2"]
    assert "2 tests failed" in result["failures"][0]["error"]
    on_disk = json.loads((tmp_path / "out" / "result.json").read_text())
    assert on_disk["schema"] == "hgauto.pipeline.result/1"
    assert (tmp_path / "out" / "report.html").read_text().count('data-state="failed"') == 2


def test_toml_file_on_local_machines(tmp_path: Path) -> None:
    f = tmp_path / "p.toml"
    f.write_text(
        """
name = "toml"
[dimensions]
n = ["a", "b"]
[workers.w]
max_workers = 2
[[steps]]
name = "echo"
worker = "w"
over = ["n"]
run = ["sh", "-c", "echo value=$0-{greeting} >> \\"$HGAUTO_OUTPUT\\"", "{n}"]
"""
    )
    p = hgauto.Pipeline.from_file(f)
    result = p.run(
        tmp_path / "out",
        provider=hgauto.LocalProvider(tmp_path / "state"),
        inputs={"greeting": "hi"},
    )
    assert result["ok"], result["failures"]
    outs = {c["task"]: c["outputs"] for s in result["steps"] for c in s["cells"]}
    assert outs == {"echo-a": {"value": "a-hi"}, "echo-b": {"value": "b-hi"}}
    assert all(w["ended"] in ("finished", "idle") for w in result["workers"])
    assert hgauto.LocalProvider(tmp_path / "state").list_managed() == []


def test_the_example_runs_end_to_end_and_reports_a_break(tmp_path: Path) -> None:
    state = str(tmp_path / "state")
    ok = subprocess.run(
        [sys.executable, str(EXAMPLE), str(tmp_path / "ok"), "--state-dir", state],
        capture_output=True,
        text=True,
    )
    assert ok.returncode == 0, ok.stdout + ok.stderr
    result = json.loads((tmp_path / "ok" / "result.json").read_text())
    gather = [c for s in result["steps"] for c in s["cells"] if c["task"] == "gather"][0]
    assert gather["outputs"]["count"] == "4"
    broken = subprocess.run(
        [sys.executable, str(EXAMPLE), str(tmp_path / "bad"), "--state-dir", state, "--break", "3.12-x64"],
        capture_output=True,
        text=True,
    )
    assert broken.returncode == 1
    assert "FAILED wheel-3.12-x64" in broken.stdout
    assert "smoke-3.12-x64" in broken.stdout and "skipped" in broken.stdout
    fake = subprocess.run(
        [sys.executable, str(EXAMPLE), str(tmp_path / "fake"), "--state-dir", state, "--break", "3.12-x64", "--mode", "fake"],
        capture_output=True,
        text=True,
    )
    # A dummy body on real workers: nothing fails, nothing is collected.
    assert fake.returncode == 0, fake.stdout + fake.stderr


def test_task_names_follow_the_dicts_dimension_order() -> None:
    # A dict's order is the definition's order, as in a TOML file: not sorted by key.
    for dims, want in (
        ({"zone": ["b"], "arch": ["x64"]}, ["s-b-x64"]),
        ({"arch": ["x64"], "zone": ["b"]}, ["s-x64-b"]),
    ):
        p = hgauto.Pipeline.from_dict(
            {"name": "x", "dimensions": dims, "steps": [{"name": "s", "function": "f", "over": ["zone", "arch"]}]},
            functions={"f": print},
        )
        assert p.plan() == want, dims


def test_bad_definitions_are_refused_with_a_suggestion(tmp_path: Path) -> None:
    with pytest.raises(hgauto.InvalidInput, match=r"unknown field `nedds`.*did you mean \"needs\""):
        hgauto.Pipeline.from_dict({"name": "x", "steps": [{"name": "a", "function": "f", "nedds": []}]}, functions={"f": print})
    with pytest.raises(hgauto.InvalidInput, match="dependency cycle: a -> b -> a"):
        hgauto.Pipeline.from_dict(
            {"name": "x", "steps": [{"name": "a", "function": "f", "needs": ["b"]}, {"name": "b", "function": "f", "needs": ["a"]}]},
            functions={"f": print},
        )
    with pytest.raises(hgauto.InvalidInput, match="function \"g\" is not registered"):
        hgauto.Pipeline.from_dict({"name": "x", "steps": [{"name": "a", "function": "g"}]})
    p = hgauto.Pipeline.from_dict({"name": "x", "steps": [{"name": "a", "function": "f"}]}, functions={"f": print})
    with pytest.raises(hgauto.InvalidInput, match=r"unknown step \"b\""):
        p.run(tmp_path / "out", selection={"steps": ["b"]})
    assert not (tmp_path / "out" / "result.json").exists()
    schema = hgauto.Pipeline.schema()
    assert "steps" in schema["properties"]


def test_export_asl_names_one_activity_per_worker_kind() -> None:
    p = hgauto.Pipeline.from_dict(
        {"name": "x", "workers": {"w": {}}, "steps": [{"name": "a", "worker": "w", "run": ["true"]}]}
    )
    d = p.export_asl("arn:aws:states:us-east-1:1:activity:")
    text = json.dumps(d)
    assert "arn:aws:states:us-east-1:1:activity:x-w" in text
    assert d["States"]["Pipeline: check for failures"]["Type"] == "Choice"
