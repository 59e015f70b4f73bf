"""hgauto: release engineering and CI automation on remote machines, from Python.

The same library as the Rust crate, not a re-implementation: every call runs hgauto's Rust
code with the GIL released, so threads run in parallel and Ctrl-C raises
``KeyboardInterrupt`` (killing a running command first).

Helpers: :func:`download`, :func:`checkout`, :func:`create_virtualenv`.
Machines: :class:`LocalProvider` here, ``hgauto.ssh.SshMachine``, ``hgauto.aws.Ec2Provider``
and ``hgauto.aws.SsmMachine``; :func:`fan_out` over many machines.
Publishers: :class:`DirPublisher`, :class:`PypiPublisher`, ``hgauto.ssh.SshPublisher``,
``hgauto.aws.S3Publisher``.
Releases: :class:`Release` (expected files, SHA256SUMS, signatures, many destinations).
Errors: :mod:`hgauto.errors`, all under :class:`HgautoError`. Logs: the ``hgauto`` logger.
"""

import atexit

from . import errors
from ._hgauto import _shutdown
from ._hgauto import (
    Agent,
    FEATURES,
    Artifact,
    CheckoutReport,
    DirJobSource,
    DirPublisher,
    DownloadReport,
    HostResult,
    Job,
    JobSource,
    GithubPrSource,
    ListJobSource,
    LocalProvider,
    Machine,
    MachineSet,
    MachineSpec,
    ManagedResource,
    Provider,
    PublishReport,
    Publisher,
    PypiPublisher,
    Release,
    ReleaseEntry,
    ReleaseReport,
    RetryPolicy,
    RunResult,
    SelfUpdate,
    Pipeline,
    SyncReport,
    VcsBranchSource,
    VenvReport,
    __version__,
    checkout,
    create_virtualenv,
    download,
    fan_out,
)
from . import _signals
from .errors import (
    ApiError,
    AuthError,
    BackendError,
    CommandFailed,
    ConflictError,
    FileNotFound,
    HgautoError,
    HostKeyError,
    IntegrityError,
    Interrupted,
    LeaseLost,
    InvalidInput,
    IoError,
    NetworkError,
    NotFound,
    NotSupported,
    PermissionDenied,
    ProvisionError,
    SpawnError,
    Terminated,
    Timeout,
)

# At exit (hooks run last-registered first): give interrupted commands' clean-up (killing them
# on their machines) time to run, then, if a SIGTERM/SIGHUP ended a machine block uncaught,
# die of that signal.
atexit.register(_signals._die_of_pending_signal)
atexit.register(_shutdown)

__all__ = [
    "Agent",
    "FEATURES",
    "ApiError",
    "Artifact",
    "AuthError",
    "BackendError",
    "CheckoutReport",
    "CommandFailed",
    "DirJobSource",
    "ConflictError",
    "DirPublisher",
    "DownloadReport",
    "FileNotFound",
    "HgautoError",
    "HostKeyError",
    "HostResult",
    "Job",
    "JobSource",
    "GithubPrSource",
    "ListJobSource",
    "IntegrityError",
    "Interrupted",
    "LeaseLost",
    "InvalidInput",
    "IoError",
    "LocalProvider",
    "Machine",
    "MachineSet",
    "MachineSpec",
    "ManagedResource",
    "NetworkError",
    "NotFound",
    "NotSupported",
    "PermissionDenied",
    "ProvisionError",
    "Provider",
    "PublishReport",
    "Publisher",
    "PypiPublisher",
    "Release",
    "ReleaseEntry",
    "ReleaseReport",
    "RetryPolicy",
    "RunResult",
    "SelfUpdate",
    "Pipeline",
    "SpawnError",
    "Terminated",
    "SyncReport",
    "VcsBranchSource",
    "Timeout",
    "VenvReport",
    "__version__",
    "checkout",
    "create_virtualenv",
    "download",
    "errors",
    "fan_out",
]
