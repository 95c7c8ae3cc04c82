//! Error mapping: the one place where AWS SDK errors (ECS, EC2 and Auto Scaling) become
//! [`CloudError`]s.
//!
//! The category comes from the error code the service sent (`ProvideErrorMetadata::code`) and,
//! when the code is unknown, from the HTTP status. Failures that never reached the service
//! (timeouts, dropped connections) are transient; the SDK has already retried them. Auto Scaling
//! names an unknown group or instance with a `ValidationError` whose message says "not found":
//! [`from_autoscaling`] makes those `NotFound`.

use aws_sdk_ecs::config::http::HttpResponse;
use aws_sdk_ecs::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};

use crate::cloud::{CloudError, ErrorCategory};

/// The category of an AWS error response, from its error code and HTTP status.
///
/// Public so the mapping can be tested without a server.
pub fn error_category(code: Option<&str>, http_status: Option<u16>) -> ErrorCategory {
    if let Some(category) = code.and_then(category_of_code) {
        return category;
    }
    match http_status {
        Some(429) => ErrorCategory::Throttled,
        Some(401 | 403) => ErrorCategory::Denied,
        Some(404) => ErrorCategory::NotFound,
        Some(status) if status >= 500 => ErrorCategory::Transient,
        Some(_) => ErrorCategory::Invalid,
        // No response at all: the request never completed.
        None => ErrorCategory::Transient,
    }
}

fn category_of_code(code: &str) -> Option<ErrorCategory> {
    let category = match code {
        "AccessDenied"
        | "AccessDeniedException"
        | "UnauthorizedOperation"
        | "UnrecognizedClientException"
        | "InvalidClientTokenId"
        | "InvalidSignatureException"
        | "SignatureDoesNotMatch"
        | "ExpiredToken"
        | "ExpiredTokenException"
        | "MissingAuthenticationToken" => ErrorCategory::Denied,
        "ThrottlingException"
        | "Throttling"
        | "ThrottledException"
        | "RequestLimitExceeded"
        | "TooManyRequests"
        | "TooManyRequestsException" => ErrorCategory::Throttled,
        "ClusterNotFoundException"
        | "ResourceNotFound"
        | "ResourceNotFoundException"
        | "ServiceNotFoundException"
        | "TaskSetNotFoundException"
        | "InvalidNetworkInterfaceID.NotFound" => ErrorCategory::NotFound,
        "InvalidParameterException"
        | "ClientException"
        | "ValidationError"
        | "ValidationException"
        | "LimitExceededException"
        | "ConflictException"
        | "UnsupportedFeatureException"
        | "PlatformUnknownException"
        | "PlatformTaskDefinitionIncompatibilityException"
        | "ServiceNotActiveException"
        | "ClusterContainsTasksException"
        | "InvalidParameterValue"
        | "InvalidParameterCombination"
        | "MissingParameter"
        | "InvalidNetworkInterfaceID.Malformed"
        | "ResourceInUse"
        | "AlreadyExists"
        | "ServiceLinkedRoleFailure"
        | "InvalidNextToken" => ErrorCategory::Invalid,
        "ServerException"
        | "InternalFailure"
        | "InternalError"
        | "InternalServerError"
        | "ServiceUnavailable"
        | "ServiceUnavailableException"
        | "Unavailable"
        | "RequestTimeout"
        | "RequestTimeoutException"
        // Auto Scaling: another change to the group is under way.
        | "ResourceContention"
        | "ScalingActivityInProgress" => ErrorCategory::Transient,
        _ => return None,
    };
    Some(category)
}

/// Turns an SDK error of `operation` into a [`CloudError`].
pub(crate) fn from_sdk<E>(operation: &str, err: SdkError<E, HttpResponse>) -> CloudError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let (category, message) = match &err {
        SdkError::TimeoutError(_) => (
            ErrorCategory::Transient,
            "timed out (operation or attempt timeout)".to_string(),
        ),
        SdkError::DispatchFailure(_) => (
            ErrorCategory::Transient,
            format!("request not delivered: {}", DisplayErrorContext(&err)),
        ),
        // The request could not be built: a bug or an input the SDK rejects, never retryable.
        SdkError::ConstructionFailure(_) => (
            ErrorCategory::Invalid,
            format!("request not built: {}", DisplayErrorContext(&err)),
        ),
        _ => {
            let status = err.raw_response().map(|r| r.status().as_u16());
            let code = err.code();
            let category = error_category(code, status);
            let text = err.message().map(str::to_string).unwrap_or_else(|| {
                // No parsable message: say what the response was.
                format!("{}", DisplayErrorContext(&err))
            });
            let message = match (code, status) {
                (Some(code), _) => format!("{code}: {text}"),
                (None, Some(status)) => format!("HTTP {status}: {text}"),
                (None, None) => text,
            };
            (category, message)
        }
    };
    CloudError::new(category, operation, message)
}

/// Turns an Auto Scaling SDK error of `operation` into a [`CloudError`]: as [`from_sdk`], except
/// that a `ValidationError` about a group or instance Auto Scaling does not know is `NotFound`
/// (e.g. "AutoScalingGroup name not found - ...", "Instance Id not found - ...").
pub(crate) fn from_autoscaling<E>(operation: &str, err: SdkError<E, HttpResponse>) -> CloudError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let mut err = from_sdk(operation, err);
    if err.category == ErrorCategory::Invalid
        && err.message.starts_with("ValidationError")
        && err.message.to_ascii_lowercase().contains("not found")
    {
        err.category = ErrorCategory::NotFound;
    }
    err
}
