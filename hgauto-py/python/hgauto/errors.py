"""The exceptions hgauto raises: one hierarchy under :class:`HgautoError`.

Every exception carries ``retryable`` (whether trying the same thing again can help) and,
where one is involved, ``machine``. Where a builtin fits, the class also inherits from it,
so ``except FileNotFoundError`` or ``except TimeoutError`` work as they would for the
standard library.
"""

from __future__ import annotations

from typing import Any, Dict, Optional, Type

__all__ = [
    "HgautoError",
    "InvalidInput",
    "IoError",
    "FileNotFound",
    "PermissionDenied",
    "SpawnError",
    "Timeout",
    "CommandFailed",
    "IntegrityError",
    "ConflictError",
    "NotFound",
    "NotSupported",
    "NetworkError",
    "HostKeyError",
    "AuthError",
    "ProvisionError",
    "ApiError",
    "Interrupted",
    "LeaseLost",
    "Terminated",
    "BackendError",
]


class HgautoError(Exception):
    """Base class of every hgauto error."""

    #: Whether trying the same operation again can reasonably succeed.
    retryable: bool = False
    #: The machine (or host, or resource) involved, when there is one.
    machine: Optional[str] = None


class InvalidInput(HgautoError, ValueError):
    """The caller passed something unusable; ``what`` names it and ``reason`` says why."""

    what: str
    reason: str


class IoError(HgautoError, OSError):
    """A filesystem operation failed locally or on a machine (``op`` on ``filename``)."""

    op: str


class FileNotFound(IoError, FileNotFoundError):
    """A file or directory does not exist."""


class PermissionDenied(IoError, PermissionError):
    """The operating system refused access to a file."""


class SpawnError(HgautoError, OSError):
    """A command could not be started (``filename`` is the program)."""


class Timeout(HgautoError, TimeoutError):
    """An operation ran past its limit (``after`` seconds); a command's processes were killed."""

    what: str
    after: float


class CommandFailed(HgautoError):
    """A command exited unsuccessfully where success was required.

    ``result`` is the full :class:`hgauto.RunResult` (when the command ran through
    ``Machine.run``), ``exit_code`` is ``None`` when a signal ended it.
    """

    command: str
    exit_code: Optional[int]
    stderr_tail: str
    result: Optional[Any] = None


class IntegrityError(HgautoError):
    """Content did not match its expected digest or size. Never retryable."""

    what: str
    expected: str
    actual: str


class ConflictError(HgautoError):
    """Something already exists with different content (never overwritten)."""

    what: str
    reason: str


class NotFound(HgautoError, FileNotFoundError):
    """A machine, resource, remote file or job that does not exist (``what``)."""

    what: str


class NotSupported(HgautoError, NotImplementedError):
    """The backend cannot do this at all (``backend``, ``what``)."""

    backend: str
    what: str


class NetworkError(HgautoError, ConnectionError):
    """The connection to a machine failed or dropped.

    ``may_have_run`` is true when a command had already been sent: it may have executed.
    """

    may_have_run: bool


class HostKeyError(HgautoError):
    """A host presented an unknown or changed key (``expected``, ``actual`` fingerprints)."""

    reason: str
    expected: Optional[str]
    actual: str


class AuthError(HgautoError, PermissionError):
    """Authentication was refused (``user``, ``reason``)."""

    user: str
    reason: str


class ProvisionError(HgautoError):
    """Creating or destroying machines or what they need failed."""

    provider: str
    action: str
    resource: str
    reason: str


class Terminated(BaseException):
    """SIGTERM or SIGHUP arrived while a ``provider.machines(...)`` block was open.

    Raised in the main thread so the block terminates its machines; like
    ``KeyboardInterrupt`` it is not an ``Exception``. Uncaught, the process then dies of
    ``signal`` (see :mod:`hgauto._signals`).
    """

    def __init__(self, signal: int) -> None:
        super().__init__(f"terminated by signal {signal}")
        #: The signal number (15 for SIGTERM, 1 for SIGHUP).
        self.signal = signal


class ApiError(HgautoError):
    """A cloud API call failed in a way no other class describes: throttled, unavailable
    (``retryable`` is true for both) or other.

    Every exception raised for a cloud API call, of this class or another (``NotFound``,
    ``AuthError``, ``ConflictError``, ``InvalidInput``, ``ProvisionError``), also carries
    ``service``, ``action``, ``resource``, the service's error ``code`` and
    ``error_class``.
    """

    service: str
    action: str
    resource: str
    code: str
    error_class: str


class Interrupted(HgautoError):
    """The process received SIGINT or SIGTERM while machines were being cleaned up."""

    signal: int


class LeaseLost(HgautoError):
    """A job's lease ran out or went to another holder (``job``, ``source``): stop working
    on it, whoever holds it now will do the work."""

    job: str
    source: str


class BackendError(HgautoError):
    """An error from a backend that fits no other class (``backend``)."""

    backend: str


_KINDS: Dict[str, Type[HgautoError]] = {
    name: globals()[name] for name in __all__ if name != "Terminated"
}


def _from_native(kind: str, message: str, attrs: Dict[str, Any]) -> HgautoError:
    """Builds the exception the native module reports (called from Rust)."""
    cls = _KINDS.get(kind, HgautoError)
    err = cls(message)
    if isinstance(err, OSError):
        # Set after construction so str(err) stays hgauto's message, which names the
        # operation, the path and the machine.
        err.strerror = message
    for key, value in attrs.items():
        setattr(err, key, value)
    return err
