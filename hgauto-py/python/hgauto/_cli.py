"""The `hgauto` console script: the command line of the Rust binary, from the wheel."""

from __future__ import annotations

import signal
import sys

from hgauto._hgauto import _cli_main


def main() -> None:
    """Runs `hgauto` with this process's arguments and exits with its code.

    Signals behave as in the Rust binary: Python's own SIGINT handler would only act once
    the command had ended, so SIGINT gets its default action back, and the command line
    handles SIGINT, SIGTERM and SIGHUP itself once it holds machines (it terminates them,
    then dies of the signal).
    """
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    sys.exit(_cli_main(sys.argv))


if __name__ == "__main__":
    main()
