# rapport container image.
#   docker build -t rapport .                 # default image (fast + VADER sentiment, no libtorch)
#   docker run -p 50051:50051 -p 9464:9464 rapport
# There is no transformer backend in the code yet, so there is no transformer target: when one lands
# (a cargo feature linking libtorch), add a stage that builds with that feature and a runtime stage
# that installs only the libtorch runtime libraries. The runtime steps below are exercised outside
# Docker in CI by scripts/runtime_stage_check.sh (same user, same layout, same health check).

FROM rust:1.95-bookworm AS builder
WORKDIR /src
# Only what the build needs (see .dockerignore).
COPY Cargo.toml Cargo.lock build.rs ./
COPY proto ./proto
COPY src ./src
COPY benches ./benches
COPY models ./models
RUN cargo build --release --locked --bin rapport

FROM debian:bookworm-slim AS runtime
# Non-root system user; no shell login, no home directory contents needed.
RUN useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin rapport
COPY --from=builder /src/target/release/rapport /usr/local/bin/rapport
COPY --from=builder /src/models /opt/rapport/models
USER rapport
# 50051: gRPC (ingest, scoring, sentiment, grpc.health.v1, reflection). 9464: Prometheus /metrics.
EXPOSE 50051 9464
# gRPC health through the binary itself (no grpc_health_probe needed): exit 0 when SERVING.
HEALTHCHECK --interval=10s --timeout=5s --start-period=10s --retries=3 \
  CMD ["/usr/local/bin/rapport", "health", "--server", "http://127.0.0.1:50051", "--timeout-seconds", "3"]
ENTRYPOINT ["/usr/local/bin/rapport", "serve", "--models-dir", "/opt/rapport/models"]
