"""hgauto.aws against moto_server: provider lifecycle, S3 publishing, SSM and settings errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any, List

import pytest

import hgauto
import hgauto.aws
from conftest import Moto


def boto(moto: Moto, service: str) -> Any:
    import boto3

    return boto3.client(service, region_name="us-east-1", endpoint_url=moto.endpoint)


def live(moto: Moto, prefix: str) -> List[str]:
    out = boto(moto, "ec2").describe_instances(
        Filters=[{"Name": "tag:hgauto:prefix", "Values": [prefix]}]
    )
    return [
        i["InstanceId"]
        for r in out["Reservations"]
        for i in r["Instances"]
        if i["State"]["Name"] not in ("terminated", "shutting-down")
    ]


def test_provider_lifecycle(moto: Moto, tmp_path: Path) -> None:
    prefix = "hgpy-life-"
    provider = hgauto.aws.Ec2Provider(prefix=prefix, **moto.settings(tmp_path))
    assert provider.name == "ec2"
    image = boto(moto, "ec2").describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
    spec = hgauto.MachineSpec(image=image, instance_type="t3.micro", lifetime=3600,
                              labels={"job": "py"})
    with provider.machines(spec, count=2) as ms:
        ids = sorted(m.id for m in ms)
        assert all(i.startswith("i-") for i in ids)
        assert sorted(live(moto, prefix)) == ids
        managed = {r.id: r for r in provider.list_managed()}
        assert set(ids) <= set(managed) and all(managed[i].kind == "machine" for i in ids)
    assert live(moto, prefix) == []
    # The key pair's private key is kept with mode 0600.
    assert (provider.private_key_path.stat().st_mode & 0o777) == 0o600
    removed = provider.purge()
    assert any(r.startswith(prefix) for r in removed)
    assert [r for r in provider.list_managed() if r.exists] == []


def test_exception_in_block_terminates_instances(moto: Moto, tmp_path: Path) -> None:
    prefix = "hgpy-exc-"
    provider = hgauto.aws.Ec2Provider(prefix=prefix, **moto.settings(tmp_path))
    image = boto(moto, "ec2").describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
    with pytest.raises(KeyError):
        with provider.machines(hgauto.MachineSpec(image=image, instance_type="t3.micro")):
            assert len(live(moto, prefix)) == 1
            raise KeyError("boom")
    assert live(moto, prefix) == []
    provider.purge()


def test_bad_instance_type_is_a_provision_error(moto: Moto, tmp_path: Path) -> None:
    provider = hgauto.aws.Ec2Provider(prefix="hgpy-bad-", **moto.settings(tmp_path))
    with pytest.raises(hgauto.HgautoError) as info:
        provider.provision(hgauto.MachineSpec(instance_type="t9.gigantic", image="ami-nope"))
    assert "t9.gigantic" in str(info.value) or "ami-nope" in str(info.value)
    assert info.value.retryable is False
    provider.purge()


def test_settings_are_checked(moto: Moto, tmp_path: Path) -> None:
    with pytest.raises(hgauto.InvalidInput, match="regoin"):
        hgauto.aws.Ec2Provider(regoin="us-east-1", region="us-east-1")
    with pytest.raises(hgauto.InvalidInput, match="us-est-1"):
        hgauto.aws.Ec2Provider(**dict(moto.settings(tmp_path), region="us-est-1"))
    with pytest.raises(hgauto.InvalidInput, match="linux_access|ssx"):
        hgauto.aws.Ec2Provider(**dict(moto.settings(tmp_path), linux_access="ssx"))


def test_s3_publisher(moto: Moto, tmp_path: Path) -> None:
    boto(moto, "s3").create_bucket(Bucket="hgpy-artifacts")
    settings = moto.settings(tmp_path)
    pub = hgauto.aws.S3Publisher("hgpy-artifacts", "releases/1.0", **settings)
    f = tmp_path / "hg-6.9.tar.gz"
    f.write_bytes(b"tarball" * 1000)
    assert pub.publish([f]).published == [f.name]
    assert pub.publish([f]).already_present == [f.name]
    body = boto(moto, "s3").get_object(Bucket="hgpy-artifacts", Key=f"releases/1.0/{f.name}")
    assert body["Body"].read() == f.read_bytes()
    g = tmp_path / "g"
    g.write_bytes(b"other")
    with pytest.raises(hgauto.ConflictError):
        pub.publish([hgauto.Artifact(g, name=f.name)])


def test_ssm_machine_without_bucket_cannot_transfer(moto: Moto, tmp_path: Path) -> None:
    m = hgauto.aws.SsmMachine("i-0123456789abcdef0", platform="windows", **moto.settings(tmp_path))
    assert isinstance(m, hgauto.Machine) and m.platform == "windows"
    f = tmp_path / "f"
    f.write_text("x")
    with pytest.raises(hgauto.NotSupported, match="ssm_bucket") as info:
        m.put(f, "f")
    assert isinstance(info.value, NotImplementedError) and info.value.retryable is False


PROVISION_SCRIPT = """
import sys, time, hgauto, hgauto.aws
endpoint, state, image = sys.argv[1:4]
provider = hgauto.aws.Ec2Provider(region="us-east-1", endpoint_url=endpoint, state_dir=state,
                                  allowed_cidr="127.0.0.1/32", prefix="hgpy-int-",
                                  host_key_wait=0)
print("provisioning", flush=True)
with provider.machines(hgauto.MachineSpec(image=image, instance_type="t3.micro"), count=3) as ms:
    print("inside", flush=True)
    time.sleep(60)
"""


@pytest.mark.parametrize("when", ["provisioning", "inside"])
def test_sigint_leaves_no_instances(moto: Moto, tmp_path: Path, when: str) -> None:
    """Ctrl-C while instances are being created, or while they run: all are terminated."""
    import signal
    import subprocess
    import sys
    import time

    image = boto(moto, "ec2").describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
    child = subprocess.Popen(
        [sys.executable, "-c", PROVISION_SCRIPT, moto.endpoint, str(tmp_path), image],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    assert child.stdout is not None
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and child.stdout.readline().strip() != when:
        pass
    if when == "provisioning":
        # Mid-provision: once the launch is on its way (3 instances in moto or soon).
        time.sleep(0.3)
    child.send_signal(signal.SIGINT)
    out, err = child.communicate(timeout=120)
    assert "KeyboardInterrupt" in err, err
    print(f"interrupted at {when!r}; printed afterwards: {out!r}")
    assert live(moto, "hgpy-int-") == []


TERMINATION_SCRIPT = """
import os, signal, sys, time, hgauto, hgauto.aws
endpoint, state, image, prefix, own = sys.argv[1:6]
if own == "1":
    # The script's own handler: it must still run (chained), before the cleanup.
    signal.signal(signal.SIGTERM, lambda s, f: print("own handler ran", flush=True))
provider = hgauto.aws.Ec2Provider(region="us-east-1", endpoint_url=endpoint, state_dir=state,
                                  allowed_cidr="127.0.0.1/32", prefix=prefix, host_key_wait=0)
print("provisioning", flush=True)
try:
    with provider.machines(hgauto.MachineSpec(image=image, instance_type="t3.micro"), count=3):
        print("inside", flush=True)
        time.sleep(60)
except Exception:
    print("an Exception handler swallowed it", flush=True)
print("not reached", flush=True)
"""


@pytest.mark.parametrize("sig_name", ["SIGTERM", "SIGHUP"])
def test_termination_signals_leave_no_instances(moto: Moto, tmp_path: Path, sig_name: str) -> None:
    """What CI systems send on cancel or timeout: at random moments, during provisioning
    and inside the block, every instance is terminated and the process dies of the signal."""
    import random
    import signal
    import subprocess
    import sys
    import time

    sig = getattr(signal, sig_name)
    image = boto(moto, "ec2").describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
    rng = random.Random(20261129 + sig)
    trials = 10 if sig == signal.SIGTERM else 3
    for trial in range(trials):
        prefix = f"hgpy-{sig_name.lower()}-{trial}-"
        own = "1" if trial % 3 == 1 else "0"
        child = subprocess.Popen(
            [sys.executable, "-c", TERMINATION_SCRIPT, moto.endpoint,
             str(tmp_path / str(trial)), image, prefix, own],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "provisioning"
        time.sleep(rng.uniform(0.0, 1.5))
        child.send_signal(sig)
        out, err = child.communicate(timeout=120)
        assert child.returncode == -sig, (trial, child.returncode, out, err)
        assert "not reached" not in out and "swallowed" not in out, (trial, out)
        if own == "1" and sig == signal.SIGTERM:
            assert "own handler ran" in out, (trial, out, err)
        assert live(moto, prefix) == [], (trial, out, err)


def test_settings_come_from_the_environment_without_region(
    moto: Moto, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for var in ("HGAUTO_AWS_REGION", "AWS_REGION", "AWS_DEFAULT_REGION"):
        monkeypatch.delenv(var, raising=False)
    with pytest.raises(hgauto.InvalidInput, match="HGAUTO_AWS_REGION"):
        hgauto.aws.Ec2Provider(state_dir=str(tmp_path))
    monkeypatch.setenv("HGAUTO_AWS_REGION", "us-east-1")
    monkeypatch.setenv("HGAUTO_AWS_ENDPOINT", moto.endpoint)
    monkeypatch.setenv("HGAUTO_AWS_PREFIX", "hgpy-env-")
    # Explicit arguments win over the environment; the rest comes from it.
    provider = hgauto.aws.Ec2Provider(state_dir=tmp_path, allowed_cidr="127.0.0.1/32")
    assert provider.list_managed() == []
    assert "hgpy-env-" in provider.private_key_path.name
