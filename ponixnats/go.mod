module github.com/ponix-go/ponix/ponixnats

go 1.26
