//! Turning AWS SDK errors into hgauto's error: what failed, on which resource, what kind of
//! failure it is (classified by the service's error code and HTTP status, see
//! [`classify`]), with the SDK's error kept as the source. Whether an operation is retried
//! follows from the class (throttled and unavailable are; nothing else is).

use aws_sdk_ec2::config::http::HttpResponse;
use aws_sdk_ec2::error::{ProvideErrorMetadata, SdkError};
use hgauto_core::{ApiErrorClass, Error};

/// The class of a service error `code` (with the HTTP `status` when the code says nothing).
pub(crate) fn classify(code: &str, status: Option<u16>) -> ApiErrorClass {
    use ApiErrorClass as C;
    const NOT_FOUND: &[&str] = &[
        "NoSuchEntity",
        "NoSuchKey",
        "NoSuchBucket",
        "NotFound",
        "InvalidInstanceId",
        "InvalidCommandId",
        "InvocationDoesNotExist",
        "ResourceNotFoundException",
        "ParameterNotFound",
        "AssociationDoesNotExist",
    ];
    const DENIED: &[&str] = &[
        "AccessDenied",
        "AccessDeniedException",
        "UnauthorizedOperation",
        "AuthFailure",
        "InvalidClientTokenId",
        "SignatureDoesNotMatch",
        "ExpiredToken",
        "ExpiredTokenException",
        "UnrecognizedClientException",
        "InvalidAccessKeyId",
        "OptInRequired",
        "Blocked",
    ];
    const THROTTLED: &[&str] = &[
        "RequestLimitExceeded",
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "SlowDown",
        "TooManyRequestsException",
        "RequestThrottled",
        "RequestThrottledException",
        "PriorRequestNotComplete",
    ];
    const UNAVAILABLE: &[&str] = &[
        "ServiceUnavailable",
        "ServiceUnavailableException",
        "InternalError",
        "InternalFailure",
        "InternalServerError",
        "RequestTimeout",
        "RequestTimeoutException",
        "Unavailable",
    ];
    const CONFLICT: &[&str] = &[
        "EntityAlreadyExists",
        "BucketAlreadyOwnedByYou",
        "BucketAlreadyExists",
        "ConditionalRequestConflict",
        "PreconditionFailed",
        "IdempotentParameterMismatch",
        "IncorrectInstanceState",
        "IncorrectState",
        "DependencyViolation",
        "ConcurrentModification",
        "DeleteConflict",
    ];
    const PROVISIONING: &[&str] = &[
        "InsufficientInstanceCapacity",
        "InsufficientCapacity",
        "InstanceLimitExceeded",
        "VcpuLimitExceeded",
        "MaxSpotInstanceCountExceeded",
        "LimitExceeded",
        "ResourceLimitExceeded",
        "Unsupported",
        "InsufficientFreeAddressesInSubnet",
    ];
    let is = |list: &[&str]| list.contains(&code);
    if code.ends_with(".NotFound") || code.ends_with(".Malformed.NotFound") || is(NOT_FOUND) {
        C::NotFound
    } else if code.ends_with(".Duplicate") || code.ends_with(".InUse") || is(CONFLICT) {
        C::Conflict
    } else if is(DENIED) {
        C::Denied
    } else if is(THROTTLED) {
        C::Throttled
    } else if is(UNAVAILABLE) {
        C::Unavailable
    } else if is(PROVISIONING) {
        C::Provisioning
    } else if code.starts_with("Invalid")
        || code.starts_with("Validation")
        || code.starts_with("Missing")
        || code == "UnsupportedOperation"
    {
        C::Invalid
    } else {
        match status {
            Some(404) => C::NotFound,
            Some(401 | 403) => C::Denied,
            Some(409 | 412) => C::Conflict,
            Some(429) => C::Throttled,
            Some(s) if s >= 500 => C::Unavailable,
            Some(400) => C::Invalid,
            _ => C::Other,
        }
    }
}

/// Converts an SDK error from `service` while doing `action` on `resource`.
pub(crate) fn sdk_error<E>(
    service: &'static str,
    action: &'static str,
    resource: &str,
    err: SdkError<E, HttpResponse>,
) -> Error
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let (class, code, message) = match &err {
        SdkError::ServiceError(s) => {
            let status = s.raw().status().as_u16();
            let code = s.err().code().unwrap_or("").to_owned();
            let message = s.err().message().unwrap_or("").to_owned();
            let shown = if code.is_empty() {
                format!("HTTP {status}")
            } else {
                code.clone()
            };
            (classify(&code, Some(status)), shown, message)
        }
        SdkError::TimeoutError(_) => (
            ApiErrorClass::Unavailable,
            "timeout".to_owned(),
            "the call ran past its timeout".to_owned(),
        ),
        SdkError::DispatchFailure(d) => (
            ApiErrorClass::Unavailable,
            "dispatch failure".to_owned(),
            d.as_connector_error()
                .map(|c| c.to_string())
                .unwrap_or_else(|| "the request could not be sent".to_owned()),
        ),
        SdkError::ResponseError(_) => (
            ApiErrorClass::Unavailable,
            "response error".to_owned(),
            "the response could not be read".to_owned(),
        ),
        _ => (ApiErrorClass::Other, "error".to_owned(), err.to_string()),
    };
    Error::Api {
        service,
        action,
        resource: resource.to_owned(),
        class,
        code: code.into(),
        message: message.into(),
        source: Some(Box::new(err)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hgauto_core::ApiErrorClass as C;

    #[test]
    fn codes_are_classified() {
        for (code, status, want) in [
            ("InvalidInstanceID.NotFound", 400, C::NotFound),
            ("NoSuchKey", 404, C::NotFound),
            ("", 404, C::NotFound),
            ("NoSuchEntity", 404, C::NotFound),
            ("AccessDenied", 403, C::Denied),
            ("UnauthorizedOperation", 403, C::Denied),
            ("", 403, C::Denied),
            ("RequestLimitExceeded", 503, C::Throttled),
            ("ThrottlingException", 400, C::Throttled),
            ("InternalError", 500, C::Unavailable),
            ("", 502, C::Unavailable),
            ("InvalidGroup.Duplicate", 400, C::Conflict),
            ("InvalidKeyPair.Duplicate", 400, C::Conflict),
            ("ConditionalRequestConflict", 409, C::Conflict),
            ("EntityAlreadyExists", 409, C::Conflict),
            ("InsufficientInstanceCapacity", 500, C::Provisioning),
            ("InvalidParameterValue", 400, C::Invalid),
            ("InvalidAMIID.Malformed", 400, C::Invalid),
            ("Whatever", 400, C::Invalid),
            ("Whatever", 200, C::Other),
        ] {
            assert_eq!(classify(code, Some(status)), want, "{code} {status}");
        }
    }
}
