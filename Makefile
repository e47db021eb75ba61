# Ponix (Go) — the commands the README promises. `make help` lists them.
SHELL := /usr/bin/env bash
.SHELLFLAGS := -euo pipefail -c

MODULES := runner proto envelope ponixnats ponixclickhouse migrations ponix-all-in-one
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

.PHONY: help
help: ## list the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-16s %s\n", $$1, $$2}'

.PHONY: deps
deps: ## install missing system packages (clickhouse-server, protoc) with apt
	@scripts/ensure-deps.sh

.PHONY: run
run: deps ## run ponix-all-in-one locally (embedded NATS, local ClickHouse under ./.ponix)
	go build -o $(BIN)/ponix-all-in-one ./ponix-all-in-one
	PONIX_CLICKHOUSE_MANAGED=$${PONIX_CLICKHOUSE_MANAGED:-true} exec $(BIN)/ponix-all-in-one

.PHONY: test
test: deps ## all unit and integration tests against real NATS and ClickHouse
	go test -tags integration -count=1 -timeout $(TEST_TIMEOUT) work
	cd ponixnats && go test -tags 'integration ponix_noenvelope' -count=1 -timeout $(TEST_TIMEOUT) ./...
	cd ponixclickhouse && go test -tags 'integration ponix_noenvelope' -count=1 -timeout $(TEST_TIMEOUT) ./...

.PHONY: test-unit
test-unit: ## unit tests only (no servers)
	go test work

.PHONY: test-container
test-container: ## ClickHouse suites again through testcontainers with the locally built image
	docker/clickhouse-test-image/build.sh $(CLICKHOUSE_TEST_IMAGE)
	cd ponixclickhouse && PONIX_TEST_CLICKHOUSE_MODE=container PONIX_TEST_CLICKHOUSE_IMAGE=$(CLICKHOUSE_TEST_IMAGE) \
		go test -tags integration -count=1 -timeout $(TEST_TIMEOUT) ./...
	cd migrations && PONIX_TEST_CLICKHOUSE_MODE=container PONIX_TEST_CLICKHOUSE_IMAGE=$(CLICKHOUSE_TEST_IMAGE) \
		go test -tags integration -count=1 -timeout $(TEST_TIMEOUT) ./...

$(BIN)/protoc-gen-go:
	GOBIN=$(BIN) go install google.golang.org/protobuf/cmd/protoc-gen-go@$(PROTOC_GEN_GO_VERSION)

$(BIN)/staticcheck:
	GOBIN=$(BIN) go install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)

.PHONY: generate
generate: $(BIN)/protoc-gen-go ## regenerate proto/ Go code from the .proto files
	@command -v protoc >/dev/null || { echo "protoc missing: run 'make deps' (apt-get install protobuf-compiler)"; exit 1; }
	@v=$$(protoc --version | awk '{print $$2}'); [[ "$$v" == "$(PROTOC_VERSION)" ]] || \
		{ echo "protoc $$v found, want $(PROTOC_VERSION) (Debian bookworm's protobuf-compiler)"; exit 1; }
	cd proto && protoc --plugin=protoc-gen-go=$(BIN)/protoc-gen-go -I . \
		--go_out=. --go_opt=paths=source_relative \
		'--go_opt=Menvelope/v1/envelope_processed.proto=buf.build/gen/go/ponix/ponix/protocolbuffers/go/envelope/v1;envelopev1' \
		envelope/v1/envelope_processed.proto

.PHONY: check-generate
check-generate: generate ## fail when generated code is stale
	@git diff --exit-code -- proto || { echo "generated code is stale: run 'make generate' and commit"; exit 1; }
	@test -z "$$(git status --porcelain -- proto)" || { git status --porcelain -- proto; echo "untracked generated files"; exit 1; }

.PHONY: lint
lint: $(BIN)/staticcheck ## gofmt, go vet and staticcheck on every module, with and without build tags
	@out=$$(gofmt -l $(MODULES)); [[ -z "$$out" ]] || { echo "gofmt needed:"; echo "$$out"; exit 1; }
	@vetcheck() { echo "vet+staticcheck $$1 tags=[$$2]"; (cd $$1 && go vet -tags "$$2" ./... && $(BIN)/staticcheck -tags "$$2" ./...); }; \
	for m in $(MODULES); do vetcheck $$m "" && vetcheck $$m integration || exit 1; done; \
	for m in ponixnats ponixclickhouse; do vetcheck $$m ponix_noenvelope && vetcheck $$m "integration ponix_noenvelope" || exit 1; done

.PHONY: build-modules
build-modules: ## build each module on its own (GOWORK=off), as Docker builds do
	@for m in $(MODULES); do echo "build $$m (GOWORK=off)"; (cd $$m && GOWORK=off go build ./... && GOWORK=off go vet ./...) || exit 1; done
	cd ponixnats && GOWORK=off go build -tags ponix_noenvelope ./...
	cd ponixclickhouse && GOWORK=off go build -tags ponix_noenvelope ./...

.PHONY: ci
ci: deps lint check-generate build-modules test test-container image test-compose ## everything .ci/run runs

.PHONY: bench
bench: deps ## Go benchmarks of the hot path: decode, Struct→JSON, row encode, fetch+ack, writer at 1k/10k/100k rows
	cd ponixclickhouse && go test -run '^$$' -bench 'Decode|EncodeRow|EnvelopeEncode|StructJSON' -benchmem .
	cd ponixclickhouse && go test -tags integration -run '^$$' -bench EnvelopeWriter -benchmem -benchtime 5x .
	cd ponixnats && go test -tags integration -run '^$$' -bench FetchAck -benchmem -benchtime 200000x .

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
test-ops: deps ## metrics, health, logs and secure-connection tests (real HTTP, real binary)
	cd ponix-all-in-one && go test -count=1 ./internal/httpserver ./internal/metrics ./internal/config
	cd ponix-all-in-one && go test -tags integration -count=1 -timeout $(TEST_TIMEOUT) \
		-run 'TestMetricsHealthAndReadinessOverHTTP|TestAuthenticatedNATSAndPasswordClickHouse|TestHealthcheckFlag|TestMutualTLSToNATSAndClickHouse' .

.PHONY: compose-up
compose-up: ## run NATS, ClickHouse and the service with Compose (official images; PONIX_*_IMAGE to override)
	$(COMPOSE) -p ponix $(COMPOSE_FILES) up -d

.PHONY: compose-down
compose-down: ## stop the Compose stack and remove its volumes
	$(COMPOSE) -p ponix $(COMPOSE_FILES) down -v
