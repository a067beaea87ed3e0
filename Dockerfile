# syntax=docker/dockerfile:1
# One image for the operator and the routers it runs: `mcp-operator
# controller` and `mcp-operator router` are subcommands of one binary.
# For machines with Docker; `make image` builds the same layout with
# buildah and no Docker (image/build.sh, image/Containerfile).
#
#   docker build -t ghcr.io/kubemcp/mcp-operator:<version> .

# Build: the same toolchain as development, the locked dependencies, and
# the image's filesystem staged by the script `make image` uses.
FROM docker.io/library/rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin mcp-operator \
 && image/rootfs.sh target/release/mcp-operator /rootfs

# Run: the binary, its shared libraries, CA certificates (rustls verifies
# Redis and apiserver TLS with them) and a passwd entry; no shell, no
# package manager, as the unprivileged user that the manifests'
# securityContext also asks for.
FROM scratch
COPY --from=build /rootfs/ /
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/mcp-operator"]
