//! Turning AWS SDK errors into hgauto's error: what failed, on which resource, and whether
//! trying again can help.

use aws_sdk_ec2::error::{ProvideErrorMetadata, SdkError};
use hgauto_core::Error;

/// Error codes that mean "slow down / try later".
const THROTTLING: &[&str] = &[
    "RequestLimitExceeded",
    "Throttling",
    "ThrottlingException",
    "SlowDown",
    "ServiceUnavailable",
    "InternalError",
    "RequestTimeout",
    "Unavailable",
];

/// Converts an SDK error from `service` while doing `action` on `resource`.
pub(crate) fn sdk_error<E, R>(
    service: &str,
    action: &'static str,
    resource: &str,
    err: SdkError<E, R>,
) -> Error
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    let (message, retryable) = match &err {
        SdkError::ServiceError(s) => {
            let code = s.err().code().unwrap_or("Unknown");
            let msg = s.err().message().unwrap_or("");
            (format!("{code}: {msg}"), THROTTLING.contains(&code))
        }
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => (
            format!("{}", hgauto_core::error::BoxError::from(format!("{err:?}"))),
            true,
        ),
        _ => (format!("{err}"), false),
    };
    Error::Provision {
        provider: service.to_owned(),
        action,
        resource: resource.to_owned(),
        reason: message,
        retryable,
    }
}
