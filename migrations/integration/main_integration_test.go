//go:build integration

package integration

import (
	"os"
	"testing"

	"github.com/ponix-go/ponix/ponixclickhouse/chtest"
)

// One ClickHouse for the package; every test takes a fresh database.
var srv *chtest.Server

func TestMain(m *testing.M) { os.Exit(chtest.Main(m, &srv)) }
