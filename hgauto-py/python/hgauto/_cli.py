"""The `hgauto` console script: the command line of the Rust binary, from the wheel."""

from __future__ import annotations

import sys

from hgauto._hgauto import _cli_main


def main() -> None:
    """Runs `hgauto` with this process's arguments and exits with its code."""
    sys.exit(_cli_main(sys.argv))


if __name__ == "__main__":
    main()
