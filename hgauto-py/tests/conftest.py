"""Real servers on loopback for the Python suite: OpenSSH sshd, nginx, moto_server and
pypiserver.

The same servers the Rust suites start (scripts/test-all installs them); each fixture
skips nothing: a missing binary is an error that says what to install.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Iterator, List

import pytest

import hgauto
import hgauto.ssh


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, what: str, proc: subprocess.Popen, limit: float = 20.0) -> None:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode} before listening")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.02)
    raise RuntimeError(f"{what} did not listen on 127.0.0.1:{port} within {limit} s")


def stop(proc: subprocess.Popen) -> None:
    # SIGTERM, not SIGKILL: nginx's master must take its workers down with it.
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def keygen(path: Path) -> None:
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True
    )


def ssh_user() -> str:
    """`hgauto-test` when it exists (scripts/test-all creates it), else the current user."""
    if os.environ.get("HGAUTO_TEST_SSH_USER"):
        return os.environ["HGAUTO_TEST_SSH_USER"]
    with open("/etc/passwd") as f:
        if any(line.startswith("hgauto-test:") for line in f):
            return "hgauto-test"
    return os.environ.get("USER", "root")


@dataclass
class Sshd:
    """A running sshd and the client key it trusts."""

    port: int
    key: Path
    host_key_pub: Path
    user: str

    def machine(self, state_dir: Path, **kw: object) -> hgauto.ssh.SshMachine:
        kw.setdefault("host_keys", "accept-new")
        return hgauto.ssh.SshMachine(
            "127.0.0.1",
            port=self.port,
            user=self.user,
            key_file=self.key,
            state_dir=state_dir,
            **kw,  # type: ignore[arg-type]
        )


@pytest.fixture(scope="session")
def sshd() -> Iterator[Sshd]:
    d = Path(tempfile.mkdtemp(prefix="hgauto-py-sshd-"))
    # sshd reads authorized_keys as the login user.
    os.chmod(d, 0o755)
    keygen(d / "id_ed25519")
    keygen(d / "host_ed25519")
    shutil.copy(d / "id_ed25519.pub", d / "authorized_keys")
    os.chmod(d / "authorized_keys", 0o644)
    port = free_port()
    (d / "sshd_config").write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {d}/host_ed25519\n"
        f"PidFile {d}/sshd.pid\nAuthorizedKeysFile {d}/authorized_keys\n"
        "PasswordAuthentication no\nKbdInteractiveAuthentication no\n"
        "PubkeyAuthentication yes\nUsePAM no\nStrictModes no\nPermitRootLogin yes\n"
        "X11Forwarding no\nPrintMotd no\nMaxStartups 200:30:400\nMaxSessions 100\n"
        "LogLevel FATAL\nSubsystem sftp internal-sftp\n"
    )
    os.makedirs("/run/sshd", exist_ok=True)
    proc = subprocess.Popen(
        ["/usr/sbin/sshd", "-D", "-e", "-f", str(d / "sshd_config")],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
    )
    try:
        wait_port(port, "sshd", proc)
        yield Sshd(port, d / "id_ed25519", d / "host_ed25519.pub", ssh_user())
    finally:
        stop(proc)
        shutil.rmtree(d, ignore_errors=True)


@dataclass
class Nginx:
    """nginx serving `root` on `port`."""

    port: int
    root: Path

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}/{path}"


@pytest.fixture(scope="session")
def nginx() -> Iterator[Nginx]:
    d = Path(tempfile.mkdtemp(prefix="hgauto-py-nginx-"))
    root = d / "www"
    root.mkdir()
    port = free_port()
    template = Path(__file__).resolve().parents[2] / "hgauto-testkit/src/nginx.conf.template"
    conf = (
        template.read_text()
        .replace("@USER@", "user root;" if os.geteuid() == 0 else "")
        .replace("@DIR@", str(d))
        .replace("@ROOT@", str(root))
        .replace("@NO_RANGE_PORT@", str(free_port()))
        .replace("@PORT@", str(port))
    )
    (d / "nginx.conf").write_text(conf)
    binary = "/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else "nginx"
    proc = subprocess.Popen(
        [binary, "-p", str(d), "-c", str(d / "nginx.conf"), "-e", str(d / "error.log")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_port(port, "nginx", proc)
        yield Nginx(port, root)
    finally:
        stop(proc)
        shutil.rmtree(d, ignore_errors=True)


@dataclass
class Moto:
    """moto_server on `endpoint`, with test credentials in the environment."""

    endpoint: str

    def settings(self, state_dir: Path) -> Dict[str, Any]:
        return {
            "region": "us-east-1",
            "endpoint_url": self.endpoint,
            "state_dir": str(state_dir),
            "allowed_cidr": "127.0.0.1/32",
            # moto's consoles never show host keys: do not wait for them.
            "host_key_wait": 0,
        }


@pytest.fixture(scope="session")
def moto() -> Iterator[Moto]:
    binary = Path(sys.executable).parent / "moto_server"
    port = free_port()
    env = dict(os.environ)
    env.update(
        MOTO_EC2_ENABLE_INSTANCE_TYPE_VALIDATION="1",
        MOTO_ENABLE_AMI_VALIDATION="1",
        MOTO_ENABLE_KEYPAIR_VALIDATION="1",
        MOTO_IAM_LOAD_MANAGED_POLICIES="true",
    )
    proc = subprocess.Popen(
        [str(binary), "-H", "127.0.0.1", "-p", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    saved = {k: os.environ.get(k) for k in CREDENTIALS}
    os.environ.update(CREDENTIALS)
    try:
        wait_port(port, "moto_server", proc, limit=60)
        yield Moto(f"http://127.0.0.1:{port}")
    finally:
        stop(proc)
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_EC2_METADATA_DISABLED": "true",
}


@dataclass
class PypiServer:
    """pypiserver on `url`: uploads need `user` and `password` (htpasswd, apr1 hashes, so
    passlib needs no bcrypt); a missing project is never sent on to PyPI."""

    url: str
    user: str
    password: str
    packages: Path

    @property
    def index_url(self) -> str:
        return self.url + "simple/"

    def stored(self) -> List[str]:
        return sorted(p.name for p in self.packages.iterdir())


@pytest.fixture(scope="session")
def pypiserver() -> Iterator[PypiServer]:
    from passlib.apache import HtpasswdFile

    d = Path(tempfile.mkdtemp(prefix="hgauto-pypi-"))
    packages = d / "packages"
    packages.mkdir()
    password = "pw-" + os.urandom(8).hex()
    users = HtpasswdFile(str(d / "htpasswd"), new=True, default_scheme="apr_md5_crypt")
    users.set_password("uploader", password)
    users.save()
    port = free_port()
    proc = subprocess.Popen(
        [str(Path(sys.executable).parent / "pypi-server"), "run", "-i", "127.0.0.1",
         "-p", str(port), "-a", "update", "-P", str(d / "htpasswd"),
         "--disable-fallback", "--log-stream", "none", str(packages)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_port(port, "pypi-server", proc, limit=30)
        yield PypiServer(f"http://127.0.0.1:{port}/", "uploader", password, packages)
    finally:
        stop(proc)
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def local(tmp_path: Path) -> hgauto.LocalProvider:
    return hgauto.LocalProvider(tmp_path / "state")


def processes_with_env(marker: str) -> List[int]:
    """Pids whose environment holds `marker` (e.g. `HGAUTO_MACHINE_ID=<id>`)."""
    found = []
    needle = marker.encode()
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/environ", "rb") as f:
                if needle in f.read().split(b"\0"):
                    found.append(int(pid))
        except OSError:
            continue
    return found
