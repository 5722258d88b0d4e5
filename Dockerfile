# syntax=docker/dockerfile:1
#
# Portcullis container image.
#
#   docker build -t portcullis .
#   docker run --rm -p 8080:8080 -v portcullis-data:/app/data \
#     -e PORTCULLIS__ISSUER=https://id.example.com portcullis
#
# Stages: chef (toolchain + cargo-chef) -> planner (dependency recipe) ->
# cacher (builds only the dependencies, cached while Cargo.lock is unchanged)
# -> builder (the portcullis binary) -> runtime (debian slim, non-root).
#
# The builder is pinned to Debian bookworm so the glibc the binary links
# against matches the bookworm-slim runtime (plain rust:1 images follow the
# newest Debian release, whose glibc is newer than bookworm's).
#
# No HEALTHCHECK: the slim runtime has no curl/wget. Orchestrators should probe
# GET /healthz (liveness: the process answers) and GET /readyz (readiness:
# the database is reachable) on port 8080.

ARG CHEF_IMAGE=lukemathwalker/cargo-chef:latest-rust-1-bookworm

FROM ${CHEF_IMAGE} AS chef
WORKDIR /src
# Never reach for a live database at compile time (sqlx macros use .sqlx/ data).
ENV SQLX_OFFLINE=true \
    CARGO_TERM_COLOR=never

FROM chef AS planner
COPY . .
RUN cargo chef prepare --recipe-path recipe.json --bin portcullis

FROM chef AS cacher
COPY --from=planner /src/recipe.json recipe.json
RUN cargo chef cook --release --locked --recipe-path recipe.json --bin portcullis

FROM chef AS builder
COPY . .
# Same working directory as the cacher, so cargo reuses the compiled deps.
COPY --from=cacher /src/target target
COPY --from=cacher /usr/local/cargo /usr/local/cargo
RUN cargo build --release --locked --bin portcullis \
 && cp target/release/portcullis /portcullis

FROM debian:bookworm-slim AS runtime

# ca-certificates follows Debian's security updates: pinning its exact version
# would make the image fail to build whenever bookworm publishes a fix.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/*

RUN groupadd --system --gid 10001 portcullis \
 && useradd --system --uid 10001 --gid 10001 --home-dir /app --no-create-home \
      --shell /usr/sbin/nologin portcullis

WORKDIR /app
COPY --from=builder /portcullis /app/portcullis
COPY config/ /app/config/
# The SQLite default, sqlite://data/portcullis.db, resolves to /app/data.
RUN mkdir -p /app/data \
 && chown 10001:10001 /app/data \
 && chmod 0750 /app/data

USER 10001:10001
ENV PORTCULLIS__SERVER__BIND=0.0.0.0:8080
EXPOSE 8080
VOLUME ["/app/data"]

ENTRYPOINT ["/app/portcullis"]
CMD ["serve"]
