# frontdoor in a container, for docker-compose.yml. Built from this repository's source
# with the pinned Rust toolchain image; the result is a slim Debian image with one binary.
FROM rust:1.91.1-slim-bookworm AS build
WORKDIR /src
RUN apt-get update && apt-get install -y --no-install-recommends cmake gcc g++ make && rm -rf /var/lib/apt/lists/*
COPY Cargo.toml Cargo.lock.pinned ./
COPY scripts/lock scripts/lock
COPY src src
COPY templates templates
COPY bench bench
RUN scripts/lock && cargo build --locked --release --bin frontdoor

FROM debian:bookworm-20251117-slim
COPY --from=build /src/target/release/frontdoor /usr/local/bin/frontdoor
WORKDIR /config
EXPOSE 8080 8081 8082 8083 8088 8089 9081 9082 9083 9084
ENTRYPOINT ["frontdoor"]
CMD ["serve", "--config", "/config/services.yaml", "--state-dir", "/state", "--bind-all"]
