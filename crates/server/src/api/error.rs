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

/// Longest status message rapport answers with, in bytes (before the `… (N bytes cut)` note): a
/// message travels in the `grpc-message` trailer, and one past the peer's metadata limit (a quoted
/// 32 KB config line) made the whole answer fail with RESOURCE_EXHAUSTED "Stream removed".
pub const MAX_STATUS_MESSAGE_BYTES: usize = 1024;

impl From<ApiError> for Status {
    fn from(error: ApiError) -> Self {
        let (code, message) = match error {
            ApiError::InvalidArgument(message) => (tonic::Code::InvalidArgument, message),
            ApiError::NotFound(message) => (tonic::Code::NotFound, message),
            ApiError::ResourceExhausted(message) => (tonic::Code::ResourceExhausted, message),
            ApiError::Unauthenticated(message) => (tonic::Code::Unauthenticated, message),
            ApiError::PermissionDenied(message) => (tonic::Code::PermissionDenied, message),
            ApiError::FailedPrecondition(message) => (tonic::Code::FailedPrecondition, message),
            ApiError::DeadlineExceeded(message) => (tonic::Code::DeadlineExceeded, message),
            ApiError::Unavailable(message) => (tonic::Code::Unavailable, message),
            ApiError::Internal(message) => (tonic::Code::Internal, message),
        };
        Status::new(
            code,
            rapport_core::domain::bounded_text(&message, MAX_STATUS_MESSAGE_BYTES),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 24 item 13: every status message is bounded, whatever it quotes.
    #[test]
    fn status_messages_are_bounded() {
        let status = Status::from(ApiError::InvalidArgument(format!(
            "customer_id: {}",
            "é".repeat(20_000)
        )));
        assert_eq!(status.code(), tonic::Code::InvalidArgument);
        assert!(status.message().starts_with("customer_id: é"));
        assert!(
            status.message().len() <= MAX_STATUS_MESSAGE_BYTES + 32,
            "{}",
            status.message().len()
        );
        assert!(
            status.message().ends_with("bytes cut)"),
            "{}",
            status.message()
        );
        let short = Status::from(ApiError::NotFound("customer \"c1\"".into()));
        assert_eq!(short.message(), "customer \"c1\"");
    }
}
