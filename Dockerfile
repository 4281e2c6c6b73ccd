# syntax=docker/dockerfile:1
# The `aorta server` container image (docs/server.md, "Packaging").
#
#   docker build --build-arg AORTA_GIT=$(git rev-parse --short=12 HEAD) -t aorta .
#   docker run -v aorta-data:/var/lib/aorta -v /srv/aorta/etc:/etc/aorta:ro \
#              -p 7443:7443 -p 127.0.0.1:9464:9464 aorta
#
# /etc/aorta holds server.toml (the image ships packaging/container-server.toml
# there), the public device directory and the TLS certificate and key; the
# volume /var/lib/aorta holds the data (frame log, results, checkpoints,
# worker token). The server runs as an unprivileged user (uid 10001).

# --- build --------------------------------------------------------------------
FROM rust:1.95-bookworm AS build
# The commit for aorta_build_info (the build context has no .git).
ARG AORTA_GIT=unknown
ENV AORTA_GIT=${AORTA_GIT}
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY crates crates
COPY docs docs
RUN cargo build --release --locked -p aorta-cli --bin aorta \
 && install -D -m 0755 target/release/aorta /out/aorta

# --- run ----------------------------------------------------------------------
FROM debian:bookworm-slim
RUN groupadd --system --gid 10001 aorta \
 && useradd --system --uid 10001 --gid aorta --home-dir /var/lib/aorta \
            --no-create-home --shell /usr/sbin/nologin aorta \
 && install -d -o aorta -g aorta -m 0700 /var/lib/aorta \
 && install -d -m 0755 /etc/aorta /usr/share/doc/aorta
COPY --from=build /out/aorta /usr/local/bin/aorta
COPY packaging/container-server.toml /etc/aorta/server.toml
COPY LICENSE LICENSE-MIT docs/server.md docs/server-api.md /usr/share/doc/aorta/
USER 10001:10001
VOLUME ["/var/lib/aorta"]
# HTTPS (devices, workers, clinicians); the plain-HTTP operations port.
EXPOSE 7443 9464
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/aorta"]
CMD ["server", "--config", "/etc/aorta/server.toml"]
