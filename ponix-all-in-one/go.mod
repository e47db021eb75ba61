module github.com/ponix-go/ponix/ponix-all-in-one

go 1.26.0

require github.com/caarlos0/env/v11 v11.4.2

require github.com/rs/xid v1.6.0

require (
	buf.build/gen/go/ponix/ponix/protocolbuffers/go v0.0.0
	google.golang.org/protobuf v1.36.12
)

replace buf.build/gen/go/ponix/ponix/protocolbuffers/go => ../proto
