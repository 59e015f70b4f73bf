//! Exit codes, as a documented table.

use hgauto_core::Error;

/// The exit-code table (also the end of `hgauto --help`).
pub const EXIT_CODES: &str = "Exit codes:
  0       success
  1-125   run, run-tests, build: the remote command's own exit code
  1       other commands: the work failed (a pipeline task, a release destination)
  2       bad usage or configuration (unknown flag, bad TOML, missing file); nothing was provisioned
  3       infrastructure error (provisioning, network, cloud API, timeout)
  128+N   the remote command died of signal N; 130 when hgauto was interrupted (Ctrl-C)";

/// The codes hgauto itself chooses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(i32)]
pub enum ExitCode {
    /// Success.
    Ok = 0,
    /// The work failed.
    Failed = 1,
    /// Bad usage or configuration.
    Usage = 2,
    /// Provisioning, network or API trouble.
    Infrastructure = 3,
}

/// The exit code for an error that ended a command.
pub fn code_for(e: &Error) -> i32 {
    match e {
        Error::InvalidInput { .. } | Error::NotSupported { .. } => ExitCode::Usage as i32,
        Error::Interrupted { signal } => 128 + signal,
        Error::CommandFailed { status, .. } => status_code(*status),
        Error::StepsFailed { .. } | Error::Integrity { .. } | Error::Conflict { .. } => {
            ExitCode::Failed as i32
        }
        _ => ExitCode::Infrastructure as i32,
    }
}

/// A remote command's status as an exit code: its own code (clamped to 1-255), or 128+N
/// for signal N.
pub(super) fn status_code(status: hgauto_core::ExitStatus) -> i32 {
    match status {
        hgauto_core::ExitStatus::Code(0) => 0,
        hgauto_core::ExitStatus::Code(c) => {
            if (1..=255).contains(&c) {
                c
            } else {
                1
            }
        }
        hgauto_core::ExitStatus::Signal(s) => 128 + s,
    }
}
