module github.com/ponix-go/ponix/migrations

go 1.26
