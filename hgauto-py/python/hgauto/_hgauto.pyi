"""Type stubs of the native module `hgauto._hgauto` (re-exported by `hgauto`, `hgauto.ssh`
and `hgauto.aws`). Every call releases the GIL while it waits; Ctrl-C raises
KeyboardInterrupt after cancelling (a running command is killed first)."""

import os
from pathlib import Path
from typing import Any, Callable, Dict, List, Literal, Mapping, Optional, Sequence, Tuple, Union, final

from typing_extensions import Self, disjoint_base

_StrPath = Union[str, "os.PathLike[str]"]
#: A shell script for the machine's shell (str), or a program and its arguments.
_CommandLike = Union[str, Sequence[_StrPath]]

__version__: str
__all__ = [
    "Agent",
    "Artifact",
    "CheckoutReport",
    "DirJobSource",
    "DirPublisher",
    "DownloadReport",
    "Ec2Provider",
    "FEATURES",
    "HostResult",
    "Job",
    "JobSource",
    "GithubPrSource",
    "ListJobSource",
    "LocalProvider",
    "Machine",
    "MachineSet",
    "MachineSpec",
    "ManagedResource",
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
    "_cli_main",
    "S3Publisher",
    "SqsJobSource",
    "SshMachine",
    "SshPublisher",
    "SsmMachine",
    "SyncReport",
    "VcsBranchSource",
    "VenvReport",
    "__version__",
    "_shutdown",
    "checkout",
    "create_virtualenv",
    "download",
    "fan_out",
]
#: Compiled-in features: "ssh", "aws".
FEATURES: List[str]

def _shutdown() -> None:
    """Stops the runtime at interpreter exit, letting interrupted commands be killed."""

@final
class RetryPolicy:
    """How often and how patiently to retry (exponential backoff, optional full jitter)."""

    def __new__(
        cls,
        max_retries: int = 3,
        base_delay: float = 1.0,
        factor: float = 2.0,
        max_delay: float = 30.0,
        jitter: bool = True,
    ) -> Self: ...
    @staticmethod
    def network() -> RetryPolicy:
        """Network operations (downloads, SSH reconnects)."""
    @staticmethod
    def cheap() -> RetryPolicy:
        """Cheap, often-throttled API calls."""
    @staticmethod
    def heavy() -> RetryPolicy:
        """Expensive operations (builds, image creation)."""
    @staticmethod
    def never() -> RetryPolicy:
        """No retries at all."""
    @property
    def max_retries(self) -> int: ...
    @property
    def base_delay(self) -> float: ...
    @property
    def factor(self) -> float: ...
    @property
    def max_delay(self) -> float: ...

@final
class RunResult:
    """How a command ended, and what it wrote."""

    @property
    def machine(self) -> str:
        """The machine's id."""
    @property
    def command(self) -> str:
        """The command line, for display."""
    @property
    def exit_code(self) -> Optional[int]:
        """The exit code, or None when a signal ended the command."""
    @property
    def signal(self) -> Optional[int]:
        """The signal that ended the command, if one did."""
    @property
    def ok(self) -> bool:
        """True for exit code 0."""
    @property
    def stdout(self) -> str:
        """Standard output as text (invalid UTF-8 replaced)."""
    @property
    def stderr(self) -> str:
        """Standard error as text (invalid UTF-8 replaced)."""
    @property
    def stdout_bytes(self) -> bytes:
        """Standard output, exactly as received."""
    @property
    def stderr_bytes(self) -> bytes:
        """Standard error, exactly as received."""
    @property
    def duration(self) -> float:
        """Seconds from start to exit."""
    @property
    def truncated(self) -> bool:
        """The transport kept only part of the output (SSM without an output bucket)."""
    def check(self) -> Self:
        """Raises CommandFailed unless the command succeeded; returns the result otherwise."""

@final
class SyncReport:
    """What a sync_tree did."""

    @property
    def files_sent(self) -> int: ...
    @property
    def bytes_sent(self) -> int: ...
    @property
    def files_unchanged(self) -> int: ...
    @property
    def symlinks(self) -> int: ...
    @property
    def deleted(self) -> int: ...

@disjoint_base
class Machine:
    """One machine: local sandbox, SSH host, SSM instance."""

    @property
    def id(self) -> str:
        """The machine's id, unique within its provider."""
    @property
    def platform(self) -> str:
        """"linux" or "windows"."""
    def run(
        self,
        cmd: _CommandLike,
        *,
        check: bool = True,
        env: Optional[Mapping[str, str]] = None,
        cwd: Optional[str] = None,
        timeout: Optional[float] = None,
        stdin: Union[bytes, str, None] = None,
        on_line: Optional[Callable[[str, str], object]] = None,
        idempotent: bool = False,
    ) -> RunResult:
        """Runs a command and returns its result.

        A str is a script for the machine's shell; a sequence is a program and its
        arguments, passed verbatim. With check=True a failure raises CommandFailed (with
        the result attached). on_line(stream, line) gets each output line on this thread
        as it arrives; an exception from it stops the command and propagates. A timeout
        kills the command's whole process tree and raises Timeout. idempotent=True lets
        the backend repeat the command after a dropped connection."""
    def put(self, local: _StrPath, remote: str) -> None:
        """Copies a local file to the machine (atomically, keeping its mode)."""
    def get(self, remote: str, local: _StrPath) -> None:
        """Copies a file from the machine (atomically, keeping its mode)."""
    def sync_tree(
        self, local_dir: _StrPath, remote_dir: str, *, delete: bool = False, compress: bool = False
    ) -> SyncReport:
        """Makes remote_dir mirror local_dir, sending only what changed."""
    def wait_ready(self, timeout: float = 300.0) -> None:
        """Waits until the machine accepts commands (Timeout names the last error)."""

@final
class HostResult:
    """One machine's outcome of a fan_out."""

    @property
    def machine(self) -> str: ...
    @property
    def result(self) -> Optional[RunResult]:
        """The command's result, when it ran."""
    @property
    def error(self) -> Optional[BaseException]:
        """Why it could not run (an HgautoError), otherwise None."""
    @property
    def ok(self) -> bool:
        """True when the command ran and exited 0."""

def fan_out(
    machines: Sequence[Machine],
    cmd: _CommandLike,
    *,
    parallelism: int = 32,
    env: Optional[Mapping[str, str]] = None,
    cwd: Optional[str] = None,
    timeout: Optional[float] = None,
    idempotent: bool = False,
) -> List[HostResult]:
    """Runs one command on every machine, at most `parallelism` at once; one failing
    machine does not stop the others. Results are in the order of `machines`."""

@final
class MachineSpec:
    """What kind of machine to provision."""

    def __new__(
        cls,
        platform: str = "linux",
        *,
        image: Optional[str] = None,
        instance_type: Optional[str] = None,
        lifetime: float = 7200.0,
        labels: Optional[Mapping[str, str]] = None,
    ) -> Self: ...
    @property
    def platform(self) -> str: ...
    @property
    def image(self) -> Optional[str]: ...
    @property
    def instance_type(self) -> Optional[str]: ...
    @property
    def lifetime(self) -> float: ...
    @property
    def labels(self) -> Dict[str, str]: ...

@final
class ManagedResource:
    """One resource a provider manages."""

    @property
    def id(self) -> str: ...
    @property
    def kind(self) -> str:
        """"machine", "image", "snapshot", "key-pair", "security-group", "role", ..."""
    @property
    def created_at(self) -> int: ...
    @property
    def deadline(self) -> Optional[int]: ...
    @property
    def exists(self) -> bool: ...

@final
class MachineSet:
    """Machines that exist only inside a `with` block (see Provider.machines)."""

    def __enter__(self) -> List[Machine]: ...
    def __exit__(self, exc_type: object = None, _exc: object = None, _tb: object = None) -> bool: ...
    @property
    def ids(self) -> List[str]:
        """The ids of the machines alive in this block."""

@disjoint_base
class Provider:
    """Creates and destroys machines, recording them in a ledger first."""

    @property
    def name(self) -> str: ...
    def provision(self, spec: Optional[MachineSpec] = None, count: int = 1) -> List[Machine]:
        """Creates machines you own (terminate them). Ctrl-C lets a provision finish and
        terminates what it made before raising KeyboardInterrupt."""
    def terminate(self, machines: Sequence[Union[Machine, str]]) -> None:
        """Destroys machines (objects or ids)."""
    def machines(self, spec: Optional[MachineSpec] = None, count: int = 1) -> MachineSet:
        """`with provider.machines(spec, count=2) as ms:` provisions on entry and terminates
        on every exit: return, exception, KeyboardInterrupt."""
    def ensure_image(
        self,
        name: str,
        *,
        base: str,
        platform: str = "linux",
        scripts: Sequence[str] = ...,
        files: Sequence[Tuple[_StrPath, str]] = ...,
        instance_type: Optional[str] = None,
        user_data: Optional[str] = None,
    ) -> str:
        """The id of an image built from this recipe, built only if its fingerprint is new."""
    def list_managed(self) -> List[ManagedResource]:
        """Everything this provider created and has not removed."""
    def purge(self) -> List[str]:
        """Removes everything this provider created; returns the removed ids."""

@final
class LocalProvider(Provider):
    """Machines on this host: sandboxed homes, own process groups, a ledger."""

    def __new__(cls, state_dir: Optional[_StrPath] = None, *, prefix: Optional[str] = None) -> Self: ...

@final
class Artifact:
    """A file to publish under a name, with its sha256 and size."""

    def __new__(cls, path: _StrPath, name: Optional[str] = None) -> Self: ...
    @property
    def path(self) -> Path: ...
    @property
    def name(self) -> str: ...
    @property
    def sha256(self) -> str: ...
    @property
    def size(self) -> int: ...

_ArtifactLike = Union[Artifact, _StrPath]

@final
class PublishReport:
    """What a publish did."""

    @property
    def published(self) -> List[str]: ...
    @property
    def already_present(self) -> List[str]: ...

@disjoint_base
class Publisher:
    """Puts artifacts somewhere, idempotently."""

    def publish(self, artifacts: Sequence[_ArtifactLike]) -> PublishReport:
        """Publishes every artifact; same name and sha256 is skipped, another sha256 raises
        ConflictError."""
    def exists(self, artifact: _ArtifactLike) -> bool:
        """Whether the artifact is already published with the same content."""

@final
class DirPublisher(Publisher):
    """Publishes into a local directory."""

    def __new__(cls, dir: _StrPath) -> Self: ...

@final
class PypiPublisher(Publisher):
    """Uploads wheels and sdists to PyPI, TestPyPI, pypiserver, devpi or any index that
    speaks twine's upload protocol. Settings not given come from TWINE_USERNAME,
    TWINE_PASSWORD and TWINE_REPOSITORY_URL, then from a .pypirc section. A token goes as
    user ``__token__``. Wrong credentials raise AuthError; a file already there with
    other content raises ConflictError."""

    def __new__(
        cls,
        repository_url: Optional[str] = None,
        *,
        repository: Optional[str] = None,
        username: Optional[str] = None,
        password: Optional[str] = None,
        token: Optional[str] = None,
        pypirc: Optional[_StrPath] = None,
        index_url: Optional[str] = None,
        retry: Optional[RetryPolicy] = None,
        concurrency: Optional[int] = None,
    ) -> Self: ...
    @property
    def upload_url(self) -> str:
        """The upload endpoint (without credentials)."""
    @property
    def index_url(self) -> str:
        """The simple index ``exists`` reads."""

#: An expected artifact: a name, a glob pattern (one or more matches), or (pattern, count).
_Expected = Union[str, Tuple[str, int]]

@final
class ReleaseEntry:
    """One (artifact, destination) pair of a release."""

    @property
    def artifact(self) -> str: ...
    @property
    def destination(self) -> str: ...
    @property
    def status(self) -> str:
        """published, already_present, skipped_by_filter, skipped or failed."""
    @property
    def error(self) -> Optional[str]: ...

@final
class ReleaseReport:
    """What a release did: one status per (artifact, destination)."""

    @property
    def ok(self) -> bool:
        """True when nothing failed."""
    @property
    def entries(self) -> List[ReleaseEntry]: ...
    @property
    def failures(self) -> List[ReleaseEntry]: ...
    @property
    def artifacts(self) -> List[Artifact]:
        """Every file the release covers, SHA256SUMS and signatures last."""
    @property
    def ignored(self) -> List[str]:
        """Files no expectation matched, left alone."""
    def status(self, artifact: str, destination: str) -> Optional[str]: ...
    def to_json(self) -> str: ...

@final
class Release:
    """Checks every expected artifact in ``dir`` and every destination, then publishes to
    each the files its filter takes, with SHA256SUMS (and minisign signatures with a key)
    beside them."""

    def __new__(
        cls,
        dir: _StrPath,
        expect: Sequence[_Expected],
        *,
        allow_unexpected: bool = False,
        checksums: bool = True,
        sign_key: Optional[_StrPath] = None,
        sign_key_password: Optional[str] = None,
        sign_key_env: Optional[str] = None,
        strict: bool = False,
    ) -> Self: ...
    def publish_to(self, name: str, publisher: Publisher, filter: Sequence[str] = ...) -> Self:
        """Publishes the files matching one of ``filter``'s patterns there. Empty: the
        publisher's own (PyPI: ``*.whl``, ``*.tar.gz``, ``*.zip``; elsewhere every file)."""
    def skip(self, name: str) -> Self:
        """Switches a destination off."""
    def run(self, report_path: Optional[_StrPath] = None) -> ReleaseReport:
        """Raises, with nothing uploaded, for a missing or unexpected file or a conflict;
        otherwise returns the report."""

@final
class Job:
    """One unit of work from a job source."""

    def __new__(
        cls,
        id: str,
        check: str,
        *,
        revision: Optional[str] = None,
        priority: int = 0,
        created_ms: int = 0,
        attributes: Optional[Mapping[str, str]] = None,
        payload: object = None,
    ) -> Self: ...
    @property
    def id(self) -> str: ...
    @property
    def source(self) -> str: ...
    @property
    def check(self) -> str: ...
    @property
    def revision(self) -> Optional[str]: ...
    @property
    def created_ms(self) -> int: ...
    @property
    def priority(self) -> int: ...
    @property
    def attempt(self) -> int: ...
    @property
    def lease_deadline_ms(self) -> Optional[int]: ...
    @property
    def previous(self) -> Optional[str]:
        """How the last job of the same (check, revision) ended."""
    @property
    def attributes(self) -> Dict[str, str]: ...
    @property
    def payload(self) -> object: ...

@disjoint_base
class JobSource:
    """Where work comes from: jobs handed out under a lease."""

    @property
    def name(self) -> str: ...
    def next(
        self, *, checks: Optional[Sequence[str]] = None, shard: Optional[Tuple[int, int]] = None
    ) -> Optional[Job]:
        """The next job, leased to the caller, or None."""
    def depth(
        self, *, checks: Optional[Sequence[str]] = None, shard: Optional[Tuple[int, int]] = None
    ) -> Optional[Dict[str, object]]:
        """{"pending": n, "leased": n, "exact": bool}, or None when the source cannot count."""
    def started(self, job: Job) -> None: ...
    def heartbeat(self, job: Job) -> int:
        """Extends the lease; raises LeaseLost when it is gone."""
    def report(
        self, job: Job, status: str, summary: Optional[str] = None, *, retryable: bool = False
    ) -> None:
        """Ends the job: status is succeeded, failed or skipped."""
    def release(self, job: Job) -> None: ...

@final
class DirJobSource(JobSource):
    """A job queue in a directory, shared by processes."""

    def __new__(cls, root: _StrPath, *, lease_ttl: float = 300.0) -> Self: ...
    def enqueue(self, job: Job) -> bool: ...
    def outcomes(self) -> Dict[str, str]: ...

@final
class ListJobSource(JobSource):
    """Jobs held in memory, with leases."""

    def __new__(cls, jobs: Sequence[Job] = ..., *, lease_ttl: float = 300.0) -> Self: ...
    def push(self, job: Job) -> None: ...

@final
class VcsBranchSource(JobSource):
    """Jobs from the heads of watched git or Mercurial branches."""

    def __new__(
        cls,
        state_dir: _StrPath,
        *,
        share_base: Optional[_StrPath] = None,
        poll_interval: float = 60.0,
        lease_ttl: float = 300.0,
    ) -> Self: ...
    def watch(
        self,
        url: str,
        branches: Sequence[str],
        checks: Sequence[str],
        *,
        vcs: str = "git",
        priority: int = 0,
    ) -> None: ...
    def poll(self) -> int:
        """Reads every watched head now; returns how many jobs were added."""

@final
class Agent:
    """A builder agent: takes jobs from `source`, runs `build` for each, reports them.

    `build(job, *, log, debug)` returns None or True (succeeded), False (failed), a
    summary string (succeeded), or a `(status, summary)` pair; an exception fails the job.
    """

    def __new__(
        cls,
        source: JobSource,
        state_dir: _StrPath,
        build: Callable[..., object],
        *,
        sharing: str = "claims",
        config_dir: Optional[_StrPath] = None,
        name: Optional[str] = None,
        stop_bound: float = 60.0,
    ) -> Self: ...
    def run_once(self) -> Optional[Dict[str, object]]:
        """One iteration: the job built (job, status, summary, reported), or None."""
    def run(self) -> None:
        """Iterates until stop()."""
    def stop(self) -> None:
        """Stops the agent; safe to call from a signal handler."""
    def status(self) -> Dict[str, object]:
        """The agent's status, as state/status.json shows it."""

@final
class SelfUpdate:
    """Updates working copies from production branches: after a quiet window (or a ready
    flag), a check command and an optional CI gate; a failing hook rolls back."""

    def __new__(
        cls,
        state_dir: _StrPath,
        repositories: Sequence[Mapping[str, str]],
        *,
        quiet_window: float = 600.0,
        ready_flag: Optional[_StrPath] = None,
        check_command: Optional[Sequence[str]] = None,
        ci_gate: Optional[Sequence[str]] = None,
        hook: Optional[Sequence[str]] = None,
        stale_lock_after: float = 7200.0,
    ) -> Self: ...
    def update_once(self) -> Dict[str, object]:
        """One update round: {"outcome": in_sync | waiting | blocked | rolled_back | skipped | applied | locked, ...}."""
    def state(self) -> Dict[str, object]:
        """The saved state (running, seen, out_of_sync_since_ms, last_error...)."""
    def nagios(self, warn_minutes: int, crit_minutes: int) -> Tuple[int, str]:
        """A Nagios-style check: exit code and one-line message."""

def _cli_main(argv: Sequence[str]) -> int:
    """Runs the hgauto command line with argv (program name first); returns its exit code."""

@final
class Pipeline:
    """Steps over a matrix of dimensions, run by the embedded engine: workers per kind on
    demand, retries by step kind, a health check, one result tree and an HTML report. The
    definition format is schemas/pipeline.schema.json (TOML, JSON or a dict)."""

    @staticmethod
    def from_dict(
        definition: Mapping[str, object],
        functions: Optional[Mapping[str, Callable[[Dict[str, Any]], Optional[Mapping[str, object]]]]] = None,
    ) -> Pipeline:
        """A pipeline from a dict; `functions` maps the names function steps use to
        callables `f(ctx) -> dict | None` (ctx: step, task, cell, inputs, dependencies,
        artifacts, attempt). TimeoutError and ConnectionError are retried by the step's
        kind; any other exception fails the step for good."""
    @staticmethod
    def from_file(
        path: _StrPath,
        functions: Optional[Mapping[str, Callable[[Dict[str, Any]], Optional[Mapping[str, object]]]]] = None,
    ) -> Pipeline:
        """A pipeline from a .toml or .json file."""
    @staticmethod
    def schema() -> Dict[str, Any]:
        """The JSON schema of the definition format."""
    @property
    def name(self) -> str:
        """The pipeline's name."""
    def plan(
        self,
        *,
        selection: Optional[Mapping[str, object]] = None,
        inputs: Optional[Mapping[str, str]] = None,
    ) -> List[str]:
        """The task names a run would execute, in dependency order; starts nothing."""
    def run(
        self,
        out_dir: _StrPath,
        *,
        provider: Optional[Provider] = None,
        mode: Literal["normal", "fake", "local"] = "normal",
        selection: Optional[Mapping[str, object]] = None,
        inputs: Optional[Mapping[str, str]] = None,
        state_dir: Optional[_StrPath] = None,
        health_check: float = 300.0,
        idle_timeout: float = 600.0,
        retry_time_scale: float = 1.0,
    ) -> Dict[str, Any]:
        """Runs it; returns the result tree (schemas/pipeline-result.schema.json) and writes
        result.json, report.html and logs/ under out_dir. selection: {"steps": [...],
        "values": {dimension: [...]}}."""
    def export_asl(
        self,
        arn_prefix: str,
        *,
        selection: Optional[Mapping[str, object]] = None,
        health_check: float = 300.0,
    ) -> Dict[str, Any]:
        """The Amazon States Language definition for AWS Step Functions."""

@final
class GithubPrSource(JobSource):
    """Open pull requests of GitHub repositories as jobs, one per (head, check)."""

    def __new__(
        cls,
        state_dir: _StrPath,
        repositories: Mapping[str, Sequence[str]],
        *,
        api_url: Optional[str] = None,
        token: Optional[str] = None,
        token_env: Optional[str] = None,
        token_file: Optional[_StrPath] = None,
        trusted_users: Sequence[str] = ...,
        trusted_associations: Optional[Sequence[str]] = None,
        priority_labels: Optional[Mapping[str, int]] = None,
        details_url: Optional[str] = None,
        recheck_every: Optional[float] = None,
        poll_interval: float = 60.0,
        lease_ttl: float = 300.0,
        max_rate_limit_wait: float = 3600.0,
    ) -> Self: ...
    def watch(self, repository: str, checks: Sequence[str]) -> None:
        """Watches another repository ("owner/name") from the next round on."""
    def poll(self) -> int:
        """Runs a round now; returns how many jobs were added."""
    def stats(self) -> dict[str, int]:
        """What the source's GitHub client has done so far."""

@final
class DownloadReport:
    """What a download did."""

    @property
    def path(self) -> Path: ...
    @property
    def bytes(self) -> int: ...
    @property
    def sha256(self) -> str: ...
    @property
    def requests(self) -> int: ...
    @property
    def resumed(self) -> int: ...
    @property
    def restarted(self) -> int: ...

def download(
    url: str,
    dest: _StrPath,
    *,
    sha256: Optional[str] = None,
    size: Optional[int] = None,
    connect_timeout: float = 10.0,
    read_timeout: float = 30.0,
    retry: Optional[RetryPolicy] = None,
    extract_to: Optional[_StrPath] = None,
    format: Optional[str] = None,
    progress: Optional[Callable[[int, Optional[int]], object]] = None,
    max_unpacked_bytes: int = 8589934592,
    max_entries: int = 200000,
) -> DownloadReport:
    """Downloads url to dest: resumed after drops, checked against sha256/size, landed by
    atomic rename, optionally unpacked into extract_to (refused past max_unpacked_bytes
    or max_entries). progress(done, total) runs on this thread."""

@final
class CheckoutReport:
    """What a checkout did."""

    @property
    def revision(self) -> str: ...
    @property
    def store(self) -> Path: ...
    @property
    def cloned(self) -> bool: ...
    @property
    def pulled(self) -> bool: ...
    @property
    def recovered(self) -> List[str]: ...

def checkout(
    url: str,
    dest: _StrPath,
    *,
    vcs: str = "git",
    revision: Optional[str] = None,
    branch: Optional[str] = None,
    share_base: Optional[_StrPath] = None,
    purge: bool = False,
    retry: Optional[RetryPolicy] = None,
    progress: Optional[Callable[[str], object]] = None,
) -> CheckoutReport:
    """Checks out a full revision hash or a branch of a git or hg repository into dest
    (neither: the default branch, main for git and default for hg; both: an error),
    through a pooled store under share_base (default: the state dir's vcs-stores).
    progress(step) gets one line per step (cloning, pulling, updating) on this thread."""

@final
class VenvReport:
    """What a create_virtualenv did."""

    @property
    def path(self) -> Path: ...
    @property
    def python(self) -> Path: ...
    @property
    def python_version(self) -> str: ...
    @property
    def reused(self) -> bool: ...
    @property
    def installer(self) -> Optional[str]: ...

def create_virtualenv(
    path: _StrPath,
    *,
    python: Optional[_StrPath] = None,
    requirements: Sequence[_StrPath] = ...,
    constraints: Sequence[_StrPath] = ...,
    find_links: Sequence[str] = ...,
    index_url: Optional[str] = None,
    no_index: bool = False,
    installer: str = "auto",
    timeout: float = 1800.0,
    retry: Optional[RetryPolicy] = None,
    progress: Optional[Callable[[str], object]] = None,
) -> VenvReport:
    """Creates (or reuses, when its inputs are unchanged) a virtualenv and installs the
    requirements. installer: "auto" (uv if on PATH), "uv", "pip" or a uv binary's path.
    progress(step) gets one line per step (reusing, creating, installing)."""

# Feature "ssh" (hgauto.ssh)

@final
class SshMachine(Machine):
    """A machine reached over SSH, with a connection pool and hgauto's own known_hosts."""

    def __new__(
        cls,
        host: str,
        *,
        user: str,
        port: int = 22,
        key_file: Optional[_StrPath] = None,
        key: Optional[str] = None,
        passphrase: Optional[str] = None,
        agent: bool = False,
        host_keys: Union[str, bytes, None] = None,
        state_dir: Optional[_StrPath] = None,
        known_hosts: Optional[_StrPath] = None,
        connect_timeout: float = 10.0,
        max_connections: int = 8,
        platform: str = "linux",
        compress: bool = False,
        retry: Optional[RetryPolicy] = None,
        id: Optional[str] = None,
    ) -> Self: ...
    @property
    def address(self) -> str:
        """user@host:port."""
    def disconnect(self) -> None:
        """Closes idle connections (the next operation reconnects)."""

@final
class SshPublisher(Publisher):
    """Publishes over SFTP into a directory on an SSH machine."""

    def __new__(cls, machine: SshMachine, dir: str, *, mode: Optional[int] = None) -> Self: ...

# Feature "aws" (hgauto.aws)

@final
class Ec2Provider(Provider):
    """EC2 machines; keyword arguments are AwsConfig fields (region, endpoint_url, profile,
    prefix, state_dir, allowed_cidr, instance_type, linux_image, ssh_user, owner,
    allow_unknown_region, linux_access, windows_image, ssm_bucket, host_key_wait,
    api_timeout). Without region, the HGAUTO_* environment supplies the settings."""

    def __new__(cls, **settings: Union[str, bool, int, "os.PathLike[str]", None]) -> Self: ...
    def ssm_machine(self, instance_id: str, *, platform: str = "linux") -> SsmMachine:
        """An SSM machine for an instance of this provider."""
    @property
    def private_key_path(self) -> Path:
        """This state directory's key pair's private key (mode 0600)."""

@final
class SsmMachine(Machine):
    """An instance driven through SSM Run Command."""

    def __new__(
        cls,
        instance_id: str,
        *,
        platform: str = "linux",
        **settings: Union[str, bool, int, "os.PathLike[str]", None],
    ) -> Self: ...

@final
class SqsJobSource(JobSource):
    """Jobs from an SQS queue (hgauto.aws): the visibility timeout is the lease."""

    def __new__(
        cls,
        queue_url: str,
        *,
        dead_letter_url: Optional[str] = None,
        lease_ttl: float = 300.0,
        wait: float = 20.0,
        prefetch: int = 1,
        **settings: Union[str, bool, int, "os.PathLike[str]", None],
    ) -> Self: ...
    def enqueue(self, job: Job) -> None: ...
    def release_prefetched(self) -> None:
        """Gives back every prefetched message now (e.g. before the agent stops)."""
    @staticmethod
    def create_queues(
        name: str,
        max_receives: int = 5,
        **settings: Union[str, bool, int, "os.PathLike[str]", None],
    ) -> Tuple[str, str]:
        """Creates (or finds) the queue and its dead-letter queue; returns both URLs."""

@final
class S3Publisher(Publisher):
    """Publishes to s3://bucket/prefix/name with the sha256 checked by S3."""

    def __new__(
        cls,
        bucket: str,
        prefix: str = "",
        **settings: Union[str, bool, int, "os.PathLike[str]", None],
    ) -> Self: ...
