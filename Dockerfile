# Moat with the example plugins, serving Streamable HTTP on port 8080.
#   docker build -t moat .
#   docker run --rm -p 8080:8080 moat        # then: http://localhost:8080/mcp
FROM rust:1.95-bookworm AS build
RUN rustup target add wasm32-wasip2
WORKDIR /src
COPY . .
# The host's build script compiles plugins/ for wasm32-wasip2 as well.
RUN cargo build --release -p moat

FROM debian:bookworm-slim
RUN useradd --system --uid 10001 --home-dir /nonexistent moat
COPY --from=build /src/target/release/moat /usr/local/bin/moat
COPY --from=build /src/plugins/target/wasm32-wasip2/release/hello.wasm /src/plugins/target/wasm32-wasip2/release/files.wasm /opt/moat/plugins/
COPY examples/demo /opt/moat/demo
COPY deploy/moat.toml /etc/moat/moat.toml
USER moat
ENV MOAT_CACHE_DIR=/tmp/moat-cache
EXPOSE 8080
ENTRYPOINT ["moat"]
CMD ["serve", "--config", "/etc/moat/moat.toml"]
