module github.com/ponix-go/ponix/ponixclickhouse

go 1.26.0

require (
	buf.build/gen/go/ponix/ponix/protocolbuffers/go v0.1.0
	github.com/ClickHouse/clickhouse-go/v2 v2.51.0
	github.com/pressly/goose/v3 v3.30.0
	google.golang.org/protobuf v1.36.12
)

require (
	github.com/ClickHouse/ch-go v0.75.0
	github.com/andybalholm/brotli v1.3.0 // indirect
	github.com/cespare/xxhash/v2 v2.3.0 // indirect
	github.com/go-faster/city v1.0.1 // indirect
	github.com/go-faster/errors v0.8.0 // indirect
	github.com/google/uuid v1.6.0 // indirect
	github.com/klauspost/compress v1.20.4 // indirect
	github.com/mfridman/interpolate v0.0.2 // indirect
	github.com/paulmach/orb v0.14.0 // indirect
	github.com/pierrec/lz4/v4 v4.1.33 // indirect
	github.com/ponix-go/ponix/envelope v0.1.0
	github.com/ponix-go/ponix/runner v0.1.0
	github.com/segmentio/asm v1.2.1 // indirect
	github.com/sethvargo/go-retry v0.5.0 // indirect
	github.com/shopspring/decimal v1.6.0 // indirect
	go.opentelemetry.io/otel v1.47.0 // indirect
	go.opentelemetry.io/otel/trace v1.47.0 // indirect
	go.uber.org/multierr v1.11.0 // indirect
	golang.org/x/sync v0.25.0 // indirect
	golang.org/x/sys v0.50.0 // indirect
)

replace buf.build/gen/go/ponix/ponix/protocolbuffers/go => ../proto

replace github.com/ponix-go/ponix/envelope => ../envelope

replace github.com/ponix-go/ponix/runner => ../runner
