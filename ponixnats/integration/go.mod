module github.com/ponix-go/ponix/ponixnats/integration

go 1.26.0

require (
	buf.build/gen/go/ponix/ponix/protocolbuffers/go v0.1.0
	github.com/nats-io/jwt/v2 v2.8.3
	github.com/nats-io/nats-server/v2 v2.15.3
	github.com/nats-io/nats.go v1.55.0
	github.com/nats-io/nkeys v0.4.17
	github.com/ponix-go/ponix/envelope v0.1.0
	github.com/ponix-go/ponix/ponixnats v0.1.0
	github.com/ponix-go/ponix/ponixnats/natstest v0.1.0
	google.golang.org/protobuf v1.36.12
)

require (
	github.com/antithesishq/antithesis-sdk-go v0.9.0-default-no-op // indirect
	github.com/google/go-tpm v0.9.8 // indirect
	github.com/klauspost/compress v1.20.4 // indirect
	github.com/minio/highwayhash v1.0.4 // indirect
	github.com/nats-io/nuid v1.0.1 // indirect
	github.com/ponix-go/ponix/ponixnats/embedded v0.1.0 // indirect
	github.com/ponix-go/ponix/runner v0.1.0 // indirect
	golang.org/x/crypto v0.58.0 // indirect
	golang.org/x/sys v0.50.0 // indirect
	golang.org/x/time v0.16.0 // indirect
)

replace github.com/ponix-go/ponix/ponixnats => ..

replace github.com/ponix-go/ponix/envelope => ../../envelope

replace buf.build/gen/go/ponix/ponix/protocolbuffers/go => ../../proto

replace github.com/ponix-go/ponix/ponixnats/natstest => ../natstest

replace github.com/ponix-go/ponix/ponixnats/embedded => ../embedded

replace github.com/ponix-go/ponix/runner => ../../runner
