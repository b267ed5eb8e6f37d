# tale serve in a container: a static-ish Rust binary on a slim Debian.
#   docker build -t tale .
#   docker run -p 8080:8080 -v $PWD/stories:/stories:ro -v tale-data:/data \
#     -e TALE_CREDENTIAL_GRAPH=… tale
FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin tale

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --home /data --shell /usr/sbin/nologin tale \
    && mkdir -p /data /stories && chown tale /data
COPY --from=build /src/target/release/tale /usr/local/bin/tale
USER tale
WORKDIR /data
VOLUME ["/data"]
EXPOSE 8080
# bash, not dash (/bin/sh): /dev/tcp is a bash feature. A 200 from /readyz.
HEALTHCHECK --interval=10s --timeout=3s CMD ["/bin/bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/8080 && printf 'GET /readyz HTTP/1.0\\r\\n\\r\\n' >&3 && head -n1 <&3 | grep -q ' 200 '"]
ENTRYPOINT ["tale", "serve", "--stories", "/stories", "--db", "sqlite:/data/tale.db", "--listen", "0.0.0.0:8080", "--log-format", "json"]
