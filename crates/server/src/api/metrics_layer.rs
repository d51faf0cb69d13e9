//! gRPC request metrics for every call, recorded in one tower layer around all services.
//!
//! A call is counted once, when its outcome is known, with its real method and status code:
//! from the response headers for calls answered without a body (refused by authentication or
//! admission, undecodable, an error before the first message), from the trailers for the rest
//! (a stream's code comes at its end), `CANCELLED` when the client goes away first. Handlers and
//! interceptors record nothing themselves, so a refusal anywhere in the stack is counted the same
//! way. Method labels are only those the server serves (`unknown` for any other path), so a
//! caller cannot grow the label set.

use http_body::{Body, Frame};
use pin_project_lite::pin_project;
use std::collections::HashSet;
use std::future::Future;
use std::pin::Pin;
use std::sync::OnceLock;
use std::task::{Context, Poll};
use std::time::Instant;

/// Records `rapport_grpc_requests_total` and `rapport_grpc_request_duration_seconds` for every
/// call through the server.
#[derive(Clone, Copy, Debug, Default)]
pub struct GrpcMetricsLayer;

impl<S> tower_layer::Layer<S> for GrpcMetricsLayer {
    type Service = GrpcMetrics<S>;

    fn layer(&self, inner: S) -> Self::Service {
        GrpcMetrics { inner }
    }
}

/// The service [`GrpcMetricsLayer`] wraps around another.
#[derive(Clone, Debug)]
pub struct GrpcMetrics<S> {
    inner: S,
}

impl<S, RequestBody, ResponseBody> tower_service::Service<http::Request<RequestBody>>
    for GrpcMetrics<S>
where
    S: tower_service::Service<http::Request<RequestBody>, Response = http::Response<ResponseBody>>,
    S::Future: Send + 'static,
{
    type Response = http::Response<MeteredBody<ResponseBody>>;
    type Error = S::Error;
    type Future =
        Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send + 'static>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<RequestBody>) -> Self::Future {
        let mut call = CallRecord {
            method: method_label(request.uri().path()),
            started: Instant::now(),
            done: false,
        };
        let response = self.inner.call(request);
        Box::pin(async move {
            match response.await {
                Ok(response) => {
                    let (parts, body) = response.into_parts();
                    // A trailers-only answer (an error before any message) has its status here.
                    if let Some(code) = grpc_status(&parts.headers) {
                        call.finish(code);
                    }
                    Ok(http::Response::from_parts(
                        parts,
                        MeteredBody { inner: body, call },
                    ))
                }
                Err(error) => {
                    call.finish(tonic::Code::Internal);
                    Err(error)
                }
            }
        })
    }
}

pin_project! {
    /// A response body that records its call when the trailers (or the end) pass through.
    pub struct MeteredBody<B> {
        #[pin]
        inner: B,
        call: CallRecord,
    }
}

impl<B: Body> Body for MeteredBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        let polled = this.inner.poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(code) = frame.trailers_ref().and_then(grpc_status) {
                    this.call.finish(code);
                }
            }
            Poll::Ready(Some(Err(_))) => this.call.finish(tonic::Code::Internal),
            // Ended without a status: gRPC reads that as UNKNOWN.
            Poll::Ready(None) => this.call.finish(tonic::Code::Unknown),
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// One call's method and start, recorded exactly once.
struct CallRecord {
    method: &'static str,
    started: Instant,
    done: bool,
}

impl CallRecord {
    fn finish(&mut self, code: tonic::Code) {
        if !self.done {
            self.done = true;
            rapport_core::telemetry::grpc_request(
                self.method,
                crate::api::code_name(code),
                self.started.elapsed(),
            );
        }
    }
}

impl Drop for CallRecord {
    fn drop(&mut self) {
        // The response was dropped before its status was sent: the client went away.
        self.finish(tonic::Code::Cancelled);
    }
}

fn grpc_status(headers: &http::HeaderMap) -> Option<tonic::Code> {
    let value = headers.get("grpc-status")?.to_str().ok()?;
    Some(tonic::Code::from_i32(value.trim().parse().ok()?))
}

/// The method name of a path the server serves (`/rapport.v1.ScoringService/TopCustomers` →
/// `TopCustomers`), `unknown` for any other.
fn method_label(path: &str) -> &'static str {
    static METHODS: OnceLock<HashSet<&'static str>> = OnceLock::new();
    let methods = METHODS.get_or_init(served_methods);
    let Some((service, method)) = path.trim_start_matches('/').split_once('/') else {
        return "unknown";
    };
    methods
        .get(format!("{service}/{method}").as_str())
        .and_then(|known| known.split_once('/'))
        .map_or("unknown", |(_, method)| method)
}

/// `service/method` of everything served: rapport's services (from the compiled descriptors),
/// health and reflection. Built once; leaked so labels are `&'static`.
fn served_methods() -> HashSet<&'static str> {
    use prost::Message;
    let mut methods: HashSet<&'static str> = [
        "grpc.health.v1.Health/Check",
        "grpc.health.v1.Health/Watch",
        "grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
        "grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
    ]
    .into_iter()
    .collect();
    if let Ok(files) = prost_types::FileDescriptorSet::decode(crate::pb::FILE_DESCRIPTOR_SET) {
        for file in files.file {
            let package = file.package.unwrap_or_default();
            for service in file.service {
                let service_name = format!("{package}.{}", service.name.unwrap_or_default());
                for method in service.method {
                    let full = format!("{service_name}/{}", method.name.unwrap_or_default());
                    methods.insert(Box::leak(full.into_boxed_str()));
                }
            }
        }
    }
    methods
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_served_methods_only() {
        assert_eq!(
            method_label("/rapport.v1.ScoringService/TopCustomers"),
            "TopCustomers"
        );
        assert_eq!(method_label("/rapport.v1.IngestService/Ingest"), "Ingest");
        assert_eq!(method_label("/grpc.health.v1.Health/Check"), "Check");
        assert_eq!(method_label("/rapport.v1.ScoringService/Nope"), "unknown");
        assert_eq!(method_label("/evil/AAAA"), "unknown");
        assert_eq!(method_label("no-slash"), "unknown");
    }

    #[test]
    fn status_is_read_from_headers_or_trailers() {
        let mut headers = http::HeaderMap::new();
        assert_eq!(grpc_status(&headers), None);
        headers.insert("grpc-status", http::HeaderValue::from_static("16"));
        assert_eq!(grpc_status(&headers), Some(tonic::Code::Unauthenticated));
    }
}
