# Moat with the example plugins.
#   docker build -t moat .
#   docker run --rm moat                      # checks the example config
#   docker run --rm moat call --config /opt/moat/examples/moat.toml hello greet '{"name":"container"}'
FROM rust:1.95-bookworm AS build
RUN rustup target add wasm32-wasip2
WORKDIR /src
COPY . .
RUN cd plugins && cargo build --release --target wasm32-wasip2
RUN cargo build --release -p moat

FROM debian:bookworm-slim
RUN useradd --system --uid 10001 --home-dir /nonexistent moat
COPY --from=build /src/target/release/moat /usr/local/bin/moat
# Same relative layout as the repository, so examples/moat.toml works as is.
COPY --from=build /src/plugins/target/wasm32-wasip2/release/hello.wasm /src/plugins/target/wasm32-wasip2/release/files.wasm /opt/moat/plugins/target/wasm32-wasip2/release/
COPY examples /opt/moat/examples
USER moat
ENV MOAT_CACHE_DIR=/tmp/moat-cache
ENTRYPOINT ["moat"]
CMD ["check", "--config", "/opt/moat/examples/moat.toml"]
