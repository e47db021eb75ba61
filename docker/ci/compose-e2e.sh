#!/usr/bin/env bash
# compose-e2e.sh runs Ponix end to end through the Compose files users run:
# docker/docker-compose.deps.yaml + docker/docker-compose.service.yaml, `up -d`, waits until
# envelopes from the service's producer are in ClickHouse (queried inside the container), checks
# /readyz, /metrics and the container healthcheck through the published port, then `down -v`
# (always, also on failure, after printing the containers' logs).
#
# Images (built locally when missing): PONIX_IMAGE (ponix-all-in-one:latest, docker/ci/build-image.sh),
# PONIX_NATS_IMAGE (ponix-test/nats:2.15), PONIX_CLICKHOUSE_IMAGE (ponix-test/clickhouse:18.16).
# Host ports default to unlikely ones on 127.0.0.1 (PONIX_*_PORT). Timeout: E2E_TIMEOUT_SECS (120).
set -euo pipefail
cd "$(dirname "$0")/../.."

export PONIX_IMAGE="${PONIX_IMAGE:-ponix-all-in-one:latest}"
export PONIX_NATS_IMAGE="${PONIX_NATS_IMAGE:-ponix-test/nats:2.15}"
export PONIX_CLICKHOUSE_IMAGE="${PONIX_CLICKHOUSE_IMAGE:-ponix-test/clickhouse:18.16}"
export PONIX_NATS_PORT="${PONIX_NATS_PORT:-34222}" PONIX_NATS_MONITOR_PORT="${PONIX_NATS_MONITOR_PORT:-38222}"
export PONIX_CLICKHOUSE_PORT="${PONIX_CLICKHOUSE_PORT:-39000}" PONIX_CLICKHOUSE_HTTP_PORT="${PONIX_CLICKHOUSE_HTTP_PORT:-38123}"
export PONIX_HTTP_PORT="${PONIX_HTTP_PORT:-38080}" PONIX_INTERVAL_SECS="${PONIX_INTERVAL_SECS:-1}"
export PONIX_NATS_BATCH_WAIT_SECS="${PONIX_NATS_BATCH_WAIT_SECS:-1}"
PROJECT="${COMPOSE_PROJECT:-ponix-ci}"
TIMEOUT="${E2E_TIMEOUT_SECS:-120}"

log() { echo "compose-e2e: $*"; }

if docker compose version >/dev/null 2>&1; then compose=(docker compose); else compose=(docker-compose); fi
dc() { "${compose[@]}" -p "$PROJECT" -f docker/docker-compose.deps.yaml -f docker/docker-compose.service.yaml "$@"; }
log "using $("${compose[@]}" version | head -1)"

docker image inspect "$PONIX_IMAGE" >/dev/null 2>&1 || docker/ci/build-image.sh
[[ "$PONIX_NATS_IMAGE" != ponix-test/nats:* ]] || NATS_IMAGE="$PONIX_NATS_IMAGE" docker/local-images/build.sh nats
[[ "$PONIX_CLICKHOUSE_IMAGE" != ponix-test/clickhouse:* ]] || IMAGE="$PONIX_CLICKHOUSE_IMAGE" docker/clickhouse-test-image/build.sh

ok=0
finish() {
	if [[ $ok -ne 1 ]]; then
		log "FAILED; container status and logs follow"
		dc ps || true
		dc logs --no-color --tail=200 || true
	fi
	dc down -v --remove-orphans >/dev/null 2>&1 || true
}
trap finish EXIT
dc down -v --remove-orphans >/dev/null 2>&1 || true # a leftover of an interrupted run

start=$(date +%s)
dc up -d
ch="$(dc ps -q clickhouse)"
svc="$(dc ps -q ponix-all-in-one)"
query() {
	docker exec "$ch" clickhouse-client --user ponix --password ponix --query "$1" 2>/dev/null
}

rows=0
until [[ "$rows" =~ ^[0-9]+$ && "$rows" -gt 0 ]]; do
	if (($(date +%s) - start > TIMEOUT)); then log "no envelope in ClickHouse after ${TIMEOUT}s"; exit 1; fi
	sleep 2
	rows="$(query "SELECT count() FROM ponix.processed_envelopes" || echo 0)"
done
log "$rows envelope(s) in ponix.processed_envelopes after $(($(date +%s) - start))s"
query "SELECT organization_id, end_device_id, occurred_at, data FROM ponix.processed_envelopes LIMIT 3"

base="http://127.0.0.1:$PONIX_HTTP_PORT"
ready="$(curl -fsS "$base/readyz")" || { log "/readyz not 200: $(curl -sS "$base/readyz" || true)"; exit 1; }
log "/readyz: $ready"
metrics="$(curl -fsS "$base/metrics")"
stored="$(awk '$1 == "ponix_envelopes_stored_total" {print $2}' <<<"$metrics")"
published="$(awk '$1 == "ponix_envelopes_published_total" {print $2}' <<<"$metrics")"
[[ -n "$stored" && "$stored" != 0 && -n "$published" && "$published" != 0 ]] ||
	{ log "metrics do not show the pipeline working: stored=$stored published=$published"; exit 1; }
grep -E '^ponix_(envelopes_consumed_total|consumer_pending_messages|build_info)' <<<"$metrics"
log "/metrics: published=$published stored=$stored"

# The image's HEALTHCHECK (ponix-all-in-one -healthcheck, no shell in the image) turns healthy.
until [[ "$(docker inspect -f '{{.State.Health.Status}}' "$svc")" == healthy ]]; do
	if (($(date +%s) - start > TIMEOUT)); then
		log "container never healthy: $(docker inspect -f '{{json .State.Health}}' "$svc")"; exit 1
	fi
	sleep 2
done
log "container healthy (image HEALTHCHECK)"
ok=1
log "passed in $(($(date +%s) - start))s"
