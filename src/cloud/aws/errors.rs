//! Error mapping: the one place where AWS SDK errors (ECS, EC2 and Auto Scaling) become
//! [`CloudError`]s.
//!
//! The category comes from the error code the service sent (`ProvideErrorMetadata::code`) and,
//! when the code is unknown, from the HTTP status. Failures that never reached the service
//! (timeouts, dropped connections) are transient; the SDK has already retried them.
//!
//! The category never comes from the message text. Where a code is too broad to say that the
//! resource does not exist (Auto Scaling's `ValidationError`, ECS's
//! `InvalidParameterException` for StopTask), the caller confirms with a read (see `confirm`)
//! and says `NotFound` only when the read does; where one operation's code means "not found"
//! only for that operation (DescribeInstanceTypes' `InvalidInstanceType`), the caller names it
//! with [`from_sdk_naming`].

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
        | "MissingAuthenticationToken"
        | "AuthFailure" => ErrorCategory::Denied,
        "ThrottlingException"
        | "Throttling"
        | "ThrottledException"
        | "RequestLimitExceeded"
        | "TooManyRequests"
        | "TooManyRequestsException"
        | "ProvisionedThroughputExceededException" => ErrorCategory::Throttled,
        "ClusterNotFoundException"
        | "ResourceNotFound"
        | "ResourceNotFoundException"
        | "ServiceNotFoundException"
        | "TaskSetNotFoundException"
        | "InvalidNetworkInterfaceID.NotFound"
        | "InvalidInstanceID.NotFound"
        | "InvalidLaunchTemplateId.NotFound"
        | "InvalidLaunchTemplateId.VersionNotFound"
        | "InvalidLaunchTemplateName.NotFoundException" => ErrorCategory::NotFound,
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
        | "InvalidInstanceID.Malformed"
        | "InvalidLaunchTemplateId.Malformed"
        | "InvalidInstanceType"
        | "UnsupportedOperation"
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

/// The error code an Auto Scaling call answers for anything it refuses as invalid, an unknown
/// group or instance included: too broad to decide `NotFound` by itself.
pub(crate) const AUTO_SCALING_VALIDATION: &str = "ValidationError";
/// The error code ECS answers StopTask with for an unknown task, among other invalid requests.
pub(crate) const ECS_INVALID_PARAMETER: &str = "InvalidParameterException";

/// As [`from_sdk`], except that the codes in `not_found` are `NotFound`: codes whose meaning
/// is "no such resource" for this one operation (DescribeInstanceTypes answers an unknown type
/// with `InvalidInstanceType`).
pub(crate) fn from_sdk_naming<E>(
    operation: &str,
    err: SdkError<E, HttpResponse>,
    not_found: &[&str],
) -> CloudError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let named = err.code().is_some_and(|code| not_found.contains(&code));
    let mut err = from_sdk(operation, err);
    if named {
        err.category = ErrorCategory::NotFound;
    }
    err
}
