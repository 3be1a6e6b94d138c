# Moat serving the example plugins over Streamable HTTP on port 8080.
#   docker build -t moat .        (or: podman build -t moat .)
#   docker run --rm --read-only -p 127.0.0.1:8080:8080 moat
#   -> http://127.0.0.1:8080/mcp, in demo mode: no authentication, so publish
#      the port on loopback only. For anything else mount a config of your
#      own with [auth] (README "Deploy" shows one):
#   docker run --rm --read-only -p 8080:8080 -v ./moat.toml:/etc/moat/moat.toml:ro \
#     moat serve --config /etc/moat/moat.toml
#
# The base images are arguments so that a build without a registry can name
# local ones (tests/tests/all/container.rs builds the runtime stage on a
# Debian root filesystem made by mmdebstrap).
ARG RUST_IMAGE=docker.io/library/rust:1.95-bookworm
ARG RUNTIME_IMAGE=docker.io/library/debian:bookworm-slim

FROM ${RUST_IMAGE} AS build
RUN rustup target add wasm32-wasip2
WORKDIR /src
COPY . .
# The host's build script compiles the hello and files plugins for
# wasm32-wasip2 and embeds them; the image serves them from files instead,
# so that an operator can mount other plugins beside them.
RUN cargo build --release --locked --bin moat \
 && mkdir -p /out/plugins \
 && cp target/release/moat /out/moat \
 && cp plugins/target/wasm32-wasip2/release/hello.wasm plugins/target/wasm32-wasip2/release/files.wasm /out/plugins/

FROM ${RUNTIME_IMAGE} AS runtime
RUN groupadd --system --gid 10001 moat \
 && useradd --system --uid 10001 --gid 10001 --home-dir /nonexistent --shell /usr/sbin/nologin moat \
 && mkdir -p /var/cache/moat \
 && chown moat:moat /var/cache/moat \
 && chmod 0700 /var/cache/moat
COPY --from=build /out/moat /usr/local/bin/moat
COPY --from=build /out/plugins/ /opt/moat/plugins/
COPY examples/demo /opt/moat/demo
COPY deploy/moat.toml /etc/moat/moat.toml
USER 10001:10001
# Plugins are compiled now, as the user that serves them (the cache trusts
# only its owner's entries), so that the container starts at once and runs
# with a read-only root filesystem. The compiled code suits CPUs with the
# build machine's features; on another CPU the entries are skipped and the
# plugins compile at each start (logged). Mounted plugins compile at start
# too: a named volume at /var/cache/moat (which starts as a copy of this
# folder, owner included) keeps what they compile.
ENV MOAT_CACHE_DIR=/var/cache/moat
RUN ["moat", "check", "--config", "/etc/moat/moat.toml"]
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=4s --start-period=5s --retries=3 \
  CMD ["moat", "probe", "http://127.0.0.1:8080/healthz"]
ENTRYPOINT ["moat"]
# Demo mode, said out loud: the example plugins (hello, and files reading
# /opt/moat/demo) to anyone who reaches the port. Replace the command to
# serve a config of your own.
CMD ["serve", "--config", "/etc/moat/moat.toml", "--insecure-no-auth"]
