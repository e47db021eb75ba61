package main

import (
	"embed"
	"io/fs"
)

// The service's goose migrations (schema/*.sql): the readings table, applied by the pipeline
// under the service's own migration set (application "readings").
//
//go:embed schema/*.sql
var schemaFiles embed.FS

// schema returns the migrations at the root of the file system, as migrate expects them.
func schema() fs.FS {
	sub, err := fs.Sub(schemaFiles, "schema")
	if err != nil {
		panic(err) // "schema" is a valid path: fs.Sub cannot fail
	}
	return sub
}
