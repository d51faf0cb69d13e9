//! gRPC transport: tonic services, proto conversion and the error-to-status map. No scoring logic.

pub mod access;
pub mod codec;
pub mod convert;
pub mod error;
mod ingest;
mod scoring;
mod sentiment;

pub use ingest::IngestApi;
pub use scoring::ScoringApi;
pub use sentiment::SentimentApi;

use std::time::Instant;
use tonic::Status;

/// Records a finished call's status and duration, passing the result through.
#[allow(clippy::result_large_err)] // tonic's Status is what every handler returns anyway.
fn observed<T>(
    method: &'static str,
    started: Instant,
    result: Result<T, Status>,
) -> Result<T, Status> {
    let code = match &result {
        Ok(_) => tonic::Code::Ok,
        Err(status) => status.code(),
    };
    crate::telemetry::grpc_request(method, code, started.elapsed());
    result
}
