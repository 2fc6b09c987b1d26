#!/usr/bin/env bash
# `make image-test`: build the container image with podman and check it for real (tests/test_image.py).
#
# Installs podman, debootstrap, uidmap, slirp4netns and runc from Debian when they are missing (CI starts
# on a fresh machine), makes or reuses the debootstrapped debian:bookworm-slim base
# (/var/tmp/smartplexd-image-base, see scripts/image-base.sh), then runs the test with a private podman
# store that it removes afterwards. Extra arguments go to pytest (e.g. -x, -k first_start). Needs root.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-.venv/bin/python}"

if [[ $(id -u) -ne 0 ]]; then
    echo "image-test: needs root (podman with a private store, debootstrap)" >&2
    exit 1
fi

missing=()
for pair in podman:podman debootstrap:debootstrap newuidmap:uidmap slirp4netns:slirp4netns runc:runc; do
    command -v "${pair%%:*}" >/dev/null 2>&1 || missing+=("${pair##*:}")
done
if ((${#missing[@]})); then
    echo "image-test: installing ${missing[*]}" >&2
    apt-get update -q >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >&2
fi

BASE=$(bash scripts/image-base.sh)
SMARTPLEXD_IMAGE_TEST=1 SMARTPLEXD_IMAGE_BASE="$BASE" \
    exec "$PYTHON" -m pytest tests/test_image.py -v -p no:cacheprovider "$@"
