package chtest_test

import (
	"testing"

	"github.com/ponix-go/ponix/ponixclickhouse/chtest"
)

// In a test: a server (shared per package via TestMain, or per test with New) and a fresh
// database that is dropped when the test ends.
func ExampleServer_NewDatabase() {
	var t *testing.T // the test's *testing.T
	srv := chtest.New(t)
	db := srv.NewDatabase(t)
	_ = db.Conn.Exec(t.Context(), "CREATE TABLE t (x UInt8) ENGINE = Memory")
}
