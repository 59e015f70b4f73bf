"""hgauto.PypiPublisher and hgauto.Release against a real pypiserver, and the release
example script end to end."""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Dict, Tuple, Union

import pytest

import hgauto
from conftest import PypiServer
from test_helpers import make_wheel

SCRIPT = Path(__file__).resolve().parents[2] / "examples" / "python" / "release.py"


def make_sdist(directory: Path, name: str, version: str, payload: bytes = b"src") -> Path:
    path = directory / f"{name}-{version}.tar.gz"
    with tarfile.open(path, "w:gz") as t:
        for inner, data in [
            ("PKG-INFO", f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n".encode()),
            ("payload.txt", payload),
        ]:
            info = tarfile.TarInfo(f"{name}-{version}/{inner}")
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
    return path


def publisher(server: PypiServer, password: str) -> hgauto.PypiPublisher:
    return hgauto.PypiPublisher(
        server.url,
        username=server.user,
        password=password,
        retry=hgauto.RetryPolicy(max_retries=0),
    )


def test_pypi_publisher_uploads_checks_and_refuses(tmp_path: Path, pypiserver: PypiServer) -> None:
    wheel = make_wheel(tmp_path, "pyside_one", "1.0")
    p = publisher(pypiserver, pypiserver.password)
    assert p.upload_url == pypiserver.url
    assert p.index_url == pypiserver.index_url
    assert not p.exists(wheel)
    assert p.publish([wheel]).published == [wheel.name]
    assert p.exists(wheel)
    assert p.publish([wheel]).already_present == [wheel.name]
    assert wheel.name in pypiserver.stored()

    other = tmp_path / "other"
    other.mkdir()
    impostor = make_sdist(other, "pyside_one", "1.0", b"one build")
    p.publish([impostor])
    rebuilt = tmp_path / "rebuilt"
    rebuilt.mkdir()
    with pytest.raises(hgauto.ConflictError):
        p.publish([make_sdist(rebuilt, "pyside_one", "1.0", b"another build")])

    wrong = "wrong-password-for-test"
    with pytest.raises(hgauto.AuthError) as caught:
        publisher(pypiserver, wrong).publish([make_wheel(tmp_path, "pyside_denied", "1.0")])
    assert wrong not in str(caught.value)
    assert not any("pyside_denied" in n for n in pypiserver.stored())

    broken = tmp_path / "pyside_broken-1.0-py3-none-any.whl"
    broken.write_bytes(b"not a zip")
    with pytest.raises(hgauto.InvalidInput, match="pyside_broken"):
        p.publish([broken])


def test_release_checks_everything_then_publishes(tmp_path: Path, pypiserver: PypiServer) -> None:
    dist = tmp_path / "dist"
    dist.mkdir()
    make_wheel(dist, "pyside_rel", "2.0")
    make_sdist(dist, "pyside_rel", "2.0")
    (dist / "pyside_rel-2.0-notes.txt").write_text("notes\n")
    key_pub, key_sec = tmp_path / "k.pub", tmp_path / "k.key"
    subprocess.run(["minisign", "-G", "-W", "-f", "-p", key_pub, "-s", key_sec],
                   check=True, stdout=subprocess.DEVNULL)
    mirror = tmp_path / "mirror"

    def release(*expect: Union[str, Tuple[str, int]]) -> hgauto.Release:
        r = hgauto.Release(dist, list(expect), sign_key=key_sec)
        r.publish_to("pypi", publisher(pypiserver, pypiserver.password), ["*.whl", "*.tar.gz"])
        r.publish_to("mirror", hgauto.DirPublisher(mirror))
        return r

    with pytest.raises(hgauto.InvalidInput, match="pyside_rel-2.0-x64.exe is missing"):
        release("*.whl", "pyside_rel-2.0.tar.gz", "*.txt", "pyside_rel-2.0-x64.exe").run()
    with pytest.raises(hgauto.InvalidInput, match="unexpected file"):
        release(("*.whl", 1), "pyside_rel-2.0.tar.gz").run()
    assert not mirror.exists()
    assert not any("pyside_rel" in n for n in pypiserver.stored())

    report_path = tmp_path / "report.json"
    report = release(("*.whl", 1), "pyside_rel-2.0.tar.gz", "*.txt").run(report_path)
    assert report.ok, report.to_json()
    assert report.status("pyside_rel-2.0.tar.gz", "pypi") == "published"
    assert report.status("pyside_rel-2.0-notes.txt", "pypi") == "skipped_by_filter"
    assert report.status("SHA256SUMS.minisig", "mirror") == "published"
    assert json.loads(report_path.read_text())["version"] == 1
    subprocess.run(["sha256sum", "--quiet", "-c", "SHA256SUMS"], cwd=mirror, check=True)
    subprocess.run(["minisign", "-Vq", "-p", key_pub, "-m", mirror / "SHA256SUMS"], check=True)

    again = release(("*.whl", 1), "pyside_rel-2.0.tar.gz", "*.txt").skip("pypi").run()
    assert {e.status for e in again.entries} <= {"already_present", "skipped", "skipped_by_filter"}


def run_script(server: PypiServer, password: str, *args: str) -> subprocess.CompletedProcess[str]:
    env: Dict[str, str] = dict(os.environ)
    env.update(TWINE_USERNAME=server.user, TWINE_PASSWORD=password, TWINE_REPOSITORY_URL=server.url)
    return subprocess.run([sys.executable, str(SCRIPT), *args], env=env, text=True,
                          capture_output=True, timeout=120)


def test_release_example_script(tmp_path: Path, pypiserver: PypiServer) -> None:
    dist = tmp_path / "dist"
    dist.mkdir()
    make_wheel(dist, "pyside_script", "3.0")
    make_sdist(dist, "pyside_script", "3.0")
    mirror = tmp_path / "mirror"
    args = [str(dist), "--expect", "*.whl=1", "--expect", "pyside_script-3.0.tar.gz",
            "--mirror", str(mirror), "--report", str(tmp_path / "r.json")]

    wrong = "not-the-password-xyz"
    denied = run_script(pypiserver, wrong, *args)
    assert denied.returncode == 1, denied.stderr
    assert wrong not in denied.stdout + denied.stderr
    assert "mirror" in denied.stdout and "failed" in denied.stdout

    done = run_script(pypiserver, pypiserver.password, *args)
    assert done.returncode == 0, done.stdout + done.stderr
    assert re.search(r"pyside_script-3.0.tar.gz +pypi +published", done.stdout), done.stdout
    assert re.search(r"pyside_script-3.0.tar.gz +mirror +already_present", done.stdout)
    assert "pyside_script-3.0-py3-none-any.whl" in pypiserver.stored()

    refused = run_script(pypiserver, pypiserver.password, *args[:-2], "--expect", "*.exe")
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert "nothing uploaded" in refused.stderr
