#!/usr/bin/env bash
# test.sh runs the ClickHouse cluster suites (make test-cluster), each on a cluster of its own,
# in parallel — most of their time is spent waiting for faults to play out:
#
#   chcluster  ponixclickhouse/chcluster: what ClickHouse 18.16 does under each fault (FINDING lines)
#   service    ponix-all-in-one TestCluster (build tag cluster): the service binary against a
#              2 shards x 2 replicas cluster, one fault per scenario (FIGURES and CLUSTER lines)
#
# The images must exist (docker/cluster/build-images.sh). Full logs go to $LOG_DIR (default
# .bin/test-cluster); the summary lines of both are printed when each suite ends. Exits non-zero
# when either suite fails. Env: CLUSTER_TEST_TIMEOUT (default 25m), GO (default go).
set -euo pipefail
cd "$(dirname "$0")/../.."

timeout="${CLUSTER_TEST_TIMEOUT:-25m}"
go="${GO:-go}"
logs="${LOG_DIR:-.bin/test-cluster}"
mkdir -p "$logs"
logs="$(cd "$logs" && pwd)"
summary='^(=== RUN|--- |    --- |ok|FAIL|PASS|panic)|FIGURES|CLUSTER|FINDING|MEASURE|_test\.go:[0-9]+: '

# Each suite's cluster is named after this run. A run that is stopped (Ctrl-C, or .ci/run
# ending its background jobs' process group when a step failed), or a test binary that panics
# at its timeout, ends before the tests' own cleanup: on exit the run's two clusters
# (containers and networks, found by their label) are removed instead of left running.
run_id="ponix-cl-$$-$(od -An -N2 -tx1 /dev/urandom | tr -d ' \n')"
remove_clusters() {
	for name in "$run_id-svc" "$run_id-chc"; do
		docker ps -aq --filter "label=ponix.chcluster=$name" | xargs -r docker rm -f >/dev/null 2>&1 || true
		docker network ls -q --filter "label=ponix.chcluster=$name" | xargs -r docker network rm >/dev/null 2>&1 || true
	done
}
trap remove_clusters EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

begin=$(date +%s)
(cd ponixclickhouse/chcluster && PONIX_TEST_CLUSTER_NAME="$run_id-chc" "$go" test -tags integration -count=1 -timeout "$timeout" -v ./... >"$logs/chcluster.log" 2>&1) &
chcluster=$!
(cd ponix-all-in-one && PONIX_TEST_CLUSTER_NAME="$run_id-svc" "$go" test -tags 'integration cluster' -count=1 -timeout "$timeout" -run '^TestCluster$' -v . >"$logs/service.log" 2>&1) &
service=$!

status=0
for suite in service chcluster; do
	pid=${!suite}
	if wait "$pid"; then result=ok; else result=FAILED; status=1; fi
	echo "==> $suite suite: $result after $(($(date +%s) - begin)) s (full log: $logs/$suite.log)"
	grep -E "$summary" "$logs/$suite.log" | grep -v 'config\.PONIX_' | cut -c1-400 || true
done
echo "==> cluster suites done in $(($(date +%s) - begin)) s"
exit $status
