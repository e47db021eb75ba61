//go:build integration

package integration

import (
	"context"
	"errors"
	"net"
	"regexp"
	"strings"
	"testing"

	"github.com/ponix-go/ponix/ponixclickhouse"
)

func TestOpenPingsAndReportsServerVersion(t *testing.T) {
	db := srv.NewDatabase(t)
	cfg := db.Config
	cfg.Compression = true
	conn, err := ponixclickhouse.Open(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	v, err := ponixclickhouse.ServerVersion(t.Context(), conn)
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`^\d+\.\d+\.\d+$`).MatchString(v) {
		t.Fatalf("ServerVersion = %q, want major.minor.patch", v)
	}
	var sv string
	if err := conn.QueryRow(t.Context(), "SELECT version()").Scan(&sv); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(sv, v) {
		t.Fatalf("ServerVersion = %q, server says version() = %q", v, sv)
	}
	var cur string
	if err := conn.QueryRow(t.Context(), "SELECT currentDatabase()").Scan(&cur); err != nil {
		t.Fatal(err)
	}
	if cur != db.Name {
		t.Fatalf("connected to database %q, want %q", cur, db.Name)
	}
	t.Logf("server version %s", v)
}

func TestOpenWrongAddressNamesTheAddress(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close() // nothing listens there now
	cfg := srv.Config("")
	cfg.Addr = addr
	_, err = ponixclickhouse.Open(t.Context(), cfg)
	assertConfigError(t, err, "Addr", addr, ponixclickhouse.ErrUnreachable)
	if c := ponixclickhouse.Classify(err); c != ponixclickhouse.ClassUnreachable {
		t.Errorf("unreachable server is class %q, want %q: %v", c, ponixclickhouse.ClassUnreachable, err)
	}
}

func TestOpenUnknownDatabaseNamesTheDatabase(t *testing.T) {
	cfg := srv.Config("no_such_database_here")
	_, err := ponixclickhouse.Open(t.Context(), cfg)
	assertConfigError(t, err, "Database", "no_such_database_here", ponixclickhouse.ErrUnknownDatabase)
	if c := ponixclickhouse.Classify(err); c != ponixclickhouse.ClassSchema {
		t.Errorf("unknown database is class %q, want %q: %v", c, ponixclickhouse.ClassSchema, err)
	}
}

func TestOpenWrongPasswordNamesTheUser(t *testing.T) {
	cfg := srv.Config("")
	cfg.Password = "definitely-wrong-" + cfg.Password
	_, err := ponixclickhouse.Open(t.Context(), cfg)
	assertConfigError(t, err, "Username/Password", cfg.Username, ponixclickhouse.ErrAuthentication)
	if strings.Contains(err.Error(), cfg.Password) {
		t.Errorf("error leaks the password: %v", err)
	}
	if c := ponixclickhouse.Classify(err); c != ponixclickhouse.ClassAuthentication {
		t.Errorf("wrong password is class %q, want %q: %v", c, ponixclickhouse.ClassAuthentication, err)
	}

	cfg = srv.Config("")
	cfg.Username = "nobody_like_this"
	_, err = ponixclickhouse.Open(t.Context(), cfg)
	assertConfigError(t, err, "Username/Password", "nobody_like_this", ponixclickhouse.ErrAuthentication)
}

func TestOpenHonoursContextCancellation(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := ponixclickhouse.Open(ctx, srv.Config("")); err == nil {
		t.Fatal("Open with a cancelled context succeeded")
	}
}

func assertConfigError(t *testing.T, err error, setting, value string, sentinel error) {
	t.Helper()
	if err == nil {
		t.Fatalf("Open succeeded, want a %s error", setting)
	}
	var ce *ponixclickhouse.ConfigError
	if !errors.As(err, &ce) {
		t.Fatalf("error %v (%T) is not a *ConfigError", err, err)
	}
	if ce.Setting != setting || ce.Value != value {
		t.Errorf("ConfigError names %s=%q, want %s=%q (%v)", ce.Setting, ce.Value, setting, value, err)
	}
	if !errors.Is(err, sentinel) {
		t.Errorf("error %v does not wrap %v", err, sentinel)
	}
	if !strings.Contains(err.Error(), value) {
		t.Errorf("message %q does not name %q", err, value)
	}
	t.Logf("error: %v", err)
}
