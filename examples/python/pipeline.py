#!/usr/bin/env python3
"""A wheel matrix as a pipeline, from Python: build a wheel per Python version x
architecture on local workers, smoke-test each, then gather them in one function step.

    python examples/python/pipeline.py OUT_DIR [--mode fake|local|normal] [--break 3.12-x64]

It prints the failure summary (if any) and the report's path, and exits 1 when a task
failed. The same dict could live in a TOML file (hgauto.Pipeline.from_file).
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any, Dict

import hgauto

PIPELINE: Dict[str, Any] = {
    "name": "wheels",
    "dimensions": {"python": ["3.11", "3.12"], "arch": ["x64", "arm64"]},
    "workers": {"builder": {"max_workers": 2}},
    "steps": [
        {
            "name": "wheel",
            "worker": "builder",
            "over": ["python", "arch"],
            "kind": "heavy",
            # Values reach the script as $1 and $2 (data, never code).
            "run": [
                "sh",
                "-c",
                'if [ "$1-$2" = "$3" ]; then echo "compile error" >&2; exit 1; fi; '
                'mkdir -p dist && echo "wheel $1 $2" > "dist/demo-1.0-cp$1-$2.whl" && '
                'echo "wheel=demo-1.0-cp$1-$2.whl" >> "$HGAUTO_OUTPUT"',
                "sh",
                "{python}",
                "{arch}",
                "{break}",
            ],
            "collect": ["dist/demo-1.0-cp{python}-{arch}.whl"],
        },
        {
            "name": "smoke",
            "worker": "builder",
            "over": ["python", "arch"],
            "needs": ["wheel"],
            "script": 'test -n "$HGAUTO_OUT_WHEEL_WHEEL" && echo "smoke test of $HGAUTO_OUT_WHEEL_WHEEL: ok"',
        },
        {"name": "gather", "needs": ["wheel", "smoke"], "function": "gather"},
    ],
}


def gather(ctx: Dict[str, Any]) -> Dict[str, str]:
    """Lists every collected wheel: the fan-in over the whole matrix."""
    wheels = sorted(os.path.basename(p) for paths in ctx["artifacts"].values() for p in paths)
    return {"wheels": ",".join(wheels), "count": str(len(wheels))}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--mode", default="local", choices=["normal", "fake", "local"])
    ap.add_argument("--break", dest="broken", default="")
    ap.add_argument("--state-dir")
    args = ap.parse_args()
    pipeline = hgauto.Pipeline.from_dict(PIPELINE, functions={"gather": gather})
    provider = hgauto.LocalProvider(args.state_dir) if args.state_dir else None
    result = pipeline.run(
        args.out,
        provider=provider,
        mode=args.mode,
        state_dir=args.state_dir,
        inputs={"break": args.broken},
    )
    for step in result["steps"]:
        for cell in step["cells"]:
            print(f"{cell['task']:<22} {cell['state']:<10} attempts={cell['attempts']}")
    for failure in result["failures"]:
        print(f"FAILED {failure['task']} on {failure.get('machine')}: {failure['error']}")
    print(f"report: {os.path.join(args.out, 'report.html')}")
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
