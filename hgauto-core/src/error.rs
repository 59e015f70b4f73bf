//! The one error type every hgauto trait returns.
//!
//! Each variant says *what* failed and *where* (machine id, resource id, path), and
//! [`Error::is_retryable`] says whether trying again can help. Backend crates keep their own
//! private error types and convert into this enum at the trait boundary.

use std::path::PathBuf;
use std::time::Duration;

use crate::exit_status::ExitStatus;

/// A boxed error from a lower layer (an SDK, libssh2, the OS).
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// The result type of every hgauto operation.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in hgauto, written for the person at the terminal.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The caller passed something unusable: a NUL byte in an argument, a bad artifact name,
    /// an environment variable name the target shell cannot express.
    #[error("invalid {what}: {reason}")]
    InvalidInput {
        /// What was wrong (e.g. "argument 3", "artifact name \"../x\"").
        what: String,
        /// Why it is unusable.
        reason: String,
    },

    /// A local or remote filesystem operation failed.
    #[error("{op} {path} on {machine}: {source}")]
    Io {
        /// The operation, e.g. "create directory", "read".
        op: &'static str,
        /// The path it was applied to.
        path: PathBuf,
        /// The machine (or "localhost") where it ran.
        machine: String,
        /// The underlying OS error.
        #[source]
        source: std::io::Error,
    },

    /// A command could not be started at all (program missing, permission denied).
    #[error("could not start `{program}` on {machine}: {source}")]
    Spawn {
        /// The machine id.
        machine: String,
        /// The program that failed to start.
        program: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },

    /// An operation ran past its deadline. Commands that time out have had their whole
    /// process tree killed.
    #[error("{what} on {machine} timed out after {:.1?}", after)]
    Timeout {
        /// The machine id (or resource id).
        machine: String,
        /// What was running, e.g. "command `make test`".
        what: String,
        /// The limit that was exceeded.
        after: Duration,
    },

    /// A command finished with a non-success status where success was required
    /// (see `Output::check`). A non-zero exit is otherwise an ordinary [`ExitStatus`].
    #[error(
        "`{command}` on {machine} failed with {status}{}",
        stderr_tail_display(stderr_tail)
    )]
    CommandFailed {
        /// The machine id.
        machine: String,
        /// The command line, for display.
        command: String,
        /// How it ended.
        status: ExitStatus,
        /// The last lines of its stderr.
        stderr_tail: String,
    },

    /// Content did not match its expected digest or size. Never retried: fetching the same
    /// bytes again would not make them right, and the caller must look.
    #[error("integrity check failed for {what}: expected {expected}, got {actual}")]
    Integrity {
        /// What was checked (path, artifact name, URL).
        what: String,
        /// The expected digest or size.
        expected: String,
        /// What was found.
        actual: String,
    },

    /// Something already exists with different content (e.g. an artifact name that was
    /// published before with another sha256). Publishing is idempotent, not overwriting.
    #[error("conflict at {what}: {reason}")]
    Conflict {
        /// Where the conflict is.
        what: String,
        /// What differs.
        reason: String,
    },

    /// A machine, resource, file or job that does not exist.
    #[error("{what} not found")]
    NotFound {
        /// What was looked for.
        what: String,
    },

    /// The backend cannot do this at all (e.g. file transfer over SSM without a bucket).
    #[error("{backend} does not support {what}")]
    NotSupported {
        /// The backend or machine.
        backend: String,
        /// The unsupported operation.
        what: String,
    },

    /// The connection to a machine failed or dropped. `may_have_run` is true when a
    /// non-idempotent command had already been sent: it may or may not have executed.
    #[error("connection to {machine} failed{}: {source}", if *may_have_run { " (the command may have run)" } else { "" })]
    Connection {
        /// The machine id or address.
        machine: String,
        /// Whether a command may have executed before the failure.
        may_have_run: bool,
        /// The underlying transport error.
        #[source]
        source: BoxError,
    },

    /// A host presented a key we do not trust: unknown (in strict mode) or different from
    /// the one recorded. Never retried: this is what a man-in-the-middle looks like.
    #[error("host key for {host} {reason}: presented {actual}{}", expected.as_ref().map(|e| format!(", expected {e}")).unwrap_or_default())]
    HostKey {
        /// The host (and port).
        host: String,
        /// "is unknown" or "has changed" (or why the pinned key did not match).
        reason: String,
        /// Fingerprint of the key we expected, if any.
        expected: Option<String>,
        /// Fingerprint of the key the host presented.
        actual: String,
    },

    /// Authentication was refused. Never retried: the same credentials fail again.
    #[error("authentication as {user} on {machine} failed: {reason}")]
    Auth {
        /// The machine id or address.
        machine: String,
        /// The user name.
        user: String,
        /// What the server or agent said.
        reason: String,
    },

    /// Creating or destroying machines or their supporting resources failed.
    #[error("provider {provider} could not {action} {resource}: {reason}")]
    Provision {
        /// The provider name (e.g. "local", "ec2").
        provider: String,
        /// What it was doing ("create", "terminate", "build image").
        action: &'static str,
        /// The resource id, or a description when it has none yet.
        resource: String,
        /// Why it failed.
        reason: String,
        /// Whether trying again can help (throttling: yes; bad instance type: no).
        retryable: bool,
    },

    /// A service API (EC2, IAM, SSM, S3...) failed a call. `class` says what kind of failure
    /// it is and decides whether it is retried; the service's own error is the source.
    #[error("{service} could not {action} {resource}: {code}: {message}")]
    Api {
        /// The service ("ec2", "s3"...).
        service: &'static str,
        /// What was being done ("run instances", "put object").
        action: &'static str,
        /// The resource id, or a description when it has none.
        resource: String,
        /// What kind of failure this is.
        class: ApiErrorClass,
        /// The service's error code (`InvalidKeyPair.NotFound`, `AccessDenied`...), or the
        /// kind of transport failure.
        code: Box<str>,
        /// The service's message.
        message: Box<str>,
        /// The SDK's error.
        #[source]
        source: Option<BoxError>,
    },

    /// A job's lease ran out, or the job went to another holder: whoever holds it now does
    /// the work, so this holder must stop.
    #[error("lease on job {job} from {source_name} is lost: {reason}")]
    LeaseLost {
        /// The job id.
        job: String,
        /// The job source's name.
        source_name: String,
        /// What happened to it.
        reason: String,
    },

    /// The process received SIGINT or SIGTERM; machines were cleaned up.
    #[error("interrupted by signal {signal}")]
    Interrupted {
        /// The signal number.
        signal: i32,
    },

    /// A pipeline ran to the end and some of its tasks failed. The other tasks' results
    /// are in the run's result tree; `summary` lists every failed task with its cell and
    /// machine.
    #[error("{summary}")]
    StepsFailed {
        /// The pipeline's name.
        pipeline: String,
        /// How many tasks failed.
        failed: usize,
        /// One line per failed task.
        summary: String,
    },

    /// An error from a backend that fits no other variant.
    #[error("{backend}: {message}")]
    Backend {
        /// The backend name.
        backend: String,
        /// A description for the terminal.
        message: String,
        /// Whether trying again can help.
        retryable: bool,
        /// The underlying error, if any.
        #[source]
        source: Option<BoxError>,
    },
}

/// What kind of failure an [`Error::Api`] is, from the service's error code and HTTP status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ApiErrorClass {
    /// The resource does not exist (a missing key, instance, role...).
    NotFound,
    /// The credentials were refused or lack a permission.
    Denied,
    /// The service asks us to slow down. Retried.
    Throttled,
    /// The service or the way to it failed for now (5xx, a timeout, a dropped
    /// connection). Retried.
    Unavailable,
    /// It exists already, or changed under us (a duplicate name, a failed precondition).
    Conflict,
    /// The request itself is wrong (a bad parameter).
    Invalid,
    /// The service cannot provide it (no capacity, a limit reached).
    Provisioning,
    /// Anything else.
    Other,
}

impl std::fmt::Display for ApiErrorClass {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ApiErrorClass::NotFound => "not found",
            ApiErrorClass::Denied => "denied",
            ApiErrorClass::Throttled => "throttled",
            ApiErrorClass::Unavailable => "unavailable",
            ApiErrorClass::Conflict => "conflict",
            ApiErrorClass::Invalid => "invalid request",
            ApiErrorClass::Provisioning => "provisioning",
            ApiErrorClass::Other => "other",
        })
    }
}

fn stderr_tail_display(tail: &str) -> String {
    if tail.trim().is_empty() {
        String::new()
    } else {
        format!("; stderr ends with:\n{}", tail.trim_end())
    }
}

impl Error {
    /// Whether trying the same operation again can reasonably succeed.
    ///
    /// Integrity failures, conflicts, bad input and unsupported operations never are.
    /// Connection failures are, unless the command may already have run.
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Io { source, .. } => is_transient_io(source),
            Error::Connection { may_have_run, .. } => !may_have_run,
            Error::Timeout { .. } => true,
            Error::Provision { retryable, .. } | Error::Backend { retryable, .. } => *retryable,
            Error::Api { class, .. } => {
                matches!(class, ApiErrorClass::Throttled | ApiErrorClass::Unavailable)
            }
            Error::InvalidInput { .. }
            | Error::Spawn { .. }
            | Error::CommandFailed { .. }
            | Error::Integrity { .. }
            | Error::Conflict { .. }
            | Error::NotFound { .. }
            | Error::NotSupported { .. }
            | Error::HostKey { .. }
            | Error::Auth { .. }
            | Error::LeaseLost { .. }
            | Error::StepsFailed { .. }
            | Error::Interrupted { .. } => false,
        }
    }

    /// True for [`Error::NotFound`] and for an [`Error::Api`] of class
    /// [`ApiErrorClass::NotFound`].
    pub fn is_not_found(&self) -> bool {
        matches!(
            self,
            Error::NotFound { .. }
                | Error::Api {
                    class: ApiErrorClass::NotFound,
                    ..
                }
        )
    }

    /// The class of an [`Error::Api`].
    pub fn api_class(&self) -> Option<ApiErrorClass> {
        match self {
            Error::Api { class, .. } => Some(*class),
            _ => None,
        }
    }

    /// Shorthand for an [`Error::InvalidInput`].
    pub fn invalid(what: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::InvalidInput {
            what: what.into(),
            reason: reason.into(),
        }
    }

    /// Shorthand for an [`Error::Io`].
    pub fn io(
        op: &'static str,
        path: impl Into<PathBuf>,
        machine: impl Into<String>,
        source: std::io::Error,
    ) -> Self {
        Error::Io {
            op,
            path: path.into(),
            machine: machine.into(),
            source,
        }
    }
}

fn is_transient_io(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        e.kind(),
        Interrupted
            | WouldBlock
            | TimedOut
            | ConnectionReset
            | ConnectionAborted
            | ConnectionRefused
            | BrokenPipe
            | UnexpectedEof
    )
}

/// Extension for attaching location to `std::io::Result`s.
pub trait IoContext<T> {
    /// Wraps an I/O error with the operation, path and machine.
    fn at(self, op: &'static str, path: &std::path::Path, machine: &str) -> Result<T>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn at(self, op: &'static str, path: &std::path::Path, machine: &str) -> Result<T> {
        self.map_err(|e| Error::io(op, path, machine, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integrity_is_never_retryable() {
        let e = Error::Integrity {
            what: "x".into(),
            expected: "a".into(),
            actual: "b".into(),
        };
        assert!(!e.is_retryable());
    }

    #[test]
    fn connection_retryable_unless_command_may_have_run() {
        let mk = |may_have_run| Error::Connection {
            machine: "m".into(),
            may_have_run,
            source: "reset".into(),
        };
        assert!(mk(false).is_retryable());
        assert!(!mk(true).is_retryable());
        assert!(mk(true).to_string().contains("may have run"));
    }

    #[test]
    fn command_failed_message_names_machine_and_stderr() {
        let e = Error::CommandFailed {
            machine: "local-abc".into(),
            command: "make test".into(),
            status: ExitStatus::Code(2),
            stderr_tail: "boom\n".into(),
        };
        let s = e.to_string();
        assert!(s.contains("local-abc") && s.contains("make test") && s.contains("boom"));
        assert!(s.contains("exit code 2"), "{s}");
    }
}
