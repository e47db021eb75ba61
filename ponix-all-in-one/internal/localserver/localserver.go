// Package localserver starts the servers ponix-all-in-one runs itself when asked to: a managed
// clickhouse-server (PONIX_CLICKHOUSE_MANAGED=true) and an embedded NATS JetStream server (no
// PONIX_NATS_URL), each keeping its data under PONIX_DATA_DIR.
package localserver

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"strconv"

	"github.com/ponix-go/ponix/ponix-all-in-one/internal/config"
	"github.com/ponix-go/ponix/ponixclickhouse/chserver"
	"github.com/ponix-go/ponix/ponixnats/embedded"
)

// StartClickHouse starts (or restarts, keeping its data) the managed clickhouse-server on the
// port of PONIX_CLICKHOUSE_NATIVE_URL, with the configured user. The database is created by
// the migrations.
func StartClickHouse(ctx context.Context, cfg config.Config, logger *slog.Logger) (*chserver.Server, error) {
	addr, _ := cfg.ClickHouseAddr() // validated by config.Load
	_, portStr, _ := net.SplitHostPort(addr)
	port, _ := strconv.Atoi(portStr)
	srv, err := chserver.Start(ctx, chserver.Config{
		Dir:      filepath.Join(cfg.DataDir, "clickhouse"),
		TCPPort:  port,
		User:     cfg.ClickHouseUsername,
		Password: cfg.ClickHousePassword,
		Logger:   logger,
	})
	if err != nil {
		return nil, err
	}
	logger.Info("local ClickHouse ready", "addr", srv.Addr(), "dir", srv.Dir(),
		"query", fmt.Sprintf("clickhouse-client --port %d --user %s --password '***' -q \"SELECT * FROM %s.processed_envelopes ORDER BY occurred_at DESC LIMIT 10\"",
			port, cfg.ClickHouseUsername, cfg.ClickHouseDatabase))
	return srv, nil
}

// StartNATS starts the embedded NATS JetStream server on PONIX_NATS_EMBEDDED_ADDR, requiring
// the configured user or token.
func StartNATS(ctx context.Context, cfg config.Config, logger *slog.Logger) (*embedded.Server, error) {
	host, portStr, _ := net.SplitHostPort(cfg.NATSEmbeddedAddr)
	port, _ := strconv.Atoi(portStr)
	srv, err := embedded.Start(ctx, embedded.Config{
		Host:       host,
		Port:       port,
		StoreDir:   filepath.Join(cfg.DataDir, "nats"),
		ServerName: "ponix-embedded",
		Users:      cfg.EmbeddedUsers(),
		Token:      cfg.NATSToken,
	})
	if err != nil {
		return nil, fmt.Errorf("start embedded NATS server on %s: %w", cfg.NATSEmbeddedAddr, err)
	}
	logger.Info("embedded NATS JetStream server started", "url", srv.URL(), "store", srv.StoreDir())
	return srv, nil
}
