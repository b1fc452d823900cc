# The broker as a container image: a Rust build stage, then a small Debian runtime.
# Untested on the machine where it was written (no Docker there).
#
#   docker build -t broker .
#   docker run --rm broker --help
#
# The binary embeds everything it needs at run time: the migrations, the page templates, SQLite
# (bundled), aws-lc (static) and the web PKI roots, so the runtime stage needs no extra packages.
# By default it is built without the `dev` feature: no mock VNeID, no demo app (`broker dev` and
# `broker mock-vneid` then say they are not built in). A development image that has them:
#
#   docker build --build-arg CARGO_FEATURES= -t broker:dev .

FROM rust:1-bookworm AS build
ARG CARGO_FEATURES=--no-default-features
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p broker $CARGO_FEATURES \
    && install -m 0755 target/release/broker /usr/local/bin/broker

FROM debian:bookworm-slim
RUN useradd --system --uid 10001 --user-group --create-home --home-dir /var/lib/broker broker
COPY --from=build /usr/local/bin/broker /usr/local/bin/broker
USER broker
WORKDIR /var/lib/broker
ENV BROKER_HTTP__HOST=0.0.0.0
EXPOSE 8080
ENTRYPOINT ["broker"]
CMD ["serve"]
