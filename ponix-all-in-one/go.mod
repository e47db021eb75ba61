module github.com/ponix-go/ponix/ponix-all-in-one

go 1.26
