package ponixclickhouse

import (
	"context"
	"fmt"
	"io"
	"sync"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
)

// Conn is the ClickHouse connection [Open] returns: a clickhouse-go connection pool that can
// be renewed. It implements driver.Conn by handing every call to the current pool.
//
// Renew replaces the pool with a new one of the same [Config]: connections log in when they
// open, so a fix of the user's password, rights or profile (a user made read-only, then
// restored) is seen only by new connections. A [BatchWriter] on a Conn renews it by itself
// after an authentication or permission fault, so that the next insert logs in anew.
type Conn struct {
	cfg Config

	mu  sync.RWMutex
	cur driver.Conn
	gen uint64 // renewals so far
}

var _ driver.Conn = (*Conn)(nil)

// newConn opens a pool for cfg; it does not connect.
func newConn(cfg Config) (*Conn, error) {
	cur, err := clickhouse.Open(cfg.Options())
	if err != nil {
		return nil, err
	}
	return &Conn{cfg: cfg, cur: cur}, nil
}

func (c *Conn) pool() driver.Conn {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.cur
}

// Renew opens a new pool (it does not connect yet) and closes the old one: its idle
// connections at once, the ones in use when they are released. If opening fails the old pool
// is kept.
func (c *Conn) Renew() {
	next, err := clickhouse.Open(c.cfg.Options())
	if err != nil {
		return
	}
	c.mu.Lock()
	old := c.cur
	c.cur = next
	c.gen++
	c.mu.Unlock()
	_ = old.Close()
}

// Renewals reports how many times the pool was renewed.
func (c *Conn) Renewals() uint64 {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.gen
}

// Contributors implements driver.Conn.
func (c *Conn) Contributors() []string { return c.pool().Contributors() }

// ServerVersion implements driver.Conn.
func (c *Conn) ServerVersion() (*driver.ServerVersion, error) { return c.pool().ServerVersion() }

// Select implements driver.Conn.
func (c *Conn) Select(ctx context.Context, dest any, query string, args ...any) error {
	return c.pool().Select(ctx, dest, query, args...)
}

// Query implements driver.Conn.
func (c *Conn) Query(ctx context.Context, query string, args ...any) (driver.Rows, error) {
	return c.pool().Query(ctx, query, args...)
}

// QueryRow implements driver.Conn.
func (c *Conn) QueryRow(ctx context.Context, query string, args ...any) driver.Row {
	return c.pool().QueryRow(ctx, query, args...)
}

// PrepareBatch implements driver.Conn.
func (c *Conn) PrepareBatch(ctx context.Context, query string, opts ...driver.PrepareBatchOption) (driver.Batch, error) {
	return c.pool().PrepareBatch(ctx, query, opts...)
}

// Exec implements driver.Conn.
func (c *Conn) Exec(ctx context.Context, query string, args ...any) error {
	return c.pool().Exec(ctx, query, args...)
}

// QueryFormat implements driver.Conn.
func (c *Conn) QueryFormat(ctx context.Context, format string, query string, args ...any) (io.ReadCloser, error) {
	return c.pool().QueryFormat(ctx, format, query, args...)
}

// InsertFormat implements driver.Conn.
func (c *Conn) InsertFormat(ctx context.Context, format string, query string, data io.Reader) error {
	return c.pool().InsertFormat(ctx, format, query, data)
}

// AsyncInsert implements driver.Conn (deprecated there: use a context with WithAsync).
func (c *Conn) AsyncInsert(ctx context.Context, query string, wait bool, args ...any) error {
	return c.pool().AsyncInsert(ctx, query, wait, args...) //lint:ignore SA1019 Conn must implement the whole driver.Conn
}

// Ping implements driver.Conn.
func (c *Conn) Ping(ctx context.Context) error { return c.pool().Ping(ctx) }

// Stats implements driver.Conn.
func (c *Conn) Stats() driver.Stats { return c.pool().Stats() }

// Close closes the current pool.
func (c *Conn) Close() error {
	if err := c.pool().Close(); err != nil {
		return fmt.Errorf("clickhouse: close: %w", err)
	}
	return nil
}
