#!/usr/bin/env python3
"""Release the files collected in a directory, the way seed 000's release step did, on
hgauto: every expected file must be there, then the wheels and sdists go to a Python index
and everything goes to a mirror directory, with SHA256SUMS (signed with --sign) beside them.

    TWINE_USERNAME=uploader TWINE_PASSWORD=... \\
    python examples/python/release.py dist --expect '*.whl' --expect 'demo-1.0.tar.gz' \\
        --pypi http://127.0.0.1:8080/ --mirror /srv/releases/1.0 --report release.json

Credentials come from the TWINE_* variables or a .pypirc section (--repository), never from
the command line. --skip pypi (or mirror) leaves a destination out. Exit status: 0 when
every destination has everything, 1 when a destination failed (run again to finish: what is
there is not uploaded twice), 2 when the release was refused and nothing was uploaded.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import List, Optional, Sequence, Tuple, Union

import hgauto

log = logging.getLogger("release")


def expectation(text: str) -> Union[str, Tuple[str, int]]:
    """`NAME`, `PATTERN`, or `PATTERN=COUNT`."""
    pattern, sep, count = text.rpartition("=")
    if sep and count.isdigit():
        return (pattern, int(count))
    return text


def parse_args(argv: Optional[Sequence[str]]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("dir", type=Path, help="where the artifacts were collected")
    p.add_argument("--expect", action="append", required=True, type=expectation,
                   help="an expected file: NAME, PATTERN (one or more) or PATTERN=COUNT")
    p.add_argument("--pypi", metavar="URL", help="the index's upload URL (default: TWINE_REPOSITORY_URL or .pypirc)")
    p.add_argument("--repository", help="the .pypirc section to read")
    p.add_argument("--mirror", type=Path, help="a directory that gets every file")
    p.add_argument("--skip", action="append", default=[], choices=["pypi", "mirror"])
    p.add_argument("--sign", type=Path, metavar="KEY", help="a minisign secret key (mode 0600)")
    p.add_argument("--allow-unexpected", action="store_true")
    p.add_argument("--report", type=Path, help="write the JSON report here")
    return p.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = parse_args(argv)
    try:
        release = hgauto.Release(
            args.dir,
            args.expect,
            allow_unexpected=args.allow_unexpected,
            sign_key=args.sign,
        )
        release.publish_to(
            "pypi",
            hgauto.PypiPublisher(args.pypi, repository=args.repository),
            ["*.whl", "*.tar.gz"],
        )
        if args.mirror is not None:
            release.publish_to("mirror", hgauto.DirPublisher(args.mirror))
        for name in args.skip:
            release.skip(name)
        report = release.run(args.report)
    except (hgauto.InvalidInput, hgauto.ConflictError, hgauto.IntegrityError) as e:
        log.error("release refused, nothing uploaded: %s", e)
        return 2
    rows: List[Tuple[str, str, str]] = [(e.artifact, e.destination, e.status) for e in report.entries]
    width = max((len(a) for a, _, _ in rows), default=8)
    for artifact, destination, status in rows:
        print(f"{artifact:<{width}}  {destination:<8}  {status}")
    for failure in report.failures:
        log.error("%s to %s: %s", failure.artifact, failure.destination, failure.error)
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
