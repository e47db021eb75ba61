module github.com/ponix-go/ponix/ponixclickhouse

go 1.26
