"""The exception hierarchy: classes, builtins, attributes, `.retryable`."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

import hgauto
import hgauto.ssh
from conftest import Sshd, free_port


def test_hierarchy_reuses_builtins() -> None:
    assert issubclass(hgauto.CommandFailed, hgauto.HgautoError)
    assert issubclass(hgauto.Timeout, TimeoutError)
    assert issubclass(hgauto.NetworkError, ConnectionError)
    assert issubclass(hgauto.InvalidInput, ValueError)
    assert issubclass(hgauto.FileNotFound, FileNotFoundError)
    assert issubclass(hgauto.NotFound, FileNotFoundError)
    assert issubclass(hgauto.NotSupported, NotImplementedError)
    for name in hgauto.errors.__all__:
        if name != "Terminated":
            assert issubclass(getattr(hgauto.errors, name), hgauto.HgautoError)
    # Like KeyboardInterrupt, SIGTERM's exception is not swallowed by `except Exception`.
    assert issubclass(hgauto.Terminated, BaseException)
    assert not issubclass(hgauto.Terminated, Exception)
    assert hgauto.Terminated(15).signal == 15


def test_connection_refused_is_a_retryable_network_error(tmp_path: Path) -> None:
    port = free_port()  # nothing listens here
    m = hgauto.ssh.SshMachine(
        "127.0.0.1",
        port=port,
        user="nobody",
        key_file=tmp_path / "none",
        host_keys="accept-new",
        state_dir=tmp_path,
        connect_timeout=2,
        retry=hgauto.RetryPolicy.never(),
    )
    with pytest.raises(hgauto.NetworkError) as info:
        m.run("true")
    e = info.value
    assert e.retryable is True and e.may_have_run is False
    assert e.machine == f"nobody@127.0.0.1:{port}"
    assert "Connection refused" in str(e)
    # wait_ready keeps trying until its deadline, then names the last error.
    with pytest.raises(hgauto.Timeout, match="Connection refused") as waited:
        m.wait_ready(timeout=1)
    assert waited.value.retryable is True


def test_unknown_host_key_in_strict_mode(sshd: Sshd, tmp_path: Path) -> None:
    m = sshd.machine(tmp_path, host_keys="strict")
    with pytest.raises(hgauto.HostKeyError) as info:
        m.run("true")
    e = info.value
    assert e.retryable is False and "unknown" in e.reason
    assert e.actual.startswith("SHA256:")


def test_pinned_host_key(sshd: Sshd, tmp_path: Path) -> None:
    import base64

    blob = base64.b64decode(sshd.host_key_pub.read_text().split()[1])
    assert sshd.machine(tmp_path, host_keys=blob).run("echo ok").stdout == "ok\n"
    with pytest.raises(hgauto.HostKeyError):
        sshd.machine(tmp_path / "other", host_keys=blob[:-1] + b"x").run("true")


def test_wrong_key_is_an_auth_error(sshd: Sshd, tmp_path: Path) -> None:
    import subprocess

    other = tmp_path / "other_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True)
    m = hgauto.ssh.SshMachine(
        "127.0.0.1", port=sshd.port, user=sshd.user, key_file=other,
        host_keys="accept-new", state_dir=tmp_path,
    )
    with pytest.raises(hgauto.AuthError) as info:
        m.run("true")
    assert info.value.retryable is False and info.value.user == sshd.user
    assert isinstance(info.value, PermissionError)


def test_bad_arguments_name_what_was_wrong(tmp_path: Path) -> None:
    with pytest.raises(hgauto.InvalidInput, match="key_file"):
        hgauto.ssh.SshMachine("h", user="u", state_dir=tmp_path)
    with pytest.raises(hgauto.InvalidInput, match="host_keys"):
        hgauto.ssh.SshMachine("h", user="u", key_file="k", host_keys="yolo", state_dir=tmp_path)
    with pytest.raises(hgauto.InvalidInput, match="factor"):
        hgauto.RetryPolicy(factor=0.5)
    with pytest.raises(hgauto.InvalidInput, match="base_delay"):
        hgauto.RetryPolicy(base_delay=60.0, max_delay=30.0)
    with pytest.raises(hgauto.InvalidInput, match="not both"):
        hgauto.checkout("file:///nowhere", tmp_path / "co", revision="a" * 40, branch="main")
    with pytest.raises(hgauto.InvalidInput, match='did you mean "pip"'):
        hgauto.create_virtualenv(tmp_path / "venv", installer="pipx")
    with pytest.raises(FileNotFoundError):
        hgauto.Artifact(tmp_path / "missing.whl")
    with pytest.raises(TypeError):
        hgauto.LocalProvider(tmp_path).machines(count="two")  # type: ignore[arg-type]
    socket.gethostname()  # the suite never resolves a real name; this is local only
