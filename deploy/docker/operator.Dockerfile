# syntax=docker/dockerfile:1
# The ringkv-operator image. Build from the repository root:
#   docker build -f deploy/docker/operator.Dockerfile -t ghcr.io/ringkv/ringkv-operator:0.1.0 .
# The runtime image has no shell and runs as uid 65532; TLS to the API server is rustls.

FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY node node
COPY operator operator
COPY plan plan
COPY tests tests
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p ringkv-operator \
    && install -D target/release/ringkv-operator /out/ringkv-operator

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/ringkv-operator /usr/local/bin/ringkv-operator
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/ringkv-operator"]
CMD ["run"]
