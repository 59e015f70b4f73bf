"""Signals to the wheel's `hgauto` command and to scripts, as a cancelled CI job sends them.

GitHub Actions sends SIGINT, then SIGTERM 7.5 s later, then SIGKILL 2.5 s after that, so
an interrupt must start the teardown at once, whatever provisioning waits for. On moto the
EC2 provider's default host-key wait (120 s) never ends early: an interrupt that waited for
it would take two minutes.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List

import pytest

from conftest import Moto, processes_with_env
from test_aws import boto, live
from test_cli import hgauto_script

#: Far below the 120 s host-key wait an interrupt used to sit out, and well above the few
#: seconds the teardown takes on a loaded machine. The measured times are printed.
EXIT_BOUND = 30.0
SIGNALS = ("SIGINT", "SIGTERM", "SIGHUP")


def shell_code(returncode: int) -> int:
    """The exit code a shell shows: 128+N for a process that died of signal N."""
    return 128 - returncode if returncode < 0 else returncode


def local_machines(env: Dict[str, str]) -> List[dict]:
    listed = subprocess.run(
        [hgauto_script(), "--json", "list"], capture_output=True, text=True, env=env, check=True
    )
    return [r for r in json.loads(listed.stdout)["resources"] if r["exists"]]


@pytest.mark.parametrize("sig_name", SIGNALS)
def test_the_console_script_cleans_up_on_a_signal_mid_command(tmp_path: Path, sig_name: str) -> None:
    sig = getattr(signal, sig_name)
    env = dict(os.environ, HGAUTO_STATE_DIR=str(tmp_path / "state"))
    child = subprocess.Popen(
        [hgauto_script(), "run", "-n", "2", "--", "sh", "-c", "echo started; sleep 600"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )
    assert child.stdout is not None
    started = 0
    while started < 2:
        line = child.stdout.readline()
        assert line, f"the command ended early: {child.communicate()}"
        started += line.rstrip().endswith("] started")
    machines = [m["id"] for m in local_machines(env)]
    assert len(machines) == 2 and all(processes_with_env(f"HGAUTO_MACHINE_ID={m}") for m in machines)
    signalled = time.monotonic()
    child.send_signal(sig)
    out, err = child.communicate(timeout=120)
    took = time.monotonic() - signalled
    print(f"{sig_name} mid-command: exit {shell_code(child.returncode)} after {took:.2f} s")
    assert shell_code(child.returncode) == 128 + sig, (child.returncode, err)
    assert took < EXIT_BOUND
    assert local_machines(env) == []
    assert [m for m in machines if processes_with_env(f"HGAUTO_MACHINE_ID={m}")] == []


@pytest.mark.parametrize("sig_name", SIGNALS)
def test_the_console_script_cleans_up_on_an_early_signal(tmp_path: Path, sig_name: str) -> None:
    """Local provisioning takes milliseconds: signals at random moments of the first 0.3 s
    land before, during and just after it."""
    sig = getattr(signal, sig_name)
    rng = random.Random(20261209 + sig)
    for trial in range(5):
        env = dict(os.environ, HGAUTO_STATE_DIR=str(tmp_path / str(trial)))
        child = subprocess.Popen(
            [hgauto_script(), "run", "-n", "3", "--", "sleep", "600"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
        )
        time.sleep(rng.uniform(0.0, 0.3))
        child.send_signal(sig)
        out, err = child.communicate(timeout=120)
        assert shell_code(child.returncode) == 128 + sig, (trial, child.returncode, err)
        assert local_machines(env) == [], (trial, err)


@pytest.mark.parametrize("sig_name", SIGNALS)
def test_the_console_script_cleans_up_on_a_signal_mid_provision_on_ec2(
    moto: Moto, tmp_path: Path, sig_name: str
) -> None:
    sig = getattr(signal, sig_name)
    rng = random.Random(20261207 + sig)
    image = boto(moto, "ec2").describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
    for trial in range(3):
        prefix = f"hgcli-{sig_name.lower()}-{trial}-"
        config = tmp_path / f"hgauto-{trial}.toml"
        # The default host-key wait: no `host_key_wait` here.
        config.write_text(
            "[aws]\n"
            f'region = "us-east-1"\nendpoint_url = "{moto.endpoint}"\nprefix = "{prefix}"\n'
            f'allowed_cidr = "127.0.0.1/32"\nlinux_image = "{image}"\n'
            'instance_type = "t3.micro"\n'
        )
        env = dict(
            os.environ, HGAUTO_STATE_DIR=str(tmp_path / str(trial)), HGAUTO_CONFIG=str(config)
        )
        child = subprocess.Popen(
            [hgauto_script(), "--provider", "ec2", "run", "-n", "2", "--", "true"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
        )
        time.sleep(rng.uniform(0.2, 3.0))
        assert child.poll() is None, child.communicate()
        signalled = time.monotonic()
        child.send_signal(sig)
        out, err = child.communicate(timeout=150)
        took = time.monotonic() - signalled
        print(f"{sig_name} trial {trial}: exit {shell_code(child.returncode)} after {took:.2f} s")
        assert shell_code(child.returncode) == 128 + sig, (trial, child.returncode, err)
        assert took < EXIT_BOUND, (trial, took, err)
        assert live(moto, prefix) == [], (trial, err)


PROVISION_SCRIPT = """
import sys, hgauto, hgauto.aws
endpoint, state, image, prefix = sys.argv[1:5]
provider = hgauto.aws.Ec2Provider(region="us-east-1", endpoint_url=endpoint, state_dir=state,
                                  allowed_cidr="127.0.0.1/32", prefix=prefix)
print("provisioning", flush=True)
with provider.machines(hgauto.MachineSpec(image=image, instance_type="t3.micro"), count=3):
    print("inside", flush=True)
print("not reached", flush=True)
"""


@pytest.mark.parametrize("sig_name", ["SIGINT", "SIGTERM"])
def test_a_script_interrupted_mid_provision_exits_at_once(
    moto: Moto, tmp_path: Path, sig_name: str
) -> None:
    """The default host-key wait: the provision is dropped, not finished, on the signal."""
    sig = getattr(signal, sig_name)
    image = boto(moto, "ec2").describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
    rng = random.Random(20261208 + sig)
    for trial in range(3):
        prefix = f"hgpy-wait-{sig_name.lower()}-{trial}-"
        child = subprocess.Popen(
            [sys.executable, "-c", PROVISION_SCRIPT, moto.endpoint, str(tmp_path / str(trial)),
             image, prefix],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "provisioning"
        time.sleep(rng.uniform(0.0, 3.0))
        signalled = time.monotonic()
        child.send_signal(sig)
        out, err = child.communicate(timeout=150)
        took = time.monotonic() - signalled
        print(f"{sig_name} trial {trial}: exit {child.returncode} after {took:.2f} s")
        assert child.returncode == -sig, (trial, child.returncode, out, err)
        assert "inside" not in out and "not reached" not in out, (trial, out)
        assert took < EXIT_BOUND, (trial, took, err)
        assert live(moto, prefix) == [], (trial, out, err)
