#!/usr/bin/env bash
# build-image.sh builds the ponix-all-in-one image from ponix-all-in-one/Dockerfile on a machine
# that cannot pull: the base images are the locally built equivalents of the official ones
# (docker/local-images/build.sh, built here when missing). Go modules come from this machine's
# module cache through a throwaway local GOPROXY (falling back to proxy.golang.org), so the build
# downloads nothing twice. Then it checks the image: non-root user, static binary that runs.
#
# Usage: build-image.sh   Env: PONIX_IMAGE (default ponix-all-in-one:latest),
#        GO_IMAGE / RUNTIME_IMAGE (default the local ones), VERSION (default git describe).
set -euo pipefail
cd "$(dirname "$0")/../.."

PONIX_IMAGE="${PONIX_IMAGE:-ponix-all-in-one:latest}"
GO_IMAGE="${GO_IMAGE:-ponix-build/golang:1.26}"
RUNTIME_IMAGE="${RUNTIME_IMAGE:-ponix-build/static:nonroot}"
VERSION="${VERSION:-$(git describe --always --dirty 2>/dev/null || echo dev)}"

log() { echo "build-image: $*"; }

if [[ "$GO_IMAGE" == ponix-build/* || "$RUNTIME_IMAGE" == ponix-build/* ]]; then
	BUILDER_IMAGE="$GO_IMAGE" RUNTIME_IMAGE="$RUNTIME_IMAGE" docker/local-images/build.sh builder runtime
fi

goproxy="https://proxy.golang.org,direct"
cache="$(go env GOMODCACHE 2>/dev/null)/cache/download"
proxy_pid=""
cleanup() { [[ -n "$proxy_pid" ]] && kill "$proxy_pid" 2>/dev/null || true; }
trap cleanup EXIT INT TERM
if [[ -d "$cache" ]] && command -v python3 >/dev/null; then
	port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
	python3 -m http.server "$port" --bind 127.0.0.1 --directory "$cache" >/dev/null 2>&1 &
	proxy_pid=$!
	for _ in $(seq 50); do curl -fs -o /dev/null "http://127.0.0.1:$port/" && break; sleep 0.1; done
	goproxy="http://127.0.0.1:$port,$goproxy"
	log "Go modules from the local module cache ($cache), then proxy.golang.org"
fi

log "building $PONIX_IMAGE (builder $GO_IMAGE, runtime $RUNTIME_IMAGE, version $VERSION)"
start=$(date +%s)
docker build --network host -f ponix-all-in-one/Dockerfile \
	--build-arg GO_IMAGE="$GO_IMAGE" --build-arg RUNTIME_IMAGE="$RUNTIME_IMAGE" \
	--build-arg GOPROXY="$goproxy" --build-arg VERSION="$VERSION" \
	-t "$PONIX_IMAGE" .
log "built $PONIX_IMAGE in $(($(date +%s) - start))s"

user="$(docker image inspect -f '{{.Config.User}}' "$PONIX_IMAGE")"
[[ "$user" == "65532:65532" ]] || { log "image user is '$user', want 65532:65532 (non-root)"; exit 1; }
out="$(docker run --rm "$PONIX_IMAGE" -version)"
[[ "$out" == "ponix-all-in-one $VERSION" ]] || { log "-version printed '$out', want 'ponix-all-in-one $VERSION'"; exit 1; }
# A bad value exits 2 naming the variable: the configuration is read inside the container.
set +e
bad="$(docker run --rm -e PONIX_NATS_BATCH_SIZE=lots "$PONIX_IMAGE" 2>&1)"
code=$?
set -e
[[ $code -eq 2 && "$bad" == *PONIX_NATS_BATCH_SIZE* ]] || { log "bad config: exit $code, output: $bad"; exit 1; }
log "ok: runs as $user, '$out', bad configuration exits 2"
