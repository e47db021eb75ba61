//go:build integration

package migrations_test

import (
	"context"
	"fmt"
	"os"
	"testing"

	"github.com/ponix-go/ponix/ponixclickhouse/chtest"
)

var srv *chtest.Server

func TestMain(m *testing.M) {
	var err error
	srv, err = chtest.Start(context.Background())
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Fprintf(os.Stderr, "chtest: ClickHouse %s at %s (%s)\n", srv.Mode, srv.Addr, srv.Detail)
	code := m.Run()
	_ = srv.Close()
	os.Exit(code)
}
