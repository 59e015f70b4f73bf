"""Machine.run / put / get / sync_tree / fan_out, on the local backend and the test sshd."""

from __future__ import annotations

import os
import stat
import threading
import time
from pathlib import Path
from typing import Iterator, List, Tuple

import pytest

import hgauto
from conftest import Sshd


@pytest.fixture(params=["local", "ssh"])
def machine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[hgauto.Machine]:
    if request.param == "local":
        with hgauto.LocalProvider(tmp_path / "state").machines() as ms:
            yield ms[0]
    else:
        sshd: Sshd = request.getfixturevalue("sshd")
        m = sshd.machine(tmp_path / "state")
        m.run(["mkdir", "-p", "hgauto-py-tests"])
        yield m


def test_run_returns_exit_code_output_and_duration(machine: hgauto.Machine) -> None:
    r = machine.run("echo out; echo err >&2; exit 0")
    assert (r.exit_code, r.ok, r.signal) == (0, True, None)
    assert r.stdout == "out\n" and r.stderr == "err\n"
    assert r.stdout_bytes == b"out\n"
    assert 0 <= r.duration < 10
    assert r.machine == machine.id


def test_nonzero_exit_is_data_without_check(machine: hgauto.Machine) -> None:
    r = machine.run("exit 7", check=False)
    assert (r.exit_code, r.ok) == (7, False)
    with pytest.raises(hgauto.CommandFailed) as info:
        r.check()
    assert info.value.result is r


def test_check_raises_command_failed_with_the_result(machine: hgauto.Machine) -> None:
    with pytest.raises(hgauto.CommandFailed) as info:
        machine.run("echo why >&2; exit 3")
    e = info.value
    assert isinstance(e, hgauto.HgautoError)
    assert e.exit_code == 3 and e.retryable is False
    assert e.machine == machine.id
    assert "why" in e.stderr_tail and "why" in str(e)
    assert e.result is not None and e.result.exit_code == 3 and e.result.stderr == "why\n"


def test_arguments_are_data_not_shell(machine: hgauto.Machine) -> None:
    tricky = ["$(echo pwned)", "a b", "'q'", '"dq"', "semi;colon", "ünïcode"]
    r = machine.run(["printf", "%s\\n", *tricky])
    assert r.stdout.splitlines() == tricky


def test_env_cwd_and_stdin(machine: hgauto.Machine) -> None:
    machine.run(["mkdir", "-p", "sub dir"])
    r = machine.run(
        'printf "%s|" "$GREETING"; basename "$PWD"; cat',
        env={"GREETING": "hello world"},
        cwd="sub dir",
        stdin=b"from stdin",
    )
    assert r.stdout == "hello world|sub dir\nfrom stdin"


def test_timeout_kills_and_raises_timeout(machine: hgauto.Machine) -> None:
    started = time.monotonic()
    with pytest.raises(hgauto.Timeout) as info:
        machine.run("sleep 30", timeout=0.5)
    assert time.monotonic() - started < 10
    assert isinstance(info.value, TimeoutError)
    assert info.value.retryable is True
    assert info.value.after == pytest.approx(0.5)


def test_on_line_streams_lines_in_order(machine: hgauto.Machine) -> None:
    seen: List[Tuple[str, str]] = []
    r = machine.run(
        "for i in 1 2 3; do echo out$i; done; echo err1 >&2",
        on_line=lambda stream, line: seen.append((stream, line)),
    )
    assert [l for s, l in seen if s == "stdout"] == ["out1", "out2", "out3"]
    assert ("stderr", "err1") in seen
    # The callback ran on the calling thread.
    assert r.stdout == "out1\nout2\nout3\n"


def test_callback_error_stops_the_command(machine: hgauto.Machine) -> None:
    def explode(stream: str, line: str) -> None:
        raise ValueError(f"stop at {line}")

    started = time.monotonic()
    with pytest.raises(ValueError, match="stop at first"):
        machine.run("echo first; sleep 3417; echo never", on_line=explode)
    assert time.monotonic() - started < 10
    # The command is killed, not left running unseen.
    assert wait_gone(machine, "sleep 3417")


def wait_gone(machine: hgauto.Machine, args: str, limit: float = 5.0) -> bool:
    """True once no process on the machine has exactly these arguments."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        ps = machine.run(["ps", "-eo", "args"]).stdout.splitlines()
        if args not in (line.strip() for line in ps):
            return True
        time.sleep(0.1)
    return False


def test_put_get_keep_content_and_mode(machine: hgauto.Machine, tmp_path: Path) -> None:
    src = tmp_path / "tool.sh"
    src.write_bytes(b"#!/bin/sh\necho tool\n" + os.urandom(100_000))
    src.chmod(0o750)
    machine.put(src, "hgauto-py-tests/tool.sh")
    back = tmp_path / "back.sh"
    machine.get("hgauto-py-tests/tool.sh", back)
    assert back.read_bytes() == src.read_bytes()
    assert stat.S_IMODE(back.stat().st_mode) == 0o750


def test_get_missing_file_is_file_not_found(machine: hgauto.Machine, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError) as info:
        machine.get("hgauto-py-tests/does-not-exist", tmp_path / "x")
    assert isinstance(info.value, hgauto.HgautoError)
    assert not (tmp_path / "x").exists()


def test_sync_tree_sends_only_changes(machine: hgauto.Machine, tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    (tree / "a").mkdir(parents=True)
    (tree / "a" / "one.txt").write_text("1")
    (tree / "two.txt").write_text("2")
    first = machine.sync_tree(tree, "hgauto-py-tests/tree")
    assert first.files_sent == 2
    (tree / "two.txt").write_text("22")
    os.utime(tree / "two.txt", (1, 1))
    second = machine.sync_tree(tree, "hgauto-py-tests/tree", delete=True)
    assert second.files_sent == 1 and second.files_unchanged == 1
    assert machine.run(["cat", "hgauto-py-tests/tree/two.txt"]).stdout == "22"


def test_fan_out_keeps_order_and_isolates_failures(tmp_path: Path) -> None:
    with hgauto.LocalProvider(tmp_path / "state").machines(count=3) as ms:
        results = hgauto.fan_out(ms, 'echo "$HGAUTO_MACHINE_ID"; test "$X" = go', env={"X": "go"})
        assert [h.machine for h in results] == [m.id for m in ms]
        assert all(h.ok and h.error is None for h in results)
        assert [h.result.stdout.strip() for h in results if h.result] == [m.id for m in ms]
        bad = hgauto.fan_out(ms, ["/nonexistent/program"])
        assert all(not h.ok for h in bad)
        for h in bad:
            # Either the shell reports 127 or the backend could not spawn it.
            assert (h.result is not None and h.result.exit_code == 127) or isinstance(
                h.error, hgauto.HgautoError
            )


def test_invalid_input_names_the_argument(machine: hgauto.Machine) -> None:
    with pytest.raises(hgauto.InvalidInput, match="timeout") as info:
        machine.run("true", timeout=-1)
    assert isinstance(info.value, ValueError)
    with pytest.raises(hgauto.InvalidInput, match="empty"):
        machine.run([])
    with pytest.raises(hgauto.InvalidInput, match="platform"):
        hgauto.MachineSpec("beos")


def test_threads_run_in_parallel_gil_released(machine: hgauto.Machine) -> None:
    """Four threads, each a 1 s remote sleep: about 1 s in all, not 4."""
    machine.run("true")  # connect first (SSH)
    errors: List[BaseException] = []

    def sleep() -> None:
        try:
            machine.run("sleep 1")
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=sleep) for _ in range(4)]
    started = time.monotonic()
    for t in threads:
        t.start()
    # While they wait, this thread still runs Python.
    spins = 0
    while any(t.is_alive() for t in threads):
        spins += 1
        time.sleep(0.01)
    elapsed = time.monotonic() - started
    assert not errors
    assert 0.95 <= elapsed < 2.0, elapsed
    assert spins > 20


def test_a_machine_set_dropped_without_exit_still_terminates(tmp_path: Path) -> None:
    # The set holds core's guard: entered and then dropped without __exit__ (a script that
    # called __enter__ by hand, or lost the object), its machines still go.
    import gc

    from hgauto import _signals

    provider = hgauto.LocalProvider(tmp_path / "state")
    machine_set = provider.machines(count=2)
    machines = machine_set.__enter__()
    try:
        assert len(machines) == 2
        assert sorted(machine_set.ids) == sorted(m.id for m in machines)
        assert len([r for r in provider.list_managed() if r.exists]) == 2
        del machines, machine_set
        gc.collect()
        assert provider.list_managed() == []
    finally:
        _signals.leave()
