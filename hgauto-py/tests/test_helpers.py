"""download (nginx), checkout (real git and hg repositories), create_virtualenv."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import List, Optional, Tuple

import pytest

import hgauto
from conftest import Nginx


def test_download_checks_sha256_and_reports_progress(nginx: Nginx, tmp_path: Path) -> None:
    body = os.urandom(3 * 1024 * 1024 + 17)
    (nginx.root / "tool.bin").write_bytes(body)
    digest = hashlib.sha256(body).hexdigest()
    seen: List[Tuple[int, Optional[int]]] = []
    report = hgauto.download(
        nginx.url("tool.bin"),
        tmp_path / "tool.bin",
        sha256=digest,
        size=len(body),
        progress=lambda done, total: seen.append((done, total)),
    )
    assert (tmp_path / "tool.bin").read_bytes() == body
    assert report.sha256 == digest and report.bytes == len(body) and report.requests >= 1
    assert seen and seen[-1] == (len(body), len(body))
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)


def test_download_wrong_sha256_is_an_integrity_error(nginx: Nginx, tmp_path: Path) -> None:
    (nginx.root / "bad.bin").write_bytes(b"not what you expect")
    with pytest.raises(hgauto.IntegrityError) as info:
        hgauto.download(nginx.url("bad.bin"), tmp_path / "bad.bin", sha256="0" * 64)
    e = info.value
    assert e.retryable is False and e.expected == "0" * 64
    assert e.actual == hashlib.sha256(b"not what you expect").hexdigest()
    assert not (tmp_path / "bad.bin").exists()


def test_download_missing_url_and_extract(nginx: Nginx, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError) as info:
        hgauto.download(nginx.url("nope.tar.gz"), tmp_path / "nope", retry=hgauto.RetryPolicy.never())
    assert isinstance(info.value, hgauto.NotFound) and info.value.retryable is False
    assert nginx.url("nope.tar.gz") in str(info.value)
    src = tmp_path / "src"
    src.mkdir()
    (src / "hello.txt").write_text("hi")
    with tarfile.open(nginx.root / "pkg.tar.gz", "w:gz") as tar:
        tar.add(src / "hello.txt", arcname="pkg/hello.txt")
    hgauto.download(nginx.url("pkg.tar.gz"), tmp_path / "pkg.tar.gz", extract_to=tmp_path / "out")
    assert (tmp_path / "out" / "pkg" / "hello.txt").read_text() == "hi"
    with pytest.raises(hgauto.InvalidInput, match="format"):
        hgauto.download(nginx.url("pkg.tar.gz"), tmp_path / "x", format="rar")


def git(*args: str, cwd: Path) -> str:
    env = dict(os.environ, GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@t", GIT_COMMITTER_NAME="t",
               GIT_COMMITTER_EMAIL="t@t")
    return subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True,
                          text=True).stdout.strip()


def test_checkout_git_revision_and_branch(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    git("init", "-q", "-b", "main", cwd=repo)
    (repo / "a.txt").write_text("one")
    git("add", ".", cwd=repo)
    git("commit", "-q", "-m", "one", cwd=repo)
    first = git("rev-parse", "HEAD", cwd=repo)
    (repo / "a.txt").write_text("two")
    git("commit", "-q", "-am", "two", cwd=repo)
    second = git("rev-parse", "HEAD", cwd=repo)
    stores = tmp_path / "stores"
    steps: List[str] = []
    r1 = hgauto.checkout(str(repo), tmp_path / "w1", revision=first, share_base=stores,
                         progress=steps.append)
    assert r1.revision == first and r1.cloned
    assert steps[0] == f"looking up {repo}" and steps[-1] == f"updating {tmp_path / 'w1'} to {first}"
    assert (tmp_path / "w1" / "a.txt").read_text() == "one"
    steps.clear()
    r2 = hgauto.checkout(str(repo), tmp_path / "w2", branch="main", share_base=stores,
                         progress=steps.append)
    assert r2.revision == second and not r2.cloned and r2.store == r1.store
    assert steps == [f"pulling {repo}", f"updating {tmp_path / 'w2'} to {second}"]
    assert (tmp_path / "w2" / "a.txt").read_text() == "two"


def test_checkout_hg(tmp_path: Path) -> None:
    repo = tmp_path / "hgrepo"
    subprocess.run(["hg", "init", str(repo)], check=True)
    (repo / "f").write_text("x")
    env = dict(os.environ, HGUSER="t <t@t>", HGPLAIN="1")
    subprocess.run(["hg", "commit", "-q", "-A", "-m", "x"], cwd=repo, env=env, check=True)
    node = subprocess.run(["hg", "log", "-r", ".", "-T", "{node}"], cwd=repo, env=env,
                          check=True, capture_output=True, text=True).stdout
    r = hgauto.checkout(str(repo), tmp_path / "w", vcs="hg", revision=node,
                        share_base=tmp_path / "stores")
    assert r.revision == node and (tmp_path / "w" / "f").read_text() == "x"
    with pytest.raises(hgauto.InvalidInput, match="vcs"):
        hgauto.checkout(str(repo), tmp_path / "w", vcs="svn", revision=node)


def test_create_virtualenv_installs_and_reuses(tmp_path: Path) -> None:
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    make_wheel(wheels, "hgdemo", "1.0")
    req = tmp_path / "requirements.txt"
    req.write_text("hgdemo==1.0\n")
    venv = tmp_path / "venv"
    steps: List[str] = []
    first = hgauto.create_virtualenv(venv, python=Path(sys.executable), requirements=[req],
                                     find_links=[str(wheels)], no_index=True,
                                     progress=steps.append)
    assert not first.reused and first.installer in ("uv", "pip")
    assert steps[0].startswith(f"creating the virtualenv {venv}")
    assert steps[-1] == f"installing requirements with {first.installer}"
    out = subprocess.run([str(first.python), "-c", "import hgdemo; print(hgdemo.VERSION)"],
                         check=True, capture_output=True, text=True).stdout
    assert out.strip() == "1.0"
    steps.clear()
    again = hgauto.create_virtualenv(venv, python=Path(sys.executable), requirements=[req],
                                     find_links=[str(wheels)], no_index=True,
                                     progress=steps.append)
    assert again.reused and again.python_version == first.python_version
    assert steps == [f"reusing the virtualenv {venv}"]
    with pytest.raises(hgauto.HgautoError):
        hgauto.create_virtualenv(tmp_path / "v2", python=Path(sys.executable),
                                 requirements=[tmp_path / "missing.txt"], no_index=True)


def make_wheel(directory: Path, name: str, version: str) -> Path:
    """A minimal pure-Python wheel (no network, no build backend)."""
    import base64
    import zipfile

    path = directory / f"{name}-{version}-py3-none-any.whl"
    info = f"{name}-{version}.dist-info"
    files = {
        f"{name}/__init__.py": f"VERSION = {version!r}\n",
        f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
        f"{info}/WHEEL": "Wheel-Version: 1.0\nGenerator: hgauto-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = ""
    with zipfile.ZipFile(path, "w") as z:
        for p, text in files.items():
            data = text.encode()
            z.writestr(p, data)
            h = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
            record += f"{p},sha256={h},{len(data)}\n"
        record += f"{info}/RECORD,,\n"
        z.writestr(f"{info}/RECORD", record)
    return path
