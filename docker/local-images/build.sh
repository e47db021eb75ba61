#!/usr/bin/env bash
# build.sh builds, without any registry, the images that CI (and any machine that cannot pull)
# needs to build and run Ponix with Docker and Compose:
#
#   ponix-build/golang:1.26     Go builder: a debootstrap bookworm rootfs (ca-certificates, git)
#                               plus this machine's Go toolchain (/usr/local/go) and CA bundle,
#                               with the environment of the official golang image (GOPATH=/go, PATH).
#   ponix-build/static:nonroot  runtime base equivalent to gcr.io/distroless/static-debian12:nonroot:
#                               CA certificates, /etc/passwd and /etc/group with nonroot (65532),
#                               /tmp; nothing else (no shell).
#   ponix-test/nats:2.15        nats-server v2.15.x built with CGO_ENABLED=0 on this machine,
#                               FROM scratch, ENTRYPOINT ["/nats-server"] as the official image.
#
# Each image is skipped when it exists (-f rebuilds). ponix-test/clickhouse:18.16 is built by
# docker/clickhouse-test-image/build.sh.
#
# Usage: build.sh [-f] [builder|runtime|nats ...]   (default: all three)
# Env:   BUILDER_IMAGE, RUNTIME_IMAGE, NATS_IMAGE (names above), NATS_SERVER_VERSION (v2.15.2),
#        GO_ROOT (default: $(go env GOROOT)), MIRROR (default: the first URIs: line of
#        /etc/apt/sources.list.d/debian.sources).
set -euo pipefail

BUILDER_IMAGE="${BUILDER_IMAGE:-ponix-build/golang:1.26}"
RUNTIME_IMAGE="${RUNTIME_IMAGE:-ponix-build/static:nonroot}"
NATS_IMAGE="${NATS_IMAGE:-ponix-test/nats:2.15}"
NATS_SERVER_VERSION="${NATS_SERVER_VERSION:-v2.15.2}"

force=0
if [[ "${1:-}" == "-f" ]]; then force=1; shift; fi
targets=("$@")
[[ ${#targets[@]} -eq 0 ]] && targets=(builder runtime nats)

log() { echo "local-images: $*"; }

exists() { [[ $force -eq 0 ]] && docker image inspect "$1" >/dev/null 2>&1; }

work="$(mktemp -d /tmp/ponix-local-images.XXXXXX)"
trap 'rm -rf "$work"' EXIT INT TERM

build_builder() {
	if exists "$BUILDER_IMAGE"; then log "$BUILDER_IMAGE exists"; return; fi
	local goroot="${GO_ROOT:-$(go env GOROOT)}"
	[[ -x "$goroot/bin/go" ]] || { log "no Go toolchain at $goroot (set GO_ROOT)"; exit 1; }
	command -v debootstrap >/dev/null || { log "installing debootstrap"; apt-get install -y -qq debootstrap >/dev/null; }
	local mirror="${MIRROR:-$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)}"
	mirror="${mirror:-http://deb.debian.org/debian}"
	local rootfs="$work/builder"
	log "debootstrap bookworm (minbase, ca-certificates, git) from $mirror"
	debootstrap --variant=minbase --include=ca-certificates,git bookworm "$rootfs" "$mirror" >"$work/debootstrap.log" 2>&1 ||
		{ tail -50 "$work/debootstrap.log"; exit 1; }
	rm -rf "$rootfs/var/cache/apt/archives/"*.deb "$rootfs/var/lib/apt/lists/"* \
		"$rootfs/usr/share/doc" "$rootfs/usr/share/man" "$rootfs/usr/share/locale"
	log "copying the Go toolchain from $goroot ($("$goroot/bin/go" version))"
	mkdir -p "$rootfs/usr/local/go" "$rootfs/go/bin" "$rootfs/go/src"
	tar -C "$goroot" --exclude=./pkg/obj --exclude=./test -c . | tar -C "$rootfs/usr/local/go" -x
	# Trust what this machine trusts (e.g. a proxy's CA in /usr/local/share/ca-certificates), so
	# that `go` in the image reaches the module proxy exactly as it does on the host.
	cp /etc/ssl/certs/ca-certificates.crt "$rootfs/etc/ssl/certs/ca-certificates.crt"
	if compgen -G '/usr/local/share/ca-certificates/*.crt' >/dev/null; then
		cp /usr/local/share/ca-certificates/*.crt "$rootfs/usr/local/share/ca-certificates/"
	fi
	chmod 1777 "$rootfs/tmp"
	log "importing $BUILDER_IMAGE"
	tar -C "$rootfs" -c . | docker import \
		--change 'ENV GOPATH=/go' \
		--change 'ENV GOTOOLCHAIN=local' \
		--change 'ENV PATH=/go/bin:/usr/local/go/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
		--change 'ENV LANG=C.UTF-8' \
		--change 'WORKDIR /go' \
		--change 'CMD ["bash"]' \
		- "$BUILDER_IMAGE" >/dev/null
	log "built $BUILDER_IMAGE"
}

build_runtime() {
	if exists "$RUNTIME_IMAGE"; then log "$RUNTIME_IMAGE exists"; return; fi
	local certs=/etc/ssl/certs/ca-certificates.crt
	[[ -s $certs ]] || { log "installing ca-certificates"; apt-get install -y -qq ca-certificates >/dev/null; }
	local rootfs="$work/runtime"
	mkdir -p "$rootfs/etc/ssl/certs" "$rootfs/tmp" "$rootfs/home/nonroot"
	cp "$certs" "$rootfs/etc/ssl/certs/ca-certificates.crt"
	cat >"$rootfs/etc/passwd" <<'PASSWD'
root:x:0:0:root:/root:/sbin/nologin
nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin
nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin
PASSWD
	cat >"$rootfs/etc/group" <<'GROUP'
root:x:0:
nobody:x:65534:
nonroot:x:65532:
GROUP
	chmod 1777 "$rootfs/tmp"
	chown 65532:65532 "$rootfs/home/nonroot"
	log "importing $RUNTIME_IMAGE"
	tar -C "$rootfs" --numeric-owner -c . | docker import \
		--change 'USER 65532:65532' \
		--change 'WORKDIR /home/nonroot' \
		--change 'ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt' \
		- "$RUNTIME_IMAGE" >/dev/null
	log "built $RUNTIME_IMAGE"
}

build_nats() {
	if exists "$NATS_IMAGE"; then log "$NATS_IMAGE exists"; return; fi
	local ctx="$work/nats"
	mkdir -p "$ctx"
	log "building nats-server $NATS_SERVER_VERSION (CGO_ENABLED=0)"
	CGO_ENABLED=0 GOBIN="$ctx" GOFLAGS=-buildvcs=false go install -trimpath -ldflags '-s -w' \
		"github.com/nats-io/nats-server/v2@$NATS_SERVER_VERSION"
	cat >"$ctx/Dockerfile" <<'DOCKERFILE'
FROM scratch
COPY nats-server /nats-server
EXPOSE 4222 6222 8222
ENTRYPOINT ["/nats-server"]
CMD ["-js", "-m", "8222"]
DOCKERFILE
	log "building $NATS_IMAGE"
	docker build -q -t "$NATS_IMAGE" "$ctx" >/dev/null
	log "built $NATS_IMAGE"
}

for t in "${targets[@]}"; do
	case "$t" in
	builder) build_builder ;;
	runtime) build_runtime ;;
	nats) build_nats ;;
	*) log "unknown image $t (want builder, runtime or nats)"; exit 2 ;;
	esac
done
