//go:build integration

package chtest_test

import (
	"context"
	"strings"
	"testing"

	"github.com/ponix-go/ponix/ponixclickhouse/chtest"
)

func TestNewDatabaseIsFreshAndDroppedAtCleanup(t *testing.T) {
	srv := chtest.New(t)
	var name string
	t.Run("use", func(t *testing.T) {
		d := srv.NewDatabase(t)
		name = d.Name
		if err := d.Conn.Exec(t.Context(), "CREATE TABLE t (x UInt8) ENGINE = Memory"); err != nil {
			t.Fatal(err)
		}
		var cur string
		if err := d.DB.QueryRowContext(t.Context(), "SELECT currentDatabase()").Scan(&cur); err != nil || cur != d.Name {
			t.Fatalf("database/sql handle on %q (%v), want %q", cur, err, d.Name)
		}
	})
	d := srv.NewDatabase(t)
	var n uint64
	if err := d.Conn.QueryRow(context.Background(), "SELECT count() FROM system.databases WHERE name = ?", name).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Fatalf("database %s still exists after its test ended", name)
	}
	if d.Name == name {
		t.Fatal("two tests got the same database")
	}
}

func TestStartFailsWithAdviceWhenNothingWorks(t *testing.T) {
	t.Setenv(chtest.EnvAddr, "")
	t.Setenv(chtest.EnvMode, chtest.ModeContainer)
	t.Setenv(chtest.EnvImage, "ponix-test/no-such-image:0")
	_, err := chtest.Start(t.Context())
	if err == nil {
		t.Fatal("Start succeeded with a missing image")
	}
	for _, want := range []string{"apt-get install -y clickhouse-server", chtest.EnvAddr, "build.sh"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q: %v", want, err)
		}
	}
}
