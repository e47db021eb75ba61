// Package chtest gives a test a ready ClickHouse server and a fresh database per test.
//
// Where the server comes from:
//   - PONIX_TEST_CLICKHOUSE_ADDR (host:port, native protocol) with PONIX_TEST_CLICKHOUSE_USER and
//     PONIX_TEST_CLICKHOUSE_PASSWORD: that server;
//   - otherwise PONIX_TEST_CLICKHOUSE_MODE: "container" starts PONIX_TEST_CLICKHOUSE_IMAGE
//     (default clickhouse/clickhouse-server:25.8) with testcontainers-go; "process" starts the
//     local clickhouse-server binary as a throwaway process (see package chserver); "auto" (the
//     default) uses a container when Docker answers and the image is present locally, else the
//     local process.
//
// When no server can be had, Start returns an error and New fails the test with a message
// saying how to get one; tests never skip. (PONIX_TEST_REQUIRE_CLICKHOUSE=1 is accepted for CI;
// the behaviour is the same failure.) testcontainers' reaper (Ryuk) is not needed: chtest
// terminates its containers itself, so TESTCONTAINERS_RYUK_DISABLED=true is fine.
//
// Typical use shares one server per package:
//
//	var srv *chtest.Server
//
//	func TestMain(m *testing.M) {
//		var err error
//		srv, err = chtest.Start(context.Background())
//		if err != nil {
//			fmt.Fprintln(os.Stderr, err)
//			os.Exit(1)
//		}
//		code := m.Run()
//		_ = srv.Close()
//		os.Exit(code)
//	}
//
//	func TestSomething(t *testing.T) {
//		db := srv.NewDatabase(t) // fresh database, dropped at cleanup
//		_ = db.Conn.Exec(t.Context(), "CREATE TABLE t (x UInt8) ENGINE = Memory")
//	}
package chtest

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/testcontainers/testcontainers-go"
	"github.com/testcontainers/testcontainers-go/wait"

	"github.com/ponix-go/ponix/ponixclickhouse"
	"github.com/ponix-go/ponix/ponixclickhouse/chserver"
	"github.com/ponix-go/ponix/runner/backoff"
)

// Environment variables read by Start.
const (
	EnvAddr     = "PONIX_TEST_CLICKHOUSE_ADDR"
	EnvUser     = "PONIX_TEST_CLICKHOUSE_USER"
	EnvPassword = "PONIX_TEST_CLICKHOUSE_PASSWORD"
	EnvMode     = "PONIX_TEST_CLICKHOUSE_MODE"
	EnvImage    = "PONIX_TEST_CLICKHOUSE_IMAGE"
	EnvRequire  = "PONIX_TEST_REQUIRE_CLICKHOUSE"
)

// DefaultImage is the container image used when PONIX_TEST_CLICKHOUSE_IMAGE is not set.
const DefaultImage = "clickhouse/clickhouse-server:25.8"

// Modes of PONIX_TEST_CLICKHOUSE_MODE, and the Server.Mode of an external server.
const (
	ModeAuto      = "auto"
	ModeContainer = "container"
	ModeProcess   = "process"
	ModeExternal  = "external"
)

// HowToGetOne is the advice included in every "no ClickHouse" failure.
const HowToGetOne = `ClickHouse is needed for these tests; get one of:
  - a local binary: apt-get install -y clickhouse-server   (then PONIX_TEST_CLICKHOUSE_MODE=process or auto)
  - a running server: PONIX_TEST_CLICKHOUSE_ADDR=host:9000 [PONIX_TEST_CLICKHOUSE_USER=... PONIX_TEST_CLICKHOUSE_PASSWORD=...]
  - a container image: docker/clickhouse-test-image/build.sh builds ponix-test/clickhouse:18.16 offline;
    then PONIX_TEST_CLICKHOUSE_MODE=container PONIX_TEST_CLICKHOUSE_IMAGE=ponix-test/clickhouse:18.16
    (or docker pull clickhouse/clickhouse-server:25.8)`

// ErrNoClickHouse is wrapped by Start's error when no server could be had.
var ErrNoClickHouse = errors.New("no ClickHouse server available")

// Server is a ClickHouse server for tests.
type Server struct {
	// Addr is the native protocol address, host:port.
	Addr string
	// User and Password authenticate as a user who may create databases.
	User, Password string
	// Mode says where the server came from: external, container or process.
	Mode string
	// Detail describes it (the image, the binary's directory, or the address).
	Detail string

	stop func(context.Context) error
}

// Start returns a server chosen as the package documentation says. The caller must Close it.
func Start(ctx context.Context) (*Server, error) {
	if addr := os.Getenv(EnvAddr); addr != "" {
		s := &Server{Addr: addr, User: envOr(EnvUser, "default"), Password: os.Getenv(EnvPassword),
			Mode: ModeExternal, Detail: addr, stop: func(context.Context) error { return nil }}
		if err := s.waitReady(ctx, 30*time.Second); err != nil {
			return nil, fmt.Errorf("chtest: %s=%s: %w\n%s", EnvAddr, addr, err, HowToGetOne)
		}
		return s, nil
	}
	mode := envOr(EnvMode, ModeAuto)
	image := envOr(EnvImage, DefaultImage)
	switch mode {
	case ModeContainer:
		s, err := startContainer(ctx, image)
		if err != nil {
			return nil, fmt.Errorf("chtest: %w: %s=container: %w\n%s", ErrNoClickHouse, EnvMode, err, HowToGetOne)
		}
		return s, nil
	case ModeProcess:
		s, err := startProcess(ctx)
		if err != nil {
			return nil, fmt.Errorf("chtest: %w: %s=process: %w\n%s", ErrNoClickHouse, EnvMode, err, HowToGetOne)
		}
		return s, nil
	case ModeAuto:
		var errs []error
		if err := imageAvailable(ctx, image); err == nil {
			s, err := startContainer(ctx, image)
			if err == nil {
				return s, nil
			}
			errs = append(errs, fmt.Errorf("container %s: %w", image, err))
		} else {
			errs = append(errs, fmt.Errorf("container %s: %w", image, err))
		}
		s, err := startProcess(ctx)
		if err == nil {
			return s, nil
		}
		errs = append(errs, fmt.Errorf("process: %w", err))
		return nil, fmt.Errorf("chtest: %w: %w\n%s", ErrNoClickHouse, errors.Join(errs...), HowToGetOne)
	default:
		return nil, fmt.Errorf("chtest: %s=%q: want auto, container or process", EnvMode, mode)
	}
}

// New starts a server for one test (or benchmark) and closes it at cleanup. When no server can
// be had, the test fails with advice on how to get one.
func New(tb testing.TB) *Server {
	tb.Helper()
	s, err := Start(context.Background())
	if err != nil {
		if os.Getenv(EnvRequire) == "1" {
			tb.Fatalf("%s=1 and %v", EnvRequire, err)
		}
		tb.Fatal(err)
	}
	tb.Logf("chtest: ClickHouse %s at %s (%s)", s.Mode, s.Addr, s.Detail)
	tb.Cleanup(func() { _ = s.Close() })
	return s
}

// Close stops the server if chtest started it.
func (s *Server) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return s.stop(ctx)
}

// Config returns client settings for database on this server.
func (s *Server) Config(database string) ponixclickhouse.Config {
	return ponixclickhouse.Config{Addr: s.Addr, Database: database, Username: s.User, Password: s.Password}
}

// Database is a fresh database on a test server, with a native connection and a database/sql
// handle to it.
type Database struct {
	// Name of the database.
	Name string
	// Config connects to it.
	Config ponixclickhouse.Config
	// Conn is a native connection (clickhouse.Open) to it.
	Conn driver.Conn
	// DB is a database/sql handle (clickhouse.OpenDB) to it, e.g. for migrations.
	DB *sql.DB
}

// NewDatabase creates a database with a unique name, and drops it (and closes its connections)
// when the test ends.
func (s *Server) NewDatabase(tb testing.TB) *Database {
	tb.Helper()
	ctx := context.Background()
	d, err := s.CreateDatabase(ctx)
	if err != nil {
		tb.Fatalf("chtest: %v", err)
	}
	tb.Cleanup(func() {
		if err := s.DropDatabase(context.Background(), d); err != nil {
			tb.Errorf("chtest: %v", err)
		}
	})
	return d
}

// CreateDatabase creates a database with a unique name and opens connections to it; release
// it with DropDatabase. Tests use NewDatabase.
func (s *Server) CreateDatabase(ctx context.Context) (*Database, error) {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	name := "test_" + hex.EncodeToString(b)
	admin, err := ponixclickhouse.Open(ctx, s.Config(""))
	if err != nil {
		return nil, err
	}
	defer admin.Close()
	if err := admin.Exec(ctx, "CREATE DATABASE `"+name+"`"); err != nil {
		return nil, fmt.Errorf("create database %s: %w", name, err)
	}
	cfg := s.Config(name)
	conn, err := ponixclickhouse.Open(ctx, cfg)
	if err != nil {
		return nil, err
	}
	return &Database{Name: name, Config: cfg, Conn: conn, DB: ponixclickhouse.OpenDB(cfg)}, nil
}

// DropDatabase closes d's connections and drops it.
func (s *Server) DropDatabase(ctx context.Context, d *Database) error {
	_ = d.Conn.Close()
	_ = d.DB.Close()
	admin, err := ponixclickhouse.Open(ctx, s.Config(""))
	if err != nil {
		return fmt.Errorf("drop database %s: %w", d.Name, err)
	}
	defer admin.Close()
	if err := admin.Exec(ctx, "DROP DATABASE IF EXISTS `"+d.Name+"`"); err != nil {
		return fmt.Errorf("drop database %s: %w", d.Name, err)
	}
	return nil
}

func (s *Server) waitReady(ctx context.Context, limit time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	retry := backoff.Constant(200 * time.Millisecond).Start()
	for {
		conn, err := ponixclickhouse.Open(ctx, s.Config(""))
		if err == nil {
			_ = conn.Close()
			return nil
		}
		var cfgErr *ponixclickhouse.ConfigError
		if errors.As(err, &cfgErr) && !errors.Is(err, ponixclickhouse.ErrUnreachable) {
			return err // wrong user/password: waiting will not help
		}
		if retry.Wait(ctx) != nil {
			return fmt.Errorf("not ready after %s: %w", limit, err)
		}
	}
}

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

// startProcess runs the local clickhouse-server binary in a temporary directory.
func startProcess(ctx context.Context) (*Server, error) {
	dir, err := os.MkdirTemp("", "chtest-")
	if err != nil {
		return nil, err
	}
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	password := hex.EncodeToString(b)
	srv, err := chserver.Start(ctx, chserver.Config{Dir: dir, User: "default", Password: password, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		_ = os.RemoveAll(dir)
		return nil, err
	}
	return &Server{
		Addr: srv.Addr(), User: srv.User(), Password: password, Mode: ModeProcess,
		Detail: "clickhouse-server in " + dir,
		stop: func(ctx context.Context) error {
			err := srv.Stop(ctx)
			_ = os.RemoveAll(dir)
			return err
		},
	}, nil
}

// imageAvailable reports whether Docker answers and has image locally.
func imageAvailable(ctx context.Context, image string) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	cli, err := testcontainers.NewDockerClientWithOpts(ctx)
	if err != nil {
		return fmt.Errorf("docker: %w", err)
	}
	defer cli.Close()
	if _, err := cli.ImageInspect(ctx, image); err != nil {
		return fmt.Errorf("image not present locally (this machine may not be able to pull): %w", err)
	}
	return nil
}

// startContainer runs image with testcontainers-go, with the environment variables of the
// official ClickHouse image, and terminates it on Close.
func startContainer(ctx context.Context, image string) (*Server, error) {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	password := hex.EncodeToString(b)
	const user = "ponix"
	startCtx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	ctr, err := testcontainers.Run(startCtx, image,
		testcontainers.WithExposedPorts("9000/tcp"),
		testcontainers.WithEnv(map[string]string{
			"CLICKHOUSE_USER":     user,
			"CLICKHOUSE_PASSWORD": password,
			"CLICKHOUSE_DB":       "ponix",
			// The official image refuses network access for a default user without password;
			// a named user with a password is what it expects.
			"CLICKHOUSE_DEFAULT_ACCESS_MANAGEMENT": "1",
		}),
		testcontainers.WithWaitStrategy(wait.ForListeningPort("9000/tcp").WithStartupTimeout(2*time.Minute)),
	)
	if err != nil {
		if ctr != nil {
			_ = testcontainers.TerminateContainer(ctr)
		}
		return nil, err
	}
	endpoint, err := ctr.PortEndpoint(startCtx, "9000/tcp", "")
	if err != nil {
		_ = testcontainers.TerminateContainer(ctr)
		return nil, err
	}
	endpoint = strings.TrimPrefix(endpoint, "tcp://")
	s := &Server{
		Addr: endpoint, User: user, Password: password, Mode: ModeContainer, Detail: image + " " + ctr.GetContainerID()[:12],
		stop: func(context.Context) error { return testcontainers.TerminateContainer(ctr) },
	}
	if err := s.waitReady(startCtx, 2*time.Minute); err != nil {
		_ = testcontainers.TerminateContainer(ctr)
		return nil, err
	}
	return s, nil
}

// Main is the whole TestMain of a package whose tests share one server: it
// starts the server into *srv, runs the tests, closes the server and returns
// the exit code.
//
//	var srv *chtest.Server
//
//	func TestMain(m *testing.M) { os.Exit(chtest.Main(m, &srv)) }
func Main(m *testing.M, srv **Server) int {
	s, err := Start(context.Background())
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer s.Close()
	fmt.Fprintf(os.Stderr, "chtest: ClickHouse %s at %s (%s)\n", s.Mode, s.Addr, s.Detail)
	*srv = s
	return m.Run()
}
