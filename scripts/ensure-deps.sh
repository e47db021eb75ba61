#!/usr/bin/env bash
# Installs what the build, the tests and `make run` need on a Debian machine, only where missing:
#   clickhouse-server / clickhouse-client (the local ClickHouse the tests and `make run` start),
#   protoc (make generate), debootstrap (to build the local ClickHouse test image),
#   prometheus (promtool and the server: make test-alerts, the alert tests) and tmux (the status test).
# --watch installs only entr, for make test-watch / test-integration-watch (scripts/watch-tests.sh),
# so that make deps and CI never fetch it.
# Go tools (protoc-gen-go, staticcheck) come from the Go module proxy, pinned in the Makefile.
set -euo pipefail

need=()
if [[ "${1:-}" == --watch ]]; then
  command -v entr >/dev/null 2>&1 || need+=(entr)
else
  command -v clickhouse-server >/dev/null 2>&1 || need+=(clickhouse-server)
  command -v clickhouse-client >/dev/null 2>&1 || need+=(clickhouse-client)
  command -v protoc >/dev/null 2>&1 || need+=(protobuf-compiler)
  # make test-alerts and the tests of status and alerts: promtool and the Prometheus server
  # (Debian's prometheus package), tmux (status in a real terminal).
  command -v promtool >/dev/null 2>&1 && command -v prometheus >/dev/null 2>&1 || need+=(prometheus)
  command -v tmux >/dev/null 2>&1 || need+=(tmux)
  if [[ "${PONIX_NEED_DEBOOTSTRAP:-0}" == 1 ]]; then
    command -v debootstrap >/dev/null 2>&1 || need+=(debootstrap)
  fi
fi
[[ ${#need[@]} -eq 0 ]] && exit 0

if ! command -v apt-get >/dev/null 2>&1; then
  echo "ensure-deps: missing ${need[*]} and this is not a Debian/Ubuntu machine (no apt-get)." >&2
  echo "ensure-deps: install them yourself (ClickHouse, protoc, entr), or point the tests at a server with PONIX_TEST_CLICKHOUSE_ADDR." >&2
  exit 1
fi
sudo=""
if [[ $(id -u) -ne 0 ]]; then
  command -v sudo >/dev/null 2>&1 || { echo "ensure-deps: need root or sudo to apt-get install ${need[*]}" >&2; exit 1; }
  sudo="sudo"
fi
echo "ensure-deps: installing ${need[*]} with apt-get"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need[@]}" >/dev/null
# The Debian package starts no server for us to use (and may not be able to under a container);
# the tests and `make run` start their own throwaway clickhouse-server processes.
