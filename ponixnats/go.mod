module github.com/ponix-go/ponix/ponixnats

go 1.26.0

require (
	buf.build/gen/go/ponix/ponix/protocolbuffers/go v0.1.0
	github.com/nats-io/nats.go v1.55.0
	github.com/nats-io/nkeys v0.4.17
	google.golang.org/protobuf v1.36.12
)

require (
	github.com/klauspost/compress v1.20.4 // indirect
	github.com/nats-io/nuid v1.0.1 // indirect
	github.com/ponix-go/ponix/envelope v0.1.0
	github.com/ponix-go/ponix/runner v0.1.0
	golang.org/x/crypto v0.58.0 // indirect
	golang.org/x/sys v0.50.0 // indirect
)

replace buf.build/gen/go/ponix/ponix/protocolbuffers/go => ../proto

replace github.com/ponix-go/ponix/envelope => ../envelope

replace github.com/ponix-go/ponix/runner => ../runner
