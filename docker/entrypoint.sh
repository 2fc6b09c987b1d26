#!/bin/sh
# Container entry point: prepare /config, drop root, then exec the command (default `smartplexd run`).
#
# Started as root (the default), it makes sure the config folder exists and belongs to PUID:PGID, creates
# config.yaml and rules/ from the shipped examples on first start, and execs the command as PUID:PGID with
# setpriv, so the daemon is PID 1 and receives SIGTERM from `docker stop` itself. Started with
# `--user UID:GID`, it skips the ownership steps and runs the command as that user.
#
# Environment: PUID, PGID (default 1000; 0 is refused), TZ (IANA name, also written into a new config),
# SMARTPLEXD_CONFIG (default /config/config.yaml), SMARTPLEXD_SHARE (where the examples are; for tests).
set -eu

CONFIG="${SMARTPLEXD_CONFIG:-/config/config.yaml}"
CONFIG_DIR=$(dirname "$CONFIG")
SHARE="${SMARTPLEXD_SHARE:-/usr/share/smartplexd}"   # config.example.yaml and rules/ from the image
PUID="${PUID:-1000}"
PGID="${PGID:-1000}"

# Same shape as the daemon's log lines, so `docker logs` reads as one stream.
log() { printf '%s %-7s entrypoint: %s\n' "$(date '+%Y-%m-%d %H:%M:%S,%3N')" "$1" "$2" >&2; }

case "$PUID$PGID" in
    *[!0-9]*) log ERROR "PUID and PGID must be numbers (got PUID=$PUID PGID=$PGID)"; exit 2 ;;
esac

if [ "$(id -u)" = 0 ]; then
    if [ "$PUID" = 0 ] || [ "$PGID" = 0 ]; then
        log ERROR "refusing to run as root: set PUID/PGID to the owner of your media folders (e.g. 99/100 on Unraid)"
        exit 2
    fi
    mkdir -p "$CONFIG_DIR"
    # Only the folder itself is re-owned: files a user put there keep their owner (a chown -R over a large
    # or network-mounted folder is slow and surprising). Files the daemon cannot read are reported below.
    chown "$PUID:$PGID" "$CONFIG_DIR"
    # HOME=/root is unreadable after the drop; libraries that look in ~ find the config folder instead.
    export HOME="$CONFIG_DIR"
    run_as() { setpriv --reuid="$PUID" --regid="$PGID" --clear-groups --inh-caps=-all -- "$@"; }
    USER_DESC="uid $PUID, gid $PGID"
else
    run_as() { "$@"; }
    USER_DESC="uid $(id -u), gid $(id -g) (from --user; PUID/PGID ignored)"
fi

if [ ! -e "$CONFIG" ]; then
    run_as cp "$SHARE/config.example.yaml" "$CONFIG"
    if [ -n "${TZ:-}" ] && [ -e "/usr/share/zoneinfo/$TZ" ]; then
        run_as sed -i "s|^timezone: [^ ]*|timezone: $TZ|" "$CONFIG"
    fi
    log INFO "first start: created $CONFIG from the example (timezone ${TZ:-from the example}); edit it (Plex URL, token, integrations) and restart the container"
fi
RULES_DIR="$CONFIG_DIR/rules"
if [ ! -e "$RULES_DIR" ]; then
    run_as mkdir -p "$RULES_DIR"
    if [ -n "$(ls -A "$SHARE/rules" 2>/dev/null)" ]; then
        run_as cp -R "$SHARE/rules/." "$RULES_DIR/"
    fi
    log INFO "first start: created $RULES_DIR with the example rule recipes ($(ls "$RULES_DIR" | wc -l) files); deletion stays off until deletion.enabled: true"
fi
if ! run_as test -r "$CONFIG" || ! run_as test -w "$CONFIG_DIR"; then
    log ERROR "$CONFIG_DIR is not writable or $CONFIG is not readable as $USER_DESC; fix the owner on the host (chown -R $PUID:$PGID <folder>) or set PUID/PGID"
    exit 2
fi

log INFO "starting as $USER_DESC: $*"
if [ "$(id -u)" = 0 ]; then
    exec setpriv --reuid="$PUID" --regid="$PGID" --clear-groups --inh-caps=-all -- "$@"
fi
exec "$@"
