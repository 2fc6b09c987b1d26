# smartplexd container image: Debian bookworm-slim with Debian's python3 (3.11) and a venv of the project.
#
#   docker build -t smartplexd .
#   docker run -d -p 8765:8765 -v /path/to/config:/config -e PUID=1000 -e PGID=1000 -e TZ=Europe/Berlin smartplexd
#
# /config holds config.yaml, rules/ and the SQLite database; both are created from the examples on first
# start. The entry point starts as root only to prepare /config, then drops to PUID:PGID (setpriv) and execs
# `smartplexd run`. No secret is baked in: config.yaml refers to ${ENV_VARS} given at run time.

# --- builder: a venv with smartplexd and its dependencies ------------------------------------------------
FROM debian:bookworm-slim AS builder

ARG DEBIAN_FRONTEND=noninteractive
# Package versions are not pinned: bookworm only ever ships security and point-release updates, and a pin
# would break the build on each of them.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3-venv ca-certificates \
    && rm -rf /var/lib/apt/lists/*

RUN python3 -m venv /opt/smartplexd
COPY pyproject.toml README.md /src/
COPY smartplexd /src/smartplexd
COPY plugins /src/plugins
# Third-party plugins (pip requirement specifiers, space-separated) can be baked into a custom image:
#   docker build --build-arg SMARTPLEXD_PLUGINS="smartplexd-foo==1.2" -t smartplexd-custom .
ARG SMARTPLEXD_PLUGINS=""
# A non-editable install (the final stage copies only the venv); `smartplexd plugins` proves every entry
# point imports from the installed wheel. Then pip and setuptools leave the venv:
# nothing runs them at run time and they are a tenth of the image.
# hadolint ignore=DL3013,SC2086
RUN /opt/smartplexd/bin/pip install --no-cache-dir /src ${SMARTPLEXD_PLUGINS} \
    && /opt/smartplexd/bin/smartplexd plugins \
    && /opt/smartplexd/bin/python -m pip uninstall --yes --quiet pip setuptools

# --- final image ------------------------------------------------------------------------------------------
FROM debian:bookworm-slim

ARG DEBIAN_FRONTEND=noninteractive
# tzdata: the config's `timezone` and TZ need the zone database; ca-certificates: https to Plex and the *arrs.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 tzdata ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --gid 1000 smartplexd \
    && useradd --uid 1000 --gid 1000 --home-dir /config --no-create-home --shell /usr/sbin/nologin smartplexd \
    && mkdir -p /config \
    && chown 1000:1000 /config

COPY --from=builder /opt/smartplexd /opt/smartplexd
COPY config.example.yaml /usr/share/smartplexd/config.example.yaml
COPY rules /usr/share/smartplexd/rules
COPY --chmod=755 docker/entrypoint.sh /usr/local/bin/smartplexd-entrypoint

ENV PATH=/opt/smartplexd/bin:$PATH \
    SMARTPLEXD_CONFIG=/config/config.yaml \
    PUID=1000 \
    PGID=1000 \
    TZ=Etc/UTC \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1

VOLUME /config
EXPOSE 8765

# No curl in the image: Python's urllib is enough. Fails on a refused connection and on any non-2xx answer.
# Set SMARTPLEXD_HEALTH_URL when server.listen is not port 8765.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python3", "-c", "import os, urllib.request; urllib.request.urlopen(os.environ.get('SMARTPLEXD_HEALTH_URL', 'http://127.0.0.1:8765/healthz'), timeout=4)"]

ENTRYPOINT ["smartplexd-entrypoint"]
CMD ["smartplexd", "run"]
