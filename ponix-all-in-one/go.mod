module github.com/ponix-go/ponix/ponix-all-in-one

go 1.26.0

require github.com/caarlos0/env/v11 v11.4.2

require github.com/rs/xid v1.6.0

require (
	buf.build/gen/go/ponix/ponix/protocolbuffers/go v0.1.0
	google.golang.org/protobuf v1.36.12
)

replace buf.build/gen/go/ponix/ponix/protocolbuffers/go => ../proto

require (
	github.com/ClickHouse/clickhouse-go/v2 v2.51.0
	github.com/nats-io/nats.go v1.55.0
	github.com/ponix-go/ponix/migrations v0.1.0
	github.com/ponix-go/ponix/ponixclickhouse v0.1.0
	github.com/ponix-go/ponix/ponixnats v0.1.0
	github.com/ponix-go/ponix/runner v0.1.0
	github.com/prometheus/client_golang v1.25.0
)

require github.com/nats-io/nats-server/v2 v2.15.3

require (
	dario.cat/mergo v1.0.2 // indirect
	github.com/Azure/go-ansiterm v0.0.0-20261006220739-8c912ac31dd4 // indirect
	github.com/ClickHouse/ch-go v0.75.0 // indirect
	github.com/Microsoft/go-winio v0.6.4 // indirect
	github.com/andybalholm/brotli v1.3.0 // indirect
	github.com/antithesishq/antithesis-sdk-go v0.9.0-default-no-op // indirect
	github.com/beorn7/perks v1.0.1 // indirect
	github.com/cenkalti/backoff/v4 v4.3.0 // indirect
	github.com/cespare/xxhash/v2 v2.3.0 // indirect
	github.com/containerd/errdefs v1.0.0 // indirect
	github.com/containerd/errdefs/pkg v0.3.0 // indirect
	github.com/containerd/log v0.1.0 // indirect
	github.com/containerd/platforms v0.2.1 // indirect
	github.com/cpuguy83/dockercfg v0.3.2 // indirect
	github.com/distribution/reference v0.6.0 // indirect
	github.com/docker/go-connections v0.8.2 // indirect
	github.com/docker/go-units v0.5.0 // indirect
	github.com/ebitengine/purego v0.10.1 // indirect
	github.com/felixge/httpsnoop v1.1.0 // indirect
	github.com/go-faster/city v1.0.1 // indirect
	github.com/go-faster/errors v0.8.0 // indirect
	github.com/go-logr/logr v1.4.4 // indirect
	github.com/go-logr/stdr v1.2.2 // indirect
	github.com/go-ole/go-ole v1.3.0 // indirect
	github.com/google/go-tpm v0.9.8 // indirect
	github.com/google/uuid v1.6.0 // indirect
	github.com/klauspost/compress v1.20.4 // indirect
	github.com/kylelemons/godebug v1.1.0 // indirect
	github.com/lufia/plan9stats v0.0.0-20260330125221-c963978e514e // indirect
	github.com/magiconair/properties v1.18.12 // indirect
	github.com/mfridman/interpolate v0.0.2 // indirect
	github.com/minio/highwayhash v1.0.4 // indirect
	github.com/moby/docker-image-spec v1.3.1 // indirect
	github.com/moby/go-archive v0.3.3 // indirect
	github.com/moby/moby/api v1.56.1 // indirect
	github.com/moby/moby/client v0.6.2 // indirect
	github.com/moby/patternmatcher v0.6.1 // indirect
	github.com/moby/sys/sequential v0.7.0 // indirect
	github.com/moby/sys/user v0.4.1 // indirect
	github.com/moby/sys/userns v0.1.0 // indirect
	github.com/moby/term v0.5.2 // indirect
	github.com/munnerz/goautoneg v0.0.0-20191010083416-a7dc8b61c822 // indirect
	github.com/nats-io/jwt/v2 v2.8.3 // indirect
	github.com/nats-io/nkeys v0.4.17 // indirect
	github.com/nats-io/nuid v1.0.1 // indirect
	github.com/opencontainers/go-digest v1.0.0 // indirect
	github.com/opencontainers/image-spec v1.1.1 // indirect
	github.com/paulmach/orb v0.14.0 // indirect
	github.com/pierrec/lz4/v4 v4.1.33 // indirect
	github.com/ponix-go/ponix/envelope v0.1.0
	github.com/ponix-go/ponix/pipeline v0.1.0
	github.com/ponix-go/ponix/ponixclickhouse/chcluster v0.1.0
	github.com/ponix-go/ponix/ponixclickhouse/chserver v0.1.0
	github.com/ponix-go/ponix/ponixclickhouse/chtest v0.1.0
	github.com/ponix-go/ponix/ponixnats/embedded v0.1.0
	github.com/ponix-go/ponix/ponixnats/natstest v0.1.0
	github.com/power-devops/perfstat v0.0.0-20240221224432-82ca36839d55 // indirect
	github.com/pressly/goose/v3 v3.30.0 // indirect
	github.com/prometheus/client_model v0.6.3
	github.com/prometheus/common v0.72.0
	github.com/prometheus/procfs v0.23.0 // indirect
	github.com/segmentio/asm v1.2.1 // indirect
	github.com/sethvargo/go-retry v0.5.0 // indirect
	github.com/shirou/gopsutil/v4 v4.26.6 // indirect
	github.com/shopspring/decimal v1.6.0 // indirect
	github.com/sirupsen/logrus v1.10.2 // indirect
	github.com/stretchr/testify v1.12.1 // indirect
	github.com/testcontainers/testcontainers-go v0.45.0 // indirect
	github.com/tklauser/go-sysconf v0.4.0 // indirect
	github.com/tklauser/numcpus v0.12.0 // indirect
	github.com/yusufpapurcu/wmi v1.2.4 // indirect
	go.opentelemetry.io/auto/sdk v1.2.1 // indirect
	go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp v0.72.0 // indirect
	go.opentelemetry.io/otel v1.47.0 // indirect
	go.opentelemetry.io/otel/log v1.47.0 // indirect
	go.opentelemetry.io/otel/metric v1.47.0 // indirect
	go.opentelemetry.io/otel/trace v1.47.0 // indirect
	go.uber.org/multierr v1.11.0 // indirect
	go.yaml.in/yaml/v3 v3.0.6
	golang.org/x/crypto v0.58.0 // indirect
	golang.org/x/sync v0.25.0 // indirect
	golang.org/x/sys v0.50.0 // indirect
	golang.org/x/time v0.16.0 // indirect
)

replace (
	github.com/ponix-go/ponix/migrations => ../migrations
	github.com/ponix-go/ponix/ponixclickhouse => ../ponixclickhouse
	github.com/ponix-go/ponix/ponixnats => ../ponixnats
	github.com/ponix-go/ponix/runner => ../runner
)

replace github.com/ponix-go/ponix/envelope => ../envelope

replace github.com/ponix-go/ponix/ponixnats/embedded => ../ponixnats/embedded

replace github.com/ponix-go/ponix/ponixnats/natstest => ../ponixnats/natstest

replace github.com/ponix-go/ponix/ponixclickhouse/chserver => ../ponixclickhouse/chserver

replace github.com/ponix-go/ponix/ponixclickhouse/chtest => ../ponixclickhouse/chtest

replace github.com/ponix-go/ponix/ponixclickhouse/chcluster => ../ponixclickhouse/chcluster

replace github.com/ponix-go/ponix/pipeline => ../pipeline
