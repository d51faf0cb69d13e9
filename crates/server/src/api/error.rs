//! The one map from rapport's errors to gRPC status codes.

use crate::api::convert::FieldError;
use tonic::Status;

/// Transport-neutral request errors.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// Bad input; the message names the field.
    #[error("{0}")]
    InvalidArgument(String),
    #[error("{0}")]
    NotFound(String),
    /// Over a limit; the caller may retry later.
    #[error("{0}")]
    ResourceExhausted(String),
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
            ApiError::Internal(message) => Status::internal(message),
        }
    }
}
