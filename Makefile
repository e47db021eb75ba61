# Ponix (Go) — the commands the README promises. `make help` lists them.
SHELL := /usr/bin/env bash
.SHELLFLAGS := -euo pipefail -c

# Every module of the workspace: the libraries, their test helpers and test modules, the service.
MODULES := runner proto envelope \
	ponixnats ponixnats/embedded ponixnats/natstest ponixnats/integration \
	ponixclickhouse ponixclickhouse/chserver ponixclickhouse/chtest ponixclickhouse/chcluster ponixclickhouse/integration \
	migrations migrations/integration pipeline pipeline/integration ponix-all-in-one
# The libraries another team imports, which must build with and without ponix_noenvelope.
LIBRARIES := runner envelope ponixnats ponixclickhouse migrations pipeline
# Modules that require the released versions of the libraries (no replace): built and tested in
# the workspace and by make check-release, never alone (GOWORK=off) before the tags exist.
EXAMPLES := examples/readings
BIN     := $(CURDIR)/.bin

# Pinned tool versions (fetched from the Go module proxy into .bin/).
PROTOC_GEN_GO_VERSION := v1.36.12
STATICCHECK_VERSION   := v0.8.2
# make generate expects this protoc (Debian bookworm's protobuf-compiler); its version is
# written into the generated code, so another protoc would make the stale check fail.
PROTOC_VERSION        := 3.21.12

# Tests: fail, never skip, when a server is missing; Ryuk's image cannot be pulled here.
# -count=1: results that depend on real servers are never taken from the test cache.
export PONIX_TEST_REQUIRE_CLICKHOUSE ?= 1
export TESTCONTAINERS_RYUK_DISABLED ?= true
# With a local Docker socket, containers' ports are on 127.0.0.1. testcontainers would otherwise
# guess the default gateway when it finds /.dockerenv (as on these CI machines) and time out.
ifeq ($(DOCKER_HOST),)
export TESTCONTAINERS_HOST_OVERRIDE ?= 127.0.0.1
endif
TEST_TIMEOUT ?= 15m
CLICKHOUSE_TEST_IMAGE ?= ponix-test/clickhouse:18.16

# Where the race detector runs, and why (README, Testing). It finds data races in code whose
# goroutines share memory: the libraries (ponixnats's consumer with its prefetch, in-progress
# acks and hold; runner; pipeline; ponixclickhouse's writers) and the service's internal
# packages run under -race, and so do the service end-to-end tests in SERVICE_RACE_TESTS, whose
# binary is then built with -race too (main_test.go): the producer beside the consumer, the
# prefetching consumer at 10,000 envelopes, SIGTERM mid-stream and mid-batch, in-progress acks
# racing slow inserts on two instances, a NATS reconnect. The other service tests are fault
# windows (outages, holds, restarts, DLQ tooling): they check behaviour, spend their time
# waiting, and run the same code paths; they run against a binary built without -race, with
# more of them at once (TEST_PARALLEL_FAULTS: each has servers of its own), beside the race
# suites. Every test runs once per make test, in exactly one of the two sets.
SERVICE_PACKAGE      := github.com/ponix-go/ponix/ponix-all-in-one
SERVICE_RACE_TESTS   := TestProducerEnvelopesLandInClickHouse|TestExternalPublisherTenThousandExactlyOnce|TestSIGTERMMidStreamThenRestartLosesNothing|TestFaultSIGTERMMidBatchStoresAndAcks|TestFaultSlowInsertLongerThanAckWait|TestFaultNATSRestart
# Parallel tests under -race: eight at once starved the services on 2 cores (recoveries past
# their 60 s windows); four.
TEST_PARALLEL ?= 4
# Fault-window tests at once without -race: they mostly wait, each on servers of its own.
TEST_PARALLEL_FAULTS ?= 8

.PHONY: help
help: ## list the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-24s %s\n", $$1, $$2}'

.PHONY: deps
deps: ## install missing system packages (clickhouse-server, protoc) with apt
	@scripts/ensure-deps.sh

.PHONY: run
run: deps ## run ponix-all-in-one locally (embedded NATS, local ClickHouse under ./.ponix)
	go build -o $(BIN)/ponix-all-in-one ./ponix-all-in-one
	PONIX_CLICKHOUSE_MANAGED=$${PONIX_CLICKHOUSE_MANAGED:-true} exec $(BIN)/ponix-all-in-one

# make test runs four suites at once (each one's output is shown when it ends, -O):
# test-race (every package but the service's end-to-end package, and the cluster suite left to
# make test-cluster) and test-service-race (SERVICE_RACE_TESTS) under -race;
# test-service-faults (the rest of the service's end-to-end and fault tests), built without
# -race; test-noenvelope, the libraries' suites again with ponix_noenvelope, the generic build.
# Each part is a target of its own for a quicker loop.
.PHONY: test
test: deps ## all unit and integration tests against real NATS and ClickHouse (-race where it finds something: see the Makefile)
	@$(MAKE) --no-print-directory -j4 -O test-race test-service-race test-service-faults test-noenvelope

.PHONY: test-race
test-race: ## every package but the service's end-to-end tests (and the cluster suite), with -race
	go test -race -tags integration -count=1 -parallel $(TEST_PARALLEL) -timeout $(TEST_TIMEOUT) $$(go list work | grep -vxE '$(CLUSTER_PACKAGE)|$(SERVICE_PACKAGE)')

.PHONY: test-service-race
test-service-race: ## the service end-to-end tests that exercise the consumer's concurrency, binary and tests built with -race
	go test -race -tags integration -count=1 -parallel $(TEST_PARALLEL) -timeout $(TEST_TIMEOUT) -run '^($(SERVICE_RACE_TESTS))$$' $(SERVICE_PACKAGE)

.PHONY: test-service-faults
test-service-faults: ## the service's other end-to-end and fault tests, against a binary built without -race
	go test -tags integration -count=1 -parallel $(TEST_PARALLEL_FAULTS) -timeout $(TEST_TIMEOUT) -skip '^($(SERVICE_RACE_TESTS))$$' $(SERVICE_PACKAGE)

# The ponix_noenvelope build only leaves files out (every tagged file is !ponix_noenvelope): its
# code is a subset of the default build's, whose suites test-race runs under the race detector.
# This pass checks that the generic build builds and behaves, without -race.
.PHONY: test-noenvelope
test-noenvelope: ## the libraries' suites again with -tags ponix_noenvelope (the generic build)
	for m in ponixnats ponixnats/integration ponixclickhouse ponixclickhouse/integration; do \
		(cd $$m && go test -tags 'integration ponix_noenvelope' -count=1 -timeout $(TEST_TIMEOUT) ./...) || exit 1; done

.PHONY: test-unit
test-unit: ## unit tests only (no servers)
	go test work

# Watch mode (upstream's mise run test:watch): scripts/watch-tests.sh reruns the tests of the module
# of each saved file, with entr (installed on demand by scripts/ensure-deps.sh --watch, not by deps).
.PHONY: test-watch
test-watch: ## rerun the changed module's unit tests on every save (entr; Ctrl-C stops)
	scripts/watch-tests.sh

.PHONY: test-integration-watch
test-integration-watch: deps ## rerun the changed module's unit + integration tests (module and its integration/) on every save
	TEST_TIMEOUT=$(TEST_TIMEOUT) scripts/watch-tests.sh --integration

.PHONY: test-container
test-container: ## ClickHouse suites again through testcontainers with the locally built image
	docker/clickhouse-test-image/build.sh $(CLICKHOUSE_TEST_IMAGE)
	cd ponixclickhouse/integration && PONIX_TEST_CLICKHOUSE_MODE=container PONIX_TEST_CLICKHOUSE_IMAGE=$(CLICKHOUSE_TEST_IMAGE) \
		go test -tags integration -count=1 -timeout $(TEST_TIMEOUT) ./...
	cd migrations/integration && PONIX_TEST_CLICKHOUSE_MODE=container PONIX_TEST_CLICKHOUSE_IMAGE=$(CLICKHOUSE_TEST_IMAGE) \
		go test -tags integration -count=1 -timeout $(TEST_TIMEOUT) ./...

# The ClickHouse cluster suites need Docker and two local images (docker/cluster/build-images.sh
# builds them without a registry): chcluster's own findings (what 18.16 does under each fault)
# and the service binary against a 2 shards x 2 replicas cluster with ZooKeeper
# (ponix-all-in-one/cluster_integration_test.go, build tag cluster). docker/cluster/test.sh runs
# the two suites in parallel, each on a cluster of its own. make test leaves them to this target.
CLUSTER_PACKAGE      := github.com/ponix-go/ponix/ponixclickhouse/chcluster
CLUSTER_TEST_TIMEOUT ?= 25m

.PHONY: cluster-images
cluster-images: ## build the ClickHouse 18.16 and ZooKeeper 3.8 images of the test cluster when missing
	PONIX_NEED_DEBOOTSTRAP=1 scripts/ensure-deps.sh
	docker/cluster/build-images.sh

.PHONY: test-cluster
test-cluster: deps cluster-images ## the service against a real 2x2 ClickHouse cluster + ZooKeeper in Docker: faults, 20,000 envelopes each
	CLUSTER_TEST_TIMEOUT=$(CLUSTER_TEST_TIMEOUT) LOG_DIR=$(BIN)/test-cluster docker/cluster/test.sh

$(BIN)/protoc-gen-go:
	GOBIN=$(BIN) go install google.golang.org/protobuf/cmd/protoc-gen-go@$(PROTOC_GEN_GO_VERSION)

$(BIN)/staticcheck:
	GOBIN=$(BIN) go install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)

# Generated Go code is committed next to its .proto files in these directories.
PROTO_DIRS := proto examples/readings/proto

.PHONY: generate
generate: $(BIN)/protoc-gen-go ## regenerate the Go code of proto/ and examples/readings/proto from the .proto files
	@command -v protoc >/dev/null || { echo "protoc missing: run 'make deps' (apt-get install protobuf-compiler)"; exit 1; }
	@v=$$(protoc --version | awk '{print $$2}'); [[ "$$v" == "$(PROTOC_VERSION)" ]] || \
		{ echo "protoc $$v found, want $(PROTOC_VERSION) (Debian bookworm's protobuf-compiler)"; exit 1; }
	cd proto && protoc --plugin=protoc-gen-go=$(BIN)/protoc-gen-go -I . \
		--go_out=. --go_opt=paths=source_relative \
		'--go_opt=Menvelope/v1/envelope_processed.proto=buf.build/gen/go/ponix/ponix/protocolbuffers/go/envelope/v1;envelopev1' \
		envelope/v1/envelope_processed.proto
	cd examples/readings/proto && protoc --plugin=protoc-gen-go=$(BIN)/protoc-gen-go -I . \
		--go_out=. --go_opt=paths=source_relative \
		metrics/v1/reading.proto

.PHONY: check-generate
check-generate: generate ## fail when generated code is stale
	@git diff --exit-code -- $(PROTO_DIRS) || { echo "generated code is stale: run 'make generate' and commit"; exit 1; }
	@test -z "$$(git status --porcelain -- $(PROTO_DIRS))" || { git status --porcelain -- $(PROTO_DIRS); echo "untracked generated files"; exit 1; }

.PHONY: lint
lint: $(BIN)/staticcheck ## gofmt, go vet and staticcheck on every module, with and without build tags
	@out=$$(gofmt -l $(MODULES) $(EXAMPLES) scripts/releasetool); [[ -z "$$out" ]] || { echo "gofmt needed:"; echo "$$out"; exit 1; }
	@vetcheck() { echo "vet+staticcheck $$1 tags=[$$2]"; (cd $$1 && go vet -tags "$$2" ./... && $(BIN)/staticcheck -tags "$$2" ./...); }; \
	for m in $(MODULES) $(EXAMPLES); do vetcheck $$m "" && vetcheck $$m integration || exit 1; done; \
	vetcheck ponix-all-in-one "integration cluster" || exit 1; \
	for m in ponixnats ponixnats/integration ponixclickhouse ponixclickhouse/integration; do \
		vetcheck $$m ponix_noenvelope && vetcheck $$m "integration ponix_noenvelope" || exit 1; done
	@echo "vet+staticcheck scripts/releasetool (GOWORK=off)"; cd scripts/releasetool && GOWORK=off go vet ./... && GOWORK=off $(BIN)/staticcheck ./...

.PHONY: build-modules
build-modules: ## build each module on its own (GOWORK=off), as Docker builds do
	@for m in $(MODULES); do echo "build $$m (GOWORK=off)"; (cd $$m && GOWORK=off go build ./... && GOWORK=off go vet ./...) || exit 1; done
	@for m in ponixnats ponixclickhouse; do echo "build $$m -tags ponix_noenvelope (GOWORK=off)"; \
		(cd $$m && GOWORK=off go build -tags ponix_noenvelope ./...) || exit 1; done
	@# With the tag, neither library links an envelope package (nor the envelope protobuf types).
	@for m in ponixnats ponixclickhouse; do \
		deps=$$(cd $$m && GOWORK=off go list -deps -tags ponix_noenvelope ./... | grep -iE 'envelope' || true); \
		[[ -z "$$deps" ]] || { echo "$$m links envelope packages with -tags ponix_noenvelope:"; echo "$$deps"; exit 1; }; done
	@# Importing a library never pulls a server or a test framework into the importer's module graph.
	@for m in $(LIBRARIES); do \
		bad=$$(grep -E 'testcontainers|nats-server|testify|chserver|chtest|natstest|ponixnats/embedded' $$m/go.mod || true); \
		[[ -z "$$bad" ]] || { echo "$$m/go.mod requires test-only modules:"; echo "$$bad"; exit 1; }; done

.PHONY: tidy-check
tidy-check: ## fail when a module's go.mod or go.sum is not what go mod tidy makes of it
	@for m in $(MODULES); do echo "go mod tidy -diff $$m"; (cd $$m && GOWORK=off go mod tidy -diff) || \
		{ echo "$$m: go.mod/go.sum not tidy: run go mod tidy there and commit"; exit 1; }; done

# The proof that another team can import the released modules: scripts/release-check.sh builds a
# Go module proxy from the release tags (<dir>/vX.Y.Z) and builds and tests examples/readings
# from it alone, outside the workspace. ARGS=--snapshot checks the work tree instead (tagged in a
# temporary copy), ARGS=--auto the tags when there are any, else the work tree.
.PHONY: check-release
check-release: deps ## prove the tagged modules import from a module proxy: examples/readings tested outside the workspace (ARGS=--snapshot|--auto)
	cd scripts/releasetool && GOWORK=off go test -count=1 ./...
	scripts/release-check.sh $(ARGS)

.PHONY: ci
ci: deps lint check-generate tidy-check build-modules test-alerts test test-cluster test-container image test-compose ## everything .ci/run runs
	$(MAKE) check-release ARGS=--auto

.PHONY: bench
bench: deps ## Go benchmarks of the hot path: decode, Struct→JSON, row encode, lag metrics per batch, fetch+ack, writer at 1k/10k/100k rows
	cd ponixclickhouse && go test -run '^$$' -bench 'Decode|EncodeRow|EnvelopeEncode' -benchmem .
	cd envelope && go test -run '^$$' -bench 'DataJSON|EncodingJSON' -benchmem .
	cd ponix-all-in-one && go test -run '^$$' -bench ObserveStored -benchmem ./internal/metrics
	cd ponixclickhouse/integration && go test -tags integration -run '^$$' -bench EnvelopeWriter -benchmem -benchtime 5x .
	cd ponixnats/integration && go test -tags integration -run '^$$' -bench FetchAck -benchmem -benchtime 200000x .

.PHONY: bench-e2e
bench-e2e: deps ## ponix-bench: 1M envelopes through reference, ceilings and ponix (add ARGS=-latency for latency)
	go run ./ponix-all-in-one/cmd/ponix-bench $(ARGS)

.PHONY: clean
clean: ## remove tool binaries and local run data
	rm -rf $(BIN) .ponix

# --- Operations: container image, Compose end-to-end (docker/, ponix-all-in-one/Dockerfile) ---
PONIX_IMAGE ?= ponix-all-in-one:latest
COMPOSE_FILES := -f docker/docker-compose.deps.yaml -f docker/docker-compose.service.yaml
COMPOSE ?= $(shell docker compose version >/dev/null 2>&1 && echo "docker compose" || echo docker-compose)

.PHONY: images
images: ## build the local stand-ins for registry images (Go builder, static runtime, nats, ClickHouse)
	PONIX_NEED_DEBOOTSTRAP=1 scripts/ensure-deps.sh
	docker/local-images/build.sh
	docker/clickhouse-test-image/build.sh

.PHONY: image
image: ## build the ponix-all-in-one image (local base images) and check that it runs
	PONIX_NEED_DEBOOTSTRAP=1 scripts/ensure-deps.sh
	PONIX_IMAGE=$(PONIX_IMAGE) docker/ci/build-image.sh

.PHONY: test-compose
test-compose: ## Compose deps+service up with local images, envelopes in ClickHouse, /readyz, /metrics, down
	PONIX_NEED_DEBOOTSTRAP=1 scripts/ensure-deps.sh
	PONIX_IMAGE=$(PONIX_IMAGE) docker/ci/compose-e2e.sh

.PHONY: test-ops
test-ops: deps ## metrics, health, logs, status, alerts and secure-connection tests (real HTTP, real binary, real Prometheus, tmux)
	cd ponix-all-in-one && go test -count=1 ./internal/httpserver ./internal/metrics ./internal/config ./internal/statuscmd
	cd ponix-all-in-one && go test -tags integration -count=1 -timeout $(TEST_TIMEOUT) \
		-run 'TestMetricsHealthAndReadinessOverHTTP|TestAuthenticatedNATSAndPasswordClickHouse|TestHealthcheckFlag|TestMutualTLSToNATSAndClickHouse|TestStatusInTerminalAndJSON|TestPrometheusAlertsAndDashboardQueries|TestDashboardQueriesAreTheTestedSet' .

# Alert rules, their unit tests and the Prometheus config of the Compose monitoring stack
# (deploy/prometheus), with Debian's promtool (make deps installs the prometheus package). The
# rules also run in a real Prometheus against the service in make test
# (TestPrometheusAlertsAndDashboardQueries).
.PHONY: test-alerts
test-alerts: deps ## promtool: check the alert rules and the Prometheus config, run the rules' unit tests (deploy/prometheus)
	promtool check rules deploy/prometheus/ponix-alerts.yml
	promtool check config deploy/prometheus/prometheus.yml
	promtool test rules deploy/prometheus/ponix-alerts_test.yml

.PHONY: compose-up
compose-up: ## run NATS, ClickHouse and the service with Compose (official images; PONIX_*_IMAGE to override)
	$(COMPOSE) -p ponix $(COMPOSE_FILES) up -d

.PHONY: compose-up-monitoring
compose-up-monitoring: ## compose-up plus Prometheus (Ponix's alert rules) on :9090 and Grafana (the Ponix dashboard) on :3000
	$(COMPOSE) -p ponix $(COMPOSE_FILES) -f docker/docker-compose.monitoring.yaml up -d

.PHONY: compose-down
compose-down: ## stop the Compose stack (with the monitoring, if up) and remove its volumes
	$(COMPOSE) -p ponix $(COMPOSE_FILES) -f docker/docker-compose.monitoring.yaml down -v
