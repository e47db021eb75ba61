module github.com/ponix-go/ponix/migrations

go 1.26.0

replace github.com/ponix-go/ponix/ponixclickhouse => ../ponixclickhouse

replace github.com/ponix-go/ponix/envelope => ../envelope

replace buf.build/gen/go/ponix/ponix/protocolbuffers/go => ../proto
