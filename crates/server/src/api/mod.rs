//! gRPC transport: tonic services, proto conversion and the error-to-status map. No scoring logic.

pub mod access;
pub mod admin;
pub mod codec;
pub mod convert;
pub mod error;
mod identity;
mod ingest;
pub mod ingest_pool;
mod intent;
pub mod metrics_layer;
pub mod reasons;
mod routing;
pub mod scan_gate;
pub(crate) mod scoring;
mod sentiment;

pub use admin::AdminApi;
pub use identity::IdentityApi;
pub use ingest::{Admission, IngestApi};
pub use intent::IntentApi;
pub use routing::RoutingApi;
pub use scoring::ScoringApi;
pub use sentiment::SentimentApi;

/// The name of a status code as gRPC spells it (`INVALID_ARGUMENT`), for metric labels.
pub fn code_name(code: tonic::Code) -> &'static str {
    use tonic::Code;
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}
