# Tidewatch in two stages: build the release binary, then copy it into a slim runtime image.
# Templates, CSS, the app script and the vendored uPlot are compiled into the binary (askama and
# include_str!), so the runtime image needs only the binary, the example configs and CA roots.
#
#   docker build -t tidewatch .
#   docker run --rm -p 8080:8080 -e TIDEWATCH_AUTH_TOKEN=change-me tidewatch
#                                   # demo source + SQLite, like `cargo run`; published on a
#                                   # network, acknowledging needs the token

FROM rust:1.95-bookworm AS build
WORKDIR /src
# librdkafka is built from source by rdkafka-sys: it needs a C toolchain (in the image), make,
# and perl/python for its configure script (in the image as well).
COPY Cargo.toml Cargo.lock ./
COPY src src
COPY templates templates
COPY static static
RUN cargo build --release --locked --bin tidewatch \
    && strip target/release/tidewatch

FROM debian:bookworm-slim AS runtime
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates curl \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --create-home --home-dir /var/lib/tidewatch tidewatch \
    && install -d -o tidewatch -g tidewatch /var/lib/tidewatch/lake
COPY --from=build /src/target/release/tidewatch /usr/local/bin/tidewatch
COPY config /etc/tidewatch
# State (the SQLite store, a local Parquet lake) lives in the working directory: mount a volume.
WORKDIR /var/lib/tidewatch
VOLUME /var/lib/tidewatch
USER tidewatch
# Inside a container the dashboard must listen on all interfaces to be published; Tidewatch
# then refuses to start without TIDEWATCH_AUTH_TOKEN (or an explicit --insecure).
ENV TIDEWATCH_LISTEN=0.0.0.0:8080
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
    CMD curl -fsS http://127.0.0.1:8080/healthz || exit 1
ENTRYPOINT ["tidewatch"]
CMD ["serve"]
