module github.com/ponix-go/ponix/scripts/releasetool

go 1.26.0

require golang.org/x/mod v0.42.0
