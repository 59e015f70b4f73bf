"""SIGTERM and SIGHUP while machines are open: the same cleanup as Ctrl-C.

CI systems cancel a job with SIGTERM (and a closed terminal sends SIGHUP). Python's default
for both is to die at once, which would leave every machine of an open
``provider.machines(...)`` block running. While such a block is open, hgauto handles both:

1. a handler the script installed itself runs first (chained, not replaced; one that was
   set to ``SIG_IGN`` keeps the signal ignored);
2. :class:`hgauto.Terminated` is raised in the main thread. Like ``KeyboardInterrupt`` it is
   not an ``Exception``, so ``except Exception`` does not swallow it; the ``with`` block
   ends and terminates its machines (an operation in flight is cancelled or, for
   provisioning, finished and undone, exactly as for Ctrl-C);
3. if nothing catches it, the process then dies of the signal it got, so its parent sees
   that (exit status -15 or -1 from ``subprocess``, 143 or 129 in a shell).

Handlers can only be installed from the main thread: blocks opened in other threads rely
on one opened in the main thread, or on the script's own handling.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from types import FrameType, TracebackType
from typing import Any, Callable, Dict, Optional, Type, Union

from .errors import Terminated

_Handler = Union[Callable[[int, Optional[FrameType]], Any], int, signal.Handlers, None]

_SIGNALS = (signal.SIGTERM, signal.SIGHUP)
_lock = threading.Lock()
_open = 0
_previous: Dict[int, _Handler] = {}
#: The signal an uncaught Terminated carried, to be re-raised once the interpreter is done.
_pending: Optional[int] = None


def _handler(signum: int, frame: Optional[FrameType]) -> None:
    previous = _previous.get(signum)
    if previous is signal.SIG_IGN:
        return
    if callable(previous):
        previous(signum, frame)
    raise Terminated(signum)


def enter() -> None:
    """A machine block opens: install the handlers if it is the first (main thread only)."""
    global _open
    with _lock:
        _open += 1
        if _open > 1 or threading.current_thread() is not threading.main_thread():
            return
        for sig in _SIGNALS:
            _previous[sig] = signal.getsignal(sig)
            signal.signal(sig, _handler)


def leave() -> None:
    """A machine block closed: restore the script's handlers after the last one."""
    global _open
    with _lock:
        _open = max(0, _open - 1)
        if _open or threading.current_thread() is not threading.main_thread():
            return
        for sig, previous in list(_previous.items()):
            if signal.getsignal(sig) is _handler:
                signal.signal(sig, previous if previous is not None else signal.SIG_DFL)
            del _previous[sig]


def _excepthook(
    kind: Type[BaseException], value: BaseException, tb: Optional[TracebackType]
) -> None:
    global _pending
    if isinstance(value, Terminated):
        _pending = value.signal
    _chained_excepthook(kind, value, tb)


def _die_of_pending_signal() -> None:
    """At exit, after an uncaught Terminated: end the process the way the signal would."""
    if _pending is None:
        return
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:  # noqa: BLE001 - a closed stream must not stop us
            pass
    signal.signal(_pending, signal.SIG_DFL)
    os.kill(os.getpid(), _pending)


_chained_excepthook = sys.excepthook
sys.excepthook = _excepthook
