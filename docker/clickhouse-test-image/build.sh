#!/bin/sh
# build.sh builds the local test image ponix-test/clickhouse:18.16 (Debian bookworm's
# clickhouse-server 18.16.1) without pulling from any registry: debootstrap a minimal bookworm
# rootfs that includes clickhouse-server and clickhouse-client, add entrypoint.sh, and
# `docker import` the tree.
#
# Usage: build.sh [-f]   (-f rebuilds even when the image exists)
# Env:   IMAGE  (default ponix-test/clickhouse:18.16)
#        MIRROR (default: the first URIs: line of /etc/apt/sources.list.d/debian.sources)
# Needs root (debootstrap), docker, and debootstrap (installed with apt-get when missing).
set -eu

IMAGE="${IMAGE:-ponix-test/clickhouse:18.16}"
FORCE=0
[ "${1:-}" = "-f" ] && FORCE=1
HERE="$(cd "$(dirname "$0")" && pwd)"

if [ "$FORCE" -eq 0 ] && docker image inspect "$IMAGE" >/dev/null 2>&1; then
	echo "build.sh: image $IMAGE exists; nothing to do (use -f to rebuild)"
	exit 0
fi

if ! command -v debootstrap >/dev/null 2>&1; then
	echo "build.sh: installing debootstrap"
	apt-get install -y debootstrap
fi

if [ -z "${MIRROR:-}" ]; then
	MIRROR="$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)"
fi
MIRROR="${MIRROR:-http://deb.debian.org/debian}"

ROOTFS="$(mktemp -d /tmp/ponix-clickhouse-rootfs.XXXXXX)"
cleanup() { rm -rf "$ROOTFS"; }
trap cleanup EXIT INT TERM

echo "build.sh: debootstrap bookworm from $MIRROR into $ROOTFS"
debootstrap --variant=minbase --include=clickhouse-server,clickhouse-client \
	bookworm "$ROOTFS" "$MIRROR"

install -m 0755 "$HERE/entrypoint.sh" "$ROOTFS/entrypoint.sh"
# Keep the image small: package caches and docs are not needed to run the server.
rm -rf "$ROOTFS/var/cache/apt/archives/"*.deb "$ROOTFS/var/lib/apt/lists/"* \
	"$ROOTFS/usr/share/doc" "$ROOTFS/usr/share/man" "$ROOTFS/usr/share/locale"

echo "build.sh: importing $IMAGE"
tar -C "$ROOTFS" -c . | docker import \
	--change 'ENTRYPOINT ["/entrypoint.sh"]' \
	--change 'EXPOSE 9000 8123' \
	--change 'ENV LANG=C.UTF-8' \
	- "$IMAGE"
echo "build.sh: built $IMAGE"
