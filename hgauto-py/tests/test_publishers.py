"""DirPublisher and SshPublisher: idempotent publishing, conflicts, integrity."""

from __future__ import annotations

from pathlib import Path

import pytest

import hgauto
import hgauto.ssh
from conftest import Sshd


@pytest.fixture(params=["dir", "ssh"])
def publisher(request: pytest.FixtureRequest, tmp_path: Path) -> hgauto.Publisher:
    if request.param == "dir":
        return hgauto.DirPublisher(tmp_path / "published")
    sshd: Sshd = request.getfixturevalue("sshd")
    m = sshd.machine(tmp_path / "state")
    target = f"hgauto-py-publish-{tmp_path.name}"
    m.run(["rm", "-rf", target])
    return hgauto.ssh.SshPublisher(m, target)


def test_publish_is_idempotent_and_refuses_conflicts(publisher: hgauto.Publisher, tmp_path: Path) -> None:
    wheel = tmp_path / "pkg-1.0-py3-none-any.whl"
    wheel.write_bytes(b"wheel bytes")
    art = hgauto.Artifact(wheel)
    assert art.name == wheel.name and art.size == 11 and len(art.sha256) == 64
    assert not publisher.exists(art)
    first = publisher.publish([art])
    assert first.published == [wheel.name] and first.already_present == []
    assert publisher.exists(wheel)
    again = publisher.publish([wheel])
    assert again.published == [] and again.already_present == [wheel.name]
    other = tmp_path / "other"
    other.write_bytes(b"different bytes")
    with pytest.raises(hgauto.ConflictError) as info:
        publisher.publish([hgauto.Artifact(other, name=wheel.name)])
    assert info.value.retryable is False


def test_changed_file_fails_integrity(publisher: hgauto.Publisher, tmp_path: Path) -> None:
    f = tmp_path / "artifact.tar.gz"
    f.write_bytes(b"v1")
    art = hgauto.Artifact(f)
    f.write_bytes(b"v2 changed after describing")
    with pytest.raises(hgauto.HgautoError) as info:
        publisher.publish([art])
    assert isinstance(info.value, (hgauto.IntegrityError, hgauto.ConflictError))
    assert not publisher.exists(art)


def test_bad_artifact_name(tmp_path: Path) -> None:
    f = tmp_path / "x"
    f.write_text("x")
    with pytest.raises(hgauto.InvalidInput, match="name"):
        hgauto.Artifact(f, name="../escape")
