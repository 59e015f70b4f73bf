"""KeyboardInterrupt: a script gets SIGINT mid-run; afterwards nothing is left."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import hgauto
from conftest import Sshd, processes_with_env
from test_machines import wait_gone

SCRIPT = textwrap.dedent(
    """
    import sys, hgauto
    provider = hgauto.LocalProvider(sys.argv[1])
    with provider.machines(count=2) as ms:
        # Background work in the second machine must die too.
        ms[1].run("nohup sleep 300 >/dev/null 2>&1 &")
        for m in ms:
            print("machine", m.id, flush=True)
        ms[0].run("echo started; sleep 300", on_line=lambda s, l: print(l, flush=True))
    print("not reached", flush=True)
    """
)


def test_sigint_mid_run_raises_keyboard_interrupt_and_cleans_up(tmp_path: Path) -> None:
    state = tmp_path / "state"
    child = subprocess.Popen(
        [sys.executable, "-c", SCRIPT, str(state)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None and child.stderr is not None
    ids = []
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        line = child.stdout.readline().strip()
        if line.startswith("machine "):
            ids.append(line.split()[1])
        if line == "started":
            break
    assert len(ids) == 2, ids
    assert processes_with_env(f"HGAUTO_MACHINE_ID={ids[0]}")
    started = time.monotonic()
    child.send_signal(signal.SIGINT)
    out, err = child.communicate(timeout=60)
    assert time.monotonic() - started < 10
    assert "KeyboardInterrupt" in err, err
    assert "not reached" not in out
    assert child.returncode != 0
    for machine_id in ids:
        assert processes_with_env(f"HGAUTO_MACHINE_ID={machine_id}") == []
    assert hgauto.LocalProvider(state).list_managed() == []


def test_exception_in_block_terminates(tmp_path: Path) -> None:
    provider = hgauto.LocalProvider(tmp_path / "state")
    try:
        with provider.machines(hgauto.MachineSpec(lifetime=60), count=2) as ms:
            assert len(provider.list_managed()) == 2
            ms[0].run("nohup sleep 300 >/dev/null 2>&1 &")
            raise RuntimeError("boom")
    except RuntimeError:
        pass
    assert provider.list_managed() == []
    assert processes_with_env(f"HGAUTO_MACHINE_ID={ms[0].id}") == []


def test_provision_returns_owned_machines(tmp_path: Path) -> None:
    provider = hgauto.LocalProvider(tmp_path / "state")
    ms = provider.provision(count=2)
    assert sorted(r.id for r in provider.list_managed()) == sorted(m.id for m in ms)
    provider.terminate(ms)
    assert provider.list_managed() == []
    assert os.environ.get("HGAUTO_MACHINE_ID") is None


SSH_SCRIPT = textwrap.dedent(
    """
    import sys, hgauto.ssh
    port, user, key, state = sys.argv[1:5]
    m = hgauto.ssh.SshMachine("127.0.0.1", port=int(port), user=user, key_file=key,
                              state_dir=state, host_keys="accept-new")
    m.run("echo started; sleep 5309", on_line=lambda s, l: print(l, flush=True))
    print("not reached", flush=True)
    """
)


def test_sigint_mid_ssh_run_kills_the_remote_command(sshd: Sshd, tmp_path: Path) -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", SSH_SCRIPT, str(sshd.port), sshd.user, str(sshd.key),
         str(tmp_path)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    assert child.stdout is not None
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and child.stdout.readline().strip() != "started":
        pass
    child.send_signal(signal.SIGINT)
    out, err = child.communicate(timeout=60)
    assert "KeyboardInterrupt" in err and "not reached" not in out
    assert wait_gone(sshd.machine(tmp_path), "sleep 5309")


HASH_SCRIPT = textwrap.dedent(
    """
    import sys, hgauto
    print("hashing", flush=True)
    hgauto.Artifact(sys.argv[1])
    print("not reached", flush=True)
    """
)


def test_sigint_while_hashing_an_artifact_raises_promptly(tmp_path: Path) -> None:
    # 64 GiB of holes: reading and hashing it takes minutes, and no disk.
    big = tmp_path / "big.bin"
    with open(big, "wb") as f:
        f.truncate(64 << 30)
    child = subprocess.Popen(
        [sys.executable, "-c", HASH_SCRIPT, str(big)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    assert child.stdout.readline().strip() == "hashing"
    time.sleep(0.5)
    started = time.monotonic()
    child.send_signal(signal.SIGINT)
    out, err = child.communicate(timeout=60)
    # KeyboardInterrupt at once; interpreter exit then gives the hashing thread its 5 s grace.
    assert time.monotonic() - started < 15
    assert "KeyboardInterrupt" in err, err
    assert "not reached" not in out
