# syntax=docker/dockerfile:1
# One image for the operator and the routers it runs: `mcp-operator
# controller` and `mcp-operator router` are subcommands of one binary.
#
#   make image                      # IMAGE=ghcr.io/kubemcp/mcp-operator:<version>
#   make image IMAGE=k3d-registry.localhost:5000/mcp-operator:dev

# Build: the same toolchain as development, the locked dependencies.
FROM docker.io/library/rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin mcp-operator \
 && cp target/release/mcp-operator /mcp-operator

# Run: glibc and CA certificates only (rustls verifies Redis and apiserver
# TLS with them), no shell, no package manager, as the unprivileged
# nonroot user that the manifests' securityContext also asks for.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /mcp-operator /usr/local/bin/mcp-operator
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/mcp-operator"]
