module github.com/ponix-go/ponix/runner

go 1.26.0
