"""The Python module against Rust and against the Python tools it replaces, side by side
in one run, on local sshd instances (127.0.0.2 ...). Run through ``benches/python.sh``,
which builds the release wheel and the Rust loop and installs the peers.

1. 1,000 sequential ``run("true")`` on one connected SSH machine, from Python, against the
   same loop in Rust (``hgauto-ssh/examples/ssh_loop.rs``). Goal: at most 1.05x.
2. ``true`` on 32 hosts from a cold start, from Python: ``hgauto.fan_out`` against
   parallel-ssh (``ParallelSSHClient``) and fabric (``ThreadingGroup``, paramiko). Each tool
   runs in a fresh interpreter; the figure is the time inside it (connect, run, collect).
   Goal: at most 1.0x parallel-ssh.

Every figure is the median of RUNS runs, tools interleaved. Ratios are hgauto / peer.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Dict, List

RUNS = int(os.environ.get("HGAUTO_BENCH_RUNS", "5"))
HOSTS = 32


def keygen(path: Path) -> None:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)


def user() -> str:
    with open("/etc/passwd") as f:
        if any(line.startswith("hgauto-test:") for line in f):
            return "hgauto-test"
    return os.environ.get("USER", "root")


class Sshd:
    def __init__(self, ip: str, keys: Path, work: Path) -> None:
        self.ip = ip
        d = Path(tempfile.mkdtemp(dir=work))
        keygen(d / "host_ed25519")
        with socket.socket() as s:
            s.bind((ip, 0))
            self.port = int(s.getsockname()[1])
        (d / "sshd_config").write_text(
            f"Port {self.port}\nListenAddress {ip}\nHostKey {d}/host_ed25519\nPidFile {d}/pid\n"
            f"AuthorizedKeysFile {keys}/authorized_keys\nPasswordAuthentication no\n"
            "KbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\nPermitRootLogin yes\n"
            "PrintMotd no\nMaxStartups 200:30:400\nMaxSessions 100\nLogLevel FATAL\n"
        )
        self.proc = subprocess.Popen(["/usr/sbin/sshd", "-D", "-e", "-f", str(d / "sshd_config")])
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection((ip, self.port), timeout=0.5).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"sshd on {ip}:{self.port} did not start")
                time.sleep(0.02)

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait()


HGAUTO_FANOUT = """
import sys, time, hgauto, hgauto.ssh
user, key, state = sys.argv[1:4]
targets = [t.split(":") for t in sys.argv[4:]]
t = time.perf_counter()
ms = [hgauto.ssh.SshMachine(h, port=int(p), user=user, key_file=key, state_dir=state,
                            host_keys="accept-new") for h, p in targets]
results = hgauto.fan_out(ms, "true", parallelism=len(ms))
assert all(r.ok for r in results), results
print(f"{(time.perf_counter() - t) * 1e3:.3f}")
"""

# Shared with hgauto-ssh/benches/ssh_vs_peers.rs; its arguments are USER KEY HOST:PORT...
PSSH_TRUE = Path(__file__).resolve().parents[2] / "benches" / "peers" / "pssh_true.py"

FABRIC_FANOUT = """
import sys, time
from fabric import ThreadingGroup
user, key, state = sys.argv[1:4]
targets = [t.split(":") for t in sys.argv[4:]]
t = time.perf_counter()
group = ThreadingGroup(*[f"{user}@{h}:{p}" for h, p in targets],
                       connect_kwargs={"key_filename": key, "look_for_keys": False,
                                       "allow_agent": False})
results = group.run("true", hide=True)
assert all(r.exited == 0 for r in results.values())
group.close()
print(f"{(time.perf_counter() - t) * 1e3:.3f}")
"""

PY_LOOP = """
import sys, time, hgauto.ssh
host, port, user, key, state, n = sys.argv[1:7]
m = hgauto.ssh.SshMachine(host, port=int(port), user=user, key_file=key, state_dir=state,
                          host_keys="accept-new")
m.run("true")
t = time.perf_counter()
for _ in range(int(n)):
    m.run("true")
print(f"{(time.perf_counter() - t) * 1e3:.3f}")
"""


def timed(cmd: List[str]) -> float:
    """Runs a script that prints its own milliseconds; returns them."""
    out = subprocess.run(cmd, check=True, capture_output=True, text=True)
    return float(out.stdout.strip().splitlines()[-1].split()[0])


def row(what: str, ours: List[float], peer: str, theirs: List[float], goal: str) -> None:
    a, b = statistics.median(ours), statistics.median(theirs)
    print(f"{what:<30} hgauto {a:>9.1f} ms | {peer:<22} {b:>9.1f} ms | {a / b:>5.2f}x  ({goal})")


def main() -> None:
    ssh_loop = os.environ["HGAUTO_BENCH_SSH_LOOP"]
    py = sys.executable
    work = Path(tempfile.mkdtemp(prefix="hgauto-pybench-"))
    os.chmod(work, 0o755)
    keys = work / "keys"
    keys.mkdir()
    os.chmod(keys, 0o755)
    keygen(keys / "id_ed25519")
    shutil.copy(keys / "id_ed25519.pub", keys / "authorized_keys")
    os.chmod(keys / "authorized_keys", 0o644)
    key = str(keys / "id_ed25519")
    state = str(work / "state")
    login = user()
    servers: List[Sshd] = []
    try:
        servers = [Sshd(f"127.0.0.{i}", keys, work) for i in range(2, 2 + HOSTS)]
        print(f"login user: {login}; {RUNS} runs each, medians; python {sys.version.split()[0]}")

        # 1. 1,000 sequential run("true"): Python vs Rust.
        s = servers[0]
        args = [s.ip, str(s.port), login, key, state, "1000"]
        rust: List[float] = []
        python: List[float] = []
        for _ in range(RUNS):
            rust.append(timed([ssh_loop, *args]))
            python.append(timed([py, "-c", PY_LOOP, *args]))
        print("\n== 1. 1,000 sequential run(\"true\"), one connected SSH host ==")
        row("1000 x run('true') Python", python, "same loop in Rust", rust, "goal <= 1.05x")

        # 2. 32 hosts, cold.
        targets = [f"{s.ip}:{s.port}" for s in servers]
        base = [login, key, state, *targets]
        # Record host keys once, as a fleet's known_hosts would hold them.
        timed([py, "-c", HGAUTO_FANOUT, *base])
        tools: Dict[str, List[str]] = {
            "hgauto": [py, "-c", HGAUTO_FANOUT, *base],
            "parallel-ssh": [py, str(PSSH_TRUE), login, key, *targets],
            "fabric": [py, "-c", FABRIC_FANOUT, *base],
        }
        times: Dict[str, List[float]] = {k: [] for k in tools}
        for _ in range(RUNS):
            for name, cmd in tools.items():
                times[name].append(timed(cmd))
        print("\n== 2. `true` on 32 hosts, cold start, from Python ==")
        row("32 hosts fan_out", times["hgauto"], "parallel-ssh", times["parallel-ssh"], "goal <= 1.0x")
        row("32 hosts fan_out", times["hgauto"], "fabric (paramiko)", times["fabric"], "")
    finally:
        for s in servers:
            s.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
