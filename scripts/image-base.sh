#!/usr/bin/env bash
# Make a debian:bookworm-slim equivalent root filesystem tarball with debootstrap, for machines that reach
# Debian's archive but no image registry. Prints the tarball's path on stdout (all progress goes to stderr).
#
#   scripts/image-base.sh            reuse the cached tarball when it exists
#   scripts/image-base.sh --rebuild  make it again
#
# Import it with:  podman import --change 'CMD ["bash"]' TARBALL docker.io/library/debian:bookworm-slim
# so that `FROM debian:bookworm-slim` resolves with `--pull=never`.
#
# The mirror is the one the host's apt already uses (read from `apt-cache policy` at run time), and the
# host's extra CA certificates (/usr/local/share/ca-certificates) are copied in, so apt and pip inside a
# build reach the archive and PyPI exactly as the host does. Needs root and debootstrap.
set -euo pipefail

CACHE="${SMARTPLEXD_IMAGE_CACHE:-/var/tmp/smartplexd-image-base}"
TARBALL="$CACHE/debian-bookworm-slim.tar"
SUITE=bookworm

log() { echo "image-base: $*" >&2; }

if [[ "${1:-}" != "--rebuild" && -s "$TARBALL" ]]; then
    log "reusing $TARBALL (pass --rebuild to make it again)"
    echo "$TARBALL"
    exit 0
fi

if [[ $(id -u) -ne 0 ]]; then
    log "debootstrap needs root"
    exit 1
fi
command -v debootstrap >/dev/null || { log "debootstrap is not installed (apt-get install debootstrap)"; exit 1; }

# Every "URL bookworm*/main" line the host's apt uses, e.g. "http://deb.debian.org/debian bookworm/main".
mapfile -t SOURCES < <(apt-cache policy | awk -v s="$SUITE" '$2 ~ /^[a-z]+:\/\// && $3 ~ "^"s"(-[a-z]+)?/main$" {
    split($3, a, "/"); print $2, a[1] }' | sort -u)
MIRROR=""
for line in "${SOURCES[@]}"; do
    read -r url suite <<<"$line"
    [[ "$suite" == "$SUITE" ]] && MIRROR="$url"
done
if [[ -z "$MIRROR" ]]; then
    log "the host's apt has no '$SUITE/main' source (apt-cache policy); cannot pick a mirror"
    exit 1
fi

mkdir -p "$CACHE"
WORK=$(mktemp -d "$CACHE/build.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
ROOTFS="$WORK/rootfs"

log "debootstrap --variant=minbase $SUITE from $MIRROR"
start=$(date +%s)
debootstrap --variant=minbase "$SUITE" "$ROOTFS" "$MIRROR" >"$WORK/debootstrap.log" 2>&1 || {
    tail -n 30 "$WORK/debootstrap.log" >&2
    exit 1
}

# apt sources: where the host's point.
: >"$ROOTFS/etc/apt/sources.list"
for line in "${SOURCES[@]}"; do
    read -r url suite <<<"$line"
    echo "deb $url $suite main" >>"$ROOTFS/etc/apt/sources.list"
done
# A proxy the host's apt needs, the build's apt needs too.
apt-config dump | grep -i '::proxy' >"$ROOTFS/etc/apt/apt.conf.d/90host-proxy" || rm -f "$ROOTFS/etc/apt/apt.conf.d/90host-proxy"

# The same slimming the official -slim images do: no docs, man pages or translations, now or later.
cat >"$ROOTFS/etc/dpkg/dpkg.cfg.d/docker-slim" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/lintian/*
path-exclude /usr/share/linda/*
path-exclude /usr/share/locale/*
EOF
cat >"$ROOTFS/etc/apt/apt.conf.d/docker-clean" <<'EOF'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
EOF
echo 'Acquire::Languages "none";' >"$ROOTFS/etc/apt/apt.conf.d/docker-no-languages"
echo 'Acquire::GzipIndexes "true";' >"$ROOTFS/etc/apt/apt.conf.d/docker-gzip-indexes"
echo 'Apt::AutoRemove::SuggestsImportant "false";' >"$ROOTFS/etc/apt/apt.conf.d/docker-autoremove-suggests"
# Services must not start inside an image build.
printf '#!/bin/sh\nexit 101\n' >"$ROOTFS/usr/sbin/policy-rc.d"
chmod 755 "$ROOTFS/usr/sbin/policy-rc.d"

find "$ROOTFS/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete
find "$ROOTFS/usr/share/doc" -mindepth 1 -type d -empty -delete
rm -rf "$ROOTFS"/usr/share/{man,info,groff,lintian,linda,locale}/* \
    "$ROOTFS"/var/lib/apt/lists/* "$ROOTFS"/var/cache/apt/* "$ROOTFS"/var/cache/debconf/*-old \
    "$ROOTFS"/var/log/*.log "$ROOTFS"/var/log/apt/* "$ROOTFS"/debootstrap "$ROOTFS"/tmp/* "$ROOTFS"/root/.cache
: >"$ROOTFS/etc/machine-id"

# The host's extra CA certificates (e.g. a TLS-inspecting proxy). Installing ca-certificates in a build
# picks them up, so pip reaches PyPI as the host does.
mkdir -p "$ROOTFS/usr/local/share/ca-certificates"
if compgen -G "/usr/local/share/ca-certificates/*.crt" >/dev/null; then
    cp /usr/local/share/ca-certificates/*.crt "$ROOTFS/usr/local/share/ca-certificates/"
fi

tar --numeric-owner -C "$ROOTFS" -cf "$WORK/rootfs.tar" .
mv "$WORK/rootfs.tar" "$TARBALL"
log "made $TARBALL ($(du -h "$TARBALL" | cut -f1)) in $(($(date +%s) - start)) s"
echo "$TARBALL"
