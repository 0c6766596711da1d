# The sluice binary: every role (pipelines, `serve`, `cluster scheduler`, `cluster executor`).
#   docker build -t sluice .
#   docker run --rm -p 50050:50050 sluice cluster scheduler --bind 0.0.0.0
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin sluice

FROM debian:bookworm-slim
# CA certificates for object stores over HTTPS; the distribution's current one, not a pinned
# version that the archive drops.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --create-home --uid 10001 sluice
COPY --from=build /src/target/release/sluice /usr/local/bin/sluice
USER 10001
WORKDIR /home/sluice
# Scheduler gRPC; executor Arrow Flight and gRPC.
EXPOSE 50050 50051 50052
ENTRYPOINT ["sluice"]
CMD ["--help"]
