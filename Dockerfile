# Minimal image for rapport (the operations issue brings health checks and the transformer target).
FROM rust:1.95-bookworm AS builder
WORKDIR /src
COPY . .
RUN cargo build --release --locked

FROM debian:bookworm-slim
RUN useradd --system --uid 10001 rapport
COPY --from=builder /src/target/release/rapport /usr/local/bin/rapport
COPY --from=builder /src/models /opt/rapport/models
USER rapport
# 50051: gRPC; 9464: Prometheus /metrics.
EXPOSE 50051 9464
ENTRYPOINT ["/usr/local/bin/rapport", "serve", "--models-dir", "/opt/rapport/models"]
