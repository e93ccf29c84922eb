# syntax=docker/dockerfile:1
# The ringkv-node image. Build from the repository root:
#   docker build -f deploy/docker/node.Dockerfile -t ghcr.io/ringkv/ringkv-node:0.1.0 .
# The runtime image has no shell and runs as uid 65532; the operator (or the chart)
# configures the node only through RINGKV_* environment variables.

FROM rust:1.95-bookworm AS build
WORKDIR /src
# Only what the workspace needs (never a local target/ directory).
COPY Cargo.toml Cargo.lock ./
COPY node node
COPY operator operator
COPY plan plan
COPY tests tests
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p ringkv-node \
    && install -D target/release/ringkv-node /out/ringkv-node

# glibc and libgcc only (mimalloc is compiled in); the `nonroot` user is 65532.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/ringkv-node /usr/local/bin/ringkv-node
USER 65532:65532
ENV RINGKV_LISTEN=0.0.0.0:8080 \
    RINGKV_INTERNAL_LISTEN=0.0.0.0:8180 \
    RINGKV_DATA_DIR=/var/lib/ringkv/data \
    RINGKV_LOG_FORMAT=json
EXPOSE 8080 8180
ENTRYPOINT ["/usr/local/bin/ringkv-node"]
