//go:build integration

package main_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"strings"
	"testing"
	"time"

	"github.com/ponix-go/ponix/ponixclickhouse"
	"github.com/ponix-go/ponix/ponixclickhouse/chtest"
)

// A stock ClickHouse has no database "ponix": the service creates the database
// PONIX_CLICKHOUSE_DATABASE names (saying so once), migrates it and consumes into it; started
// again, it finds the database there and says nothing of it.
func TestMissingDatabaseIsCreated(t *testing.T) {
	t.Parallel() // a database of its own
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	name := "ponix_created_" + hex.EncodeToString(b)
	cfg := chSrv.Config(name)
	t.Cleanup(func() {
		if admin, err := ponixclickhouse.Open(context.Background(), chSrv.Config("")); err == nil {
			_ = admin.Exec(context.Background(), "DROP DATABASE IF EXISTS "+name)
			_ = admin.Close()
		}
	})
	if _, err := ponixclickhouse.Open(t.Context(), cfg); err == nil {
		t.Fatalf("database %s exists before the test", name)
	}
	db := &chtest.Database{Name: name, Config: cfg}
	env := baseEnv(t, db)
	env["PONIX_NATS_EMBEDDED_ADDR"] = "127.0.0.1:0"
	s := startService(t, env)

	const created = "created the missing database"
	waitLog(t, s, created, 30*time.Second)
	db.Conn = mustOpen(t, cfg.Addr, name, cfg.Username, cfg.Password)
	first := waitRows(t, db, s, 3, 60*time.Second)
	s.terminate()
	if n := strings.Count(s.logs.String(), created); n != 1 {
		t.Errorf("%d %q lines, want 1", n, created)
	}

	s = startService(t, env)
	waitRows(t, db, s, first+2, 60*time.Second)
	s.terminate()
	if strings.Contains(s.logs.String(), created) {
		t.Errorf("the second start says it created the database:\n%s", s.logs.String())
	}
}
