# syntax=docker/dockerfile:1
#
# One image with every service binary; compose.yaml picks the binary per service
# (`command:`). Build:  docker build -t orders-cqrs:local .   (BuildKit is required for the
# cache mounts; it is the default builder of current Docker releases.)
# Run one:              docker run --rm orders-cqrs:local command-api --help
#
# No build-time database is needed: sqlx is used without its compile-time checked
# macros, and the migrations are embedded with `sqlx::migrate!("../migrations")`
# (platform/src/db.rs); command-api and payment-gateway apply them at start.
#
# Native code: rdkafka (Cargo.toml: features = ["tokio"], plus its default `libz`)
# builds librdkafka from source with its own ./configure + make (not cmake), with
# SSL, SASL/GSSAPI, curl and zstd disabled, and links zlib. reqwest and sqlx are
# built without TLS. So the builder needs a C toolchain, pkg-config and zlib headers,
# and the binaries need only libc, libgcc_s and libz at run time.

ARG BINS="command-api query-api outbox-relay projector saga-worker payment-gateway console migrate"

############################# build #############################
FROM rust:1-bookworm AS builder
RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential pkg-config zlib1g-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
ARG BINS
# Registry, git checkouts and the target dir live in BuildKit cache mounts, so a
# rebuild after a source change recompiles only the workspace crates. The target dir
# is not part of the image layer, hence the copy of the binaries to /out.
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/usr/local/cargo/git,sharing=locked \
    --mount=type=cache,target=/src/target,sharing=locked \
    cargo build --release --locked --workspace --bins \
    && mkdir -p /out \
    && for bin in $BINS; do install -m 0755 "target/release/$bin" "/out/$bin"; done

############################# run #############################
FROM debian:bookworm-slim AS runtime
# curl: the compose health checks (GET /health/ready); zlib1g: librdkafka's compression.
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates curl zlib1g \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 orders \
    && useradd --system --uid 10001 --gid orders --home-dir /nonexistent --no-create-home \
        --shell /usr/sbin/nologin orders
COPY --from=builder /out/command-api /usr/local/bin/command-api
COPY --from=builder /out/query-api /usr/local/bin/query-api
COPY --from=builder /out/outbox-relay /usr/local/bin/outbox-relay
COPY --from=builder /out/projector /usr/local/bin/projector
COPY --from=builder /out/saga-worker /usr/local/bin/saga-worker
COPY --from=builder /out/payment-gateway /usr/local/bin/payment-gateway
COPY --from=builder /out/console /usr/local/bin/console
COPY --from=builder /out/migrate /usr/local/bin/migrate
USER 10001:10001
ENV RUST_LOG=info
# command-api, query-api, payment-gateway, console; admin (/metrics, /health/*) of
# outbox-relay, projector, saga-worker. Each binary binds 127.0.0.1 by default: set *_BIND / ADMIN_BIND
# to 0.0.0.0:<port> in a container (compose.yaml does).
EXPOSE 8080 8081 8082 8083 9101 9102 9103
CMD ["command-api"]
