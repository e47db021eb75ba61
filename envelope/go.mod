module github.com/ponix-go/ponix/envelope

go 1.26.0

require (
	buf.build/gen/go/ponix/ponix/protocolbuffers/go v0.1.0
	google.golang.org/protobuf v1.36.12
)

replace buf.build/gen/go/ponix/ponix/protocolbuffers/go => ../proto
