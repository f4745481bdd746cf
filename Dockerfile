# syntax=docker/dockerfile:1
# highpress image: both binaries, /usr/local/bin/highpress (the service; the operator's
# CounterCluster pods run it) and /usr/local/bin/highpress-operator (the chart's Deployment runs
# it with `command`). Build with `make image` (needs a Docker engine).
#
# Dependencies are built in their own cached layer with cargo-chef, so a source-only change
# rebuilds only the workspace crates. `make image-build-check` runs the same
# `cargo build` line on machines without a Docker engine.

ARG RUST_VERSION=1.95

FROM rust:${RUST_VERSION}-bookworm AS chef
RUN cargo install cargo-chef --locked --version 0.1.78
WORKDIR /src

FROM chef AS planner
COPY . .
RUN cargo chef prepare --recipe-path recipe.json

FROM chef AS builder
COPY --from=planner /src/recipe.json recipe.json
RUN cargo chef cook --release --locked -p highpress -p highpress-operator --recipe-path recipe.json
COPY . .
RUN cargo build --release --locked -p highpress -p highpress-operator \
    && install -D -m 0755 -t /out target/release/highpress target/release/highpress-operator

# glibc and libgcc only; no shell, no package manager.
FROM gcr.io/distroless/cc-debian12:nonroot
ARG VERSION=0.1.0
ARG REVISION=unknown
ARG CREATED=unknown
LABEL org.opencontainers.image.title="highpress" \
      org.opencontainers.image.description="High-throughput counting service (REST gateway, gRPC counter, standalone) and its Kubernetes operator" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.source="https://github.com/highpress/highpress" \
      org.opencontainers.image.url="https://github.com/highpress/highpress" \
      org.opencontainers.image.vendor="highpress"
COPY --from=builder /out/highpress /out/highpress-operator /usr/local/bin/
USER 10001:10001
# 8080: HTTP API, probes and /metrics; 50051: the counter's gRPC.
EXPOSE 8080 50051
ENTRYPOINT ["/usr/local/bin/highpress"]
CMD ["standalone"]
