# Builds the `mpr` binary (server and client) for the docker-compose production shape.
# The image holds no token, key or password: config/production.toml names the secrets the
# deployment mounts (/run/secrets/mpr_principals, /run/secrets/mpr_registry_key,
# /run/secrets/mpr_gateway_key), and `mpr serve` refuses to start without principals.
FROM rust:1.95-bookworm AS build
RUN apt-get update && apt-get install -y --no-install-recommends libclang-dev && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin mpr

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates curl libstdc++6 && rm -rf /var/lib/apt/lists/*
RUN useradd --system --uid 10001 --home-dir /var/lib/mpr --create-home mpr
COPY --from=build /src/target/release/mpr /usr/local/bin/mpr
COPY config/production.toml /etc/mpr/mpr.toml
ENV MPR_CONFIG=/etc/mpr/mpr.toml
USER mpr
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/mpr"]
