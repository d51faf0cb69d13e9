//! The one map from rapport's errors to gRPC status codes: every `Status` the server answers with
//! is built here, from an [`ApiError`] (tonic's own transport errors and the codec's undecodable
//! message aside, which never reach rapport's code).

use crate::api::convert::FieldError;
use tonic::Status;

/// Transport-neutral request errors.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// Bad input; the message names the field.
    #[error("{0}")]
    InvalidArgument(String),
    /// Nothing of that name.
    #[error("{0}")]
    NotFound(String),
    /// Over a limit, or the server is overloaded; the caller may retry later.
    #[error("{0}")]
    ResourceExhausted(String),
    /// No known credentials on the call.
    #[error("{0}")]
    Unauthenticated(String),
    /// The credentials do not cover what the call names (a tenant).
    #[error("{0}")]
    PermissionDenied(String),
    /// The request contradicts the state it would change (an identity rule refused a merge).
    #[error("{0}")]
    FailedPrecondition(String),
    /// The call waited past a limit (an idle stream).
    #[error("{0}")]
    DeadlineExceeded(String),
    /// The server cannot take the call now (shutting down, a backend down); retry elsewhere.
    #[error("{0}")]
    Unavailable(String),
    /// A server-side failure.
    #[error("{0}")]
    Internal(String),
}

impl From<FieldError> for ApiError {
    fn from(error: FieldError) -> Self {
        ApiError::InvalidArgument(error.to_string())
    }
}

impl From<crate::engine::ClassifyError> for ApiError {
    fn from(error: crate::engine::ClassifyError) -> Self {
        match error {
            crate::engine::ClassifyError::Overloaded(overloaded) => {
                ApiError::ResourceExhausted(overloaded.to_string())
            }
            crate::engine::ClassifyError::Failed => ApiError::Internal(error.to_string()),
        }
    }
}

impl From<ApiError> for Status {
    fn from(error: ApiError) -> Self {
        match error {
            ApiError::InvalidArgument(message) => Status::invalid_argument(message),
            ApiError::NotFound(message) => Status::not_found(message),
            ApiError::ResourceExhausted(message) => Status::resource_exhausted(message),
            ApiError::Unauthenticated(message) => Status::unauthenticated(message),
            ApiError::PermissionDenied(message) => Status::permission_denied(message),
            ApiError::FailedPrecondition(message) => Status::failed_precondition(message),
            ApiError::DeadlineExceeded(message) => Status::deadline_exceeded(message),
            ApiError::Unavailable(message) => Status::unavailable(message),
            ApiError::Internal(message) => Status::internal(message),
        }
    }
}
