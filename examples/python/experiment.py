#!/usr/bin/env python3
"""An in-tree experiment script in the mozharness style, on hgauto.

Actions, in order (choose some with --actions):
  checkout       check out --repo at --revision (or --branch) through a pooled store
  create-venv    create a virtualenv from --requirements (reused when unchanged)
  download-tool  download the pinned tool (--tool-url, --tool-sha256)
  run-tests      push the checkout and the tool to two machines, run the test command on
                 both at once (hgauto.fan_out; --serial: one after the other, with
                 each output line logged as it arrives), and write a JSON summary

Machines are local sandboxes by default (hgauto.LocalProvider); give --ssh HOST:PORT (twice
for two hosts, or once to use one host twice) to run on SSH hosts instead. Nothing else
changes: that is the point.

    python examples/python/experiment.py --repo . --branch main \\
        --tool-url http://127.0.0.1:8080/tool.sh --tool-sha256 <hex> --work /tmp/exp
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

import hgauto
import hgauto.ssh

log = logging.getLogger("experiment")

ACTIONS = ["checkout", "create-venv", "download-tool", "run-tests"]


class Experiment:
    """The script's state: its configuration and what earlier actions produced."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.work: Path = args.work.resolve()
        self.src = self.work / "src"
        self.venv = self.work / "venv"
        self.tool = self.work / "tools" / "tool.sh"
        self.summary: Dict[str, object] = {"actions": {}}

    # -- actions ---------------------------------------------------------------------

    def checkout(self) -> None:
        a = self.args
        report = hgauto.checkout(
            a.repo,
            self.src,
            vcs=a.vcs,
            revision=a.revision,
            branch=None if a.revision else a.branch,
            share_base=self.work / "stores",
            purge=True,
            progress=lambda step: log.info("checkout: %s", step),
        )
        log.info("checked out %s (cloned=%s)", report.revision, report.cloned)
        self.record("checkout", revision=report.revision, cloned=report.cloned)

    def create_venv(self) -> None:
        a = self.args
        report = hgauto.create_virtualenv(
            self.venv,
            requirements=[a.requirements] if a.requirements else [],
            find_links=a.find_links,
            no_index=a.no_index,
            progress=lambda step: log.info("venv: %s", step),
        )
        log.info("venv %s: python %s, reused=%s", report.path, report.python_version, report.reused)
        self.record("create-venv", python=report.python_version, reused=report.reused)

    def download_tool(self) -> None:
        a = self.args
        last = [0.0]

        def progress(done: int, total: Optional[int]) -> None:
            if time.monotonic() - last[0] > 1 or done == total:
                last[0] = time.monotonic()
                log.info("tool: %d of %s bytes", done, total if total is not None else "?")

        report = hgauto.download(a.tool_url, self.tool, sha256=a.tool_sha256, progress=progress)
        self.tool.chmod(0o755)
        self.record("download-tool", sha256=report.sha256, bytes=report.bytes)

    def run_tests(self) -> None:
        with ExitStack() as stack:
            machines = self.machines(stack)
            for m in machines:
                m.sync_tree(self.src, f"{self.REMOTE}/src", delete=True)
                m.put(self.tool, f"{self.REMOTE}/tool.sh")
            results = [self.run_on(m) for m in machines] if self.args.serial else self.fan_out(machines)
        failed = [r for r in results if not r["ok"]]
        self.record("run-tests", machines=results, failed=len(failed))
        if failed:
            raise SystemExit(f"tests failed on {', '.join(str(r['machine']) for r in failed)}")

    # -- helpers ---------------------------------------------------------------------

    def machines(self, stack: ExitStack) -> List[hgauto.Machine]:
        a = self.args
        if not a.ssh:
            provider = hgauto.LocalProvider(self.work / "state")
            return stack.enter_context(provider.machines(count=2))
        hosts = a.ssh if len(a.ssh) > 1 else a.ssh * 2
        result: List[hgauto.Machine] = []
        for i, address in enumerate(hosts[:2]):
            host, _, port = address.rpartition(":")
            result.append(
                hgauto.ssh.SshMachine(
                    host,
                    port=int(port),
                    user=a.ssh_user,
                    key_file=a.ssh_key,
                    host_keys="accept-new",
                    state_dir=self.work / "state",
                    id=f"ssh{i}-{address}",
                )
            )
        return result

    #: Where the checkout and the tool go on every machine (relative to its home).
    REMOTE = "hgauto-experiment"

    def test_command(self) -> List[str]:
        return ["sh", f"{self.REMOTE}/tool.sh", f"{self.REMOTE}/src"]

    def run_on(self, m: hgauto.Machine) -> Dict[str, object]:
        r = m.run(self.test_command(), check=False, timeout=self.args.timeout,
                  on_line=self.echo(m.id))
        return self.describe(m.id, r)

    def fan_out(self, machines: Sequence[hgauto.Machine]) -> List[Dict[str, object]]:
        out: List[Dict[str, object]] = []
        for h in hgauto.fan_out(machines, self.test_command(), timeout=self.args.timeout):
            if h.result is None:
                log.error("%s: %s", h.machine, h.error)
                out.append({"machine": h.machine, "ok": False, "error": str(h.error)})
            else:
                for line in h.result.stdout.splitlines():
                    self.echo(h.machine)("stdout", line)
                out.append(self.describe(h.machine, h.result))
        return out

    @staticmethod
    def describe(machine: str, r: hgauto.RunResult) -> Dict[str, object]:
        return {"machine": machine, "ok": r.ok, "exit_code": r.exit_code,
                "duration": round(r.duration, 3), "stdout": r.stdout}

    def echo(self, machine: str) -> Callable[[str, str], None]:
        def line(stream: str, text: str) -> None:
            log.info("[%s %s] %s", machine, stream, text)

        return line

    def record(self, action: str, **facts: object) -> None:
        actions = self.summary["actions"]
        assert isinstance(actions, dict)
        actions[action] = facts


def parse(argv: Sequence[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repo", required=True, help="repository URL or path")
    p.add_argument("--vcs", choices=["git", "hg"], default="git")
    p.add_argument("--revision", help="full revision hash")
    p.add_argument("--branch", default="main", help="branch, when no --revision")
    p.add_argument("--requirements", type=Path, help="requirements file for the venv")
    p.add_argument("--find-links", action="append", default=[], help="wheel directory (repeatable)")
    p.add_argument("--no-index", action="store_true", help="install only from --find-links")
    p.add_argument("--tool-url", required=True)
    p.add_argument("--tool-sha256", required=True)
    p.add_argument("--work", type=Path, default=Path("experiment-work"))
    p.add_argument("--ssh", action="append", default=[], metavar="HOST:PORT",
                   help="run on SSH hosts instead of local machines")
    p.add_argument("--ssh-user", default="root")
    p.add_argument("--ssh-key", type=Path, help="private key for --ssh")
    p.add_argument("--timeout", type=float, default=600.0, help="limit of the test command")
    p.add_argument("--serial", action="store_true", help="one machine after the other")
    p.add_argument("--actions", default=",".join(ACTIONS), help="comma-separated subset of " + ", ".join(ACTIONS))
    p.add_argument("--summary", type=Path, help="write the JSON summary here (default: stdout)")
    args = p.parse_args(argv)
    unknown = set(args.actions.split(",")) - set(ACTIONS)
    if unknown:
        p.error(f"unknown action(s): {', '.join(sorted(unknown))}")
    if args.ssh and not args.ssh_key:
        p.error("--ssh needs --ssh-key")
    return args


def main(argv: Sequence[str]) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = parse(argv)
    exp = Experiment(args)
    steps: Dict[str, Callable[[], None]] = {
        "checkout": exp.checkout,
        "create-venv": exp.create_venv,
        "download-tool": exp.download_tool,
        "run-tests": exp.run_tests,
    }
    chosen = args.actions.split(",")
    try:
        for name in ACTIONS:
            if name in chosen:
                log.info("##### %s", name)
                steps[name]()
    except hgauto.HgautoError as e:
        log.error("%s failed: %s (retryable: %s)", name, e, e.retryable)
        return 2
    finally:
        text = json.dumps(exp.summary, indent=2, sort_keys=True)
        if args.summary:
            args.summary.write_text(text + "\n")
        else:
            print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
