# keyplex in a container: a multi-stage build, a non-root runtime user, the data in a volume,
# a health check on /healthz. Building the image needs the network (crates.io, Docker Hub).
#   docker build -t keyplex .
#   docker run -p 8080:8080 -v keyplex-data:/var/lib/keyplex keyplex
# The first start prints the demo tenant's credentials and the admin token (docker logs);
# both are kept in the volume, with the master key: back the volume up. The reference players
# (/players/) need `players/build.sh` (npm) and are not in the image.

FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p keyplex

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /var/lib/keyplex --shell /usr/sbin/nologin keyplex \
 && mkdir -p /var/lib/keyplex /etc/keyplex \
 && chown keyplex:keyplex /var/lib/keyplex
COPY --from=build /src/target/release/keyplex /usr/local/bin/keyplex
COPY docker/keyplex.toml /etc/keyplex/keyplex.toml
USER keyplex
VOLUME ["/var/lib/keyplex"]
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s \
  CMD curl -fsS http://127.0.0.1:8080/healthz || exit 1
ENTRYPOINT ["/usr/local/bin/keyplex"]
CMD ["serve", "--config", "/etc/keyplex/keyplex.toml"]
