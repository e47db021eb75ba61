package chserver_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/ponix-go/ponix/ponixclickhouse/chserver"
)

func TestStartWithoutBinaryNamesTheInstallCommand(t *testing.T) {
	_, err := chserver.Start(t.Context(), chserver.Config{Dir: t.TempDir(), Binary: "/nonexistent/clickhouse-server"})
	if !errors.Is(err, chserver.ErrBinaryNotFound) {
		t.Fatalf("err = %v, want ErrBinaryNotFound", err)
	}
	if !strings.Contains(err.Error(), "apt-get install -y clickhouse-server") {
		t.Errorf("error %q does not say how to install the binary", err)
	}
}

func TestStartRejectsBadUserName(t *testing.T) {
	_, err := chserver.Start(t.Context(), chserver.Config{Dir: t.TempDir(), User: "x><y"})
	if err == nil || !strings.Contains(err.Error(), "Config.User") {
		t.Fatalf("err = %v, want an error naming Config.User", err)
	}
}
