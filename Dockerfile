# rapport container images.
#   docker build -t rapport .                                  # default: fast + VADER, no libtorch
#   docker build -t rapport:transformer --target runtime-transformer .
#                                       # + the fine-tuned MiniLM (--sentiment transformer|cascade)
#   docker run -p 50051:50051 -p 127.0.0.1:9464:9464 -v rapport-data:/var/lib/rapport rapport \
#     --data-dir /var/lib/rapport       # state kept in the volume (deploy/docker-compose.yml does this)
# The default image's runtime steps are exercised outside Docker in CI by
# scripts/runtime_stage_check.sh (same user, same layout, same health check). The transformer
# stages use Debian's libtorch 1.13 (libtorch-dev to build, the libtorch1.13 runtime library to
# run) with OpenBLAS/OpenMP as the system BLAS (the reference BLAS is ~25x slower), as .ci/run does.

FROM rust:1.95-bookworm AS builder
WORKDIR /src
# Only what the build needs (see .dockerignore). The fast models, the language head and the VADER
# lexicons are built into the binary; the transformer is not needed.
COPY Cargo.toml Cargo.lock ./
COPY proto ./proto
COPY crates ./crates
COPY src ./src
COPY benches ./benches
COPY models/fast ./models/fast
COPY models/language ./models/language
COPY models/vader ./models/vader
# No debug info in the image's binary (Cargo.toml keeps line tables for local profiling).
ENV CARGO_PROFILE_RELEASE_DEBUG=0 CARGO_PROFILE_RELEASE_STRIP=debuginfo
RUN cargo build --release --locked --bin rapport

FROM rust:1.95-bookworm AS builder-transformer
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends libtorch-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY proto ./proto
COPY crates ./crates
COPY src ./src
COPY benches ./benches
COPY models ./models
ENV LIBTORCH=/usr CARGO_PROFILE_RELEASE_DEBUG=0 CARGO_PROFILE_RELEASE_STRIP=debuginfo
RUN cargo build --release --locked --features transformer --bin rapport

FROM debian:bookworm-slim AS runtime-transformer
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      libtorch1.13 libopenblas0-openmp \
 && update-alternatives --set libblas.so.3-x86_64-linux-gnu \
      /usr/lib/x86_64-linux-gnu/openblas-openmp/libblas.so.3 \
 && update-alternatives --set liblapack.so.3-x86_64-linux-gnu \
      /usr/lib/x86_64-linux-gnu/openblas-openmp/liblapack.so.3 \
 && rm -rf /var/lib/apt/lists/*
RUN useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin rapport \
 && install -d -o rapport -g rapport /var/lib/rapport
VOLUME /var/lib/rapport
COPY --from=builder-transformer /src/target/release/rapport /usr/local/bin/rapport
# The transformer is read from files (the fast models for the cascade too): --models-dir.
COPY --from=builder-transformer /src/models/transformer /opt/rapport/models/transformer
COPY --from=builder-transformer /src/models/fast /opt/rapport/models/fast
USER rapport
EXPOSE 50051 9464
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
  CMD ["/usr/local/bin/rapport", "health", "--server", "http://127.0.0.1:50051", "--timeout-seconds", "3"]
ENTRYPOINT ["/usr/local/bin/rapport", "serve", "--models-dir", "/opt/rapport/models", "--sentiment", "cascade"]

# The default image: last, so a plain `docker build` produces it.
FROM debian:bookworm-slim AS runtime
# Non-root system user; no shell login, no home directory contents needed. /var/lib/rapport is
# where `--data-dir /var/lib/rapport` keeps the log and snapshots (a volume, owned by the user).
RUN useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin rapport \
 && install -d -o rapport -g rapport /var/lib/rapport
VOLUME /var/lib/rapport
# The binary carries its models (fast, VADER): nothing else to copy.
COPY --from=builder /src/target/release/rapport /usr/local/bin/rapport
USER rapport
# 50051: gRPC (ingest, scoring, sentiment, grpc.health.v1, reflection). 9464: Prometheus /metrics.
EXPOSE 50051 9464
# gRPC health through the binary itself (no grpc_health_probe needed): exit 0 when SERVING.
HEALTHCHECK --interval=10s --timeout=5s --start-period=10s --retries=3 \
  CMD ["/usr/local/bin/rapport", "health", "--server", "http://127.0.0.1:50051", "--timeout-seconds", "3"]
ENTRYPOINT ["/usr/local/bin/rapport", "serve"]
