# Multi-stage build: compile in the Rust image, run from a slim Debian.
FROM rust:1-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY static ./static
COPY benches ./benches
COPY client ./client
COPY loadtest ./loadtest
RUN cargo build --release -p chat-server -p loadtest

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates curl libssl3 \
    && rm -rf /var/lib/apt/lists/* && useradd --system --home /data chat
COPY --from=build /src/target/release/chat-server /usr/local/bin/chat-server
COPY --from=build /src/target/release/loadtest /usr/local/bin/loadtest
USER chat
WORKDIR /data
ENV BIND=0.0.0.0:8000 DATA_DIR=/data
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s CMD curl -fsS http://127.0.0.1:8000/healthz || exit 1
ENTRYPOINT ["chat-server"]
CMD ["serve"]
