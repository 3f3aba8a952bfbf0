# Builds the `mpr` binary (server and client) for the docker-compose production shape.
FROM rust:1.95-bookworm AS build
RUN apt-get update && apt-get install -y --no-install-recommends libclang-dev && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin mpr

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates curl libstdc++6 && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/mpr /usr/local/bin/mpr
COPY config/local.toml /etc/mpr/mpr.toml
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/mpr"]
