//go:build integration

package integration

// A writer stalled in the middle of an insert — its process paused, its VM frozen — with part
// of a data block sent. With WithStallTimeout the server gives the insert up after that long
// and stores none of it, so the insert cannot commit when the writer goes on (after a consumer
// may have handed its batch to another instance); without it the server waits (300 s by
// default) and commits the rows late.

import (
	"context"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ponix-go/ponix/ponixclickhouse"
)

// stallProxy is a TCP proxy between a writer and ClickHouse. Once armed it lets through the
// first `after` bytes the client sends, then holds the rest of that connection's bytes until
// release — the server sees what a writer stalled in the middle of a block sends: nothing more.
type stallProxy struct {
	ln     net.Listener
	target string

	mu      sync.Mutex
	armed   bool
	after   int
	sent    int
	held    chan struct{} // closed when the proxy holds a client's bytes
	release chan struct{} // closed to let them through
	conns   []net.Conn
}

func startStallProxy(t *testing.T, target string) *stallProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &stallProxy{ln: ln, target: target, held: make(chan struct{}), release: make(chan struct{})}
	go p.serve()
	t.Cleanup(func() {
		ln.Close()
		p.let()
		p.mu.Lock()
		defer p.mu.Unlock()
		for _, c := range p.conns {
			c.Close()
		}
	})
	return p
}

func (p *stallProxy) addr() string { return p.ln.Addr().String() }

func (p *stallProxy) serve() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		s, err := net.Dial("tcp", p.target)
		if err != nil {
			c.Close()
			continue
		}
		p.mu.Lock()
		p.conns = append(p.conns, c, s)
		p.mu.Unlock()
		go p.pipe(s, c, true)
		go p.pipe(c, s, false)
	}
}

// pipe copies src to dst and closes both at the end; on the client's side (fromClient) it
// holds the bytes past the armed limit.
func (p *stallProxy) pipe(dst, src net.Conn, fromClient bool) {
	defer func() { src.Close(); dst.Close() }()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			chunk := buf[:n]
			if fromClient {
				if pass, hold := p.cut(n); hold {
					if _, werr := dst.Write(chunk[:pass]); werr != nil {
						return
					}
					<-p.release
					chunk = chunk[pass:]
				}
			}
			if _, werr := dst.Write(chunk); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// cut counts n client bytes and says whether to hold part of them (after letting pass through).
func (p *stallProxy) cut(n int) (pass int, hold bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.armed {
		return n, false
	}
	if p.sent+n <= p.after {
		p.sent += n
		return n, false
	}
	pass = p.after - p.sent
	p.armed = false
	close(p.held)
	return pass, true
}

// arm makes the proxy hold a client's bytes past the next `after` bytes.
func (p *stallProxy) arm(after int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.armed, p.after, p.sent = true, after, 0
}

// let lets the held bytes through.
func (p *stallProxy) let() {
	p.mu.Lock()
	defer p.mu.Unlock()
	select {
	case <-p.release:
	default:
		close(p.release)
	}
}

func TestStallTimeoutDropsTheInsertOfAStalledWriter(t *testing.T) {
	// ~350 KB: the proxy holds all but the first 32 KiB. The stall timeout leaves the writer
	// time to send its rows after the server's answer to the INSERT statement (the column copies)
	// on a machine loaded by the other suites, under -race.
	const rows = 5_000
	const stall = 3 * time.Second
	for _, tc := range []struct {
		name  string
		stall time.Duration
	}{{"with a stall timeout", stall}, {"without", 0}} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx := t.Context()
			db := srv.NewDatabase(t)
			if err := db.Conn.Exec(ctx, `CREATE TABLE readings (at DateTime, value Float64, sensor String)
				ENGINE = MergeTree() ORDER BY (sensor, at)`); err != nil {
				t.Fatal(err)
			}
			p := startStallProxy(t, db.Config.Addr)
			cfg := db.Config
			cfg.Addr = p.addr()
			conn, err := ponixclickhouse.Open(ctx, cfg)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = conn.Close() })
			w, err := ponixclickhouse.NewBatchWriter(ctx, conn, ponixclickhouse.Table{Database: db.Name, Name: "readings"},
				func() ponixclickhouse.Encoder[reading] { return &readingEncoder{} }, ponixclickhouse.WithStallTimeout(tc.stall))
			if err != nil {
				t.Fatal(err)
			}
			batch := make([]reading, rows)
			at := time.Date(2026, 12, 5, 9, 0, 0, 0, time.UTC)
			for i := range batch {
				batch[i] = reading{Sensor: fmt.Sprintf("sensor-%06d-%s", i, strings.Repeat("x", 40)), Value: float64(i), At: at}
			}

			p.arm(32 << 10)
			written := make(chan error, 1)
			go func() { written <- w.Write(context.Background(), batch) }()
			select {
			case <-p.held:
			case err := <-written:
				t.Fatalf("the write ended before the proxy held its data: %v", err)
			case <-time.After(30 * time.Second):
				t.Fatal("the proxy held no data within 30 s")
			}
			// The writer is stalled in the middle of its block now.
			inserting := func() bool {
				var n uint64
				if err := db.Conn.QueryRow(ctx, "SELECT count() FROM system.processes WHERE query LIKE 'INSERT INTO%readings%'").Scan(&n); err != nil {
					t.Fatal(err)
				}
				return n > 0
			}
			if tc.stall > 0 {
				deadline := time.Now().Add(30 * time.Second)
				for inserting() {
					if time.Now().After(deadline) {
						t.Fatal("the server still runs the stalled insert 30 s later")
					}
					time.Sleep(50 * time.Millisecond)
				}
			} else {
				// Twice the other case's bound: the server still waits for the writer.
				time.Sleep(2 * stall)
				if !inserting() {
					t.Fatalf("without a stall timeout the server gave the insert up within %s", 2*stall)
				}
			}
			p.let() // the writer goes on
			var err2 error
			select {
			case err2 = <-written:
			case <-time.After(30 * time.Second):
				t.Fatal("the write did not end within 30 s of the writer going on")
			}
			var stored uint64
			if err := db.Conn.QueryRow(ctx, "SELECT count() FROM readings").Scan(&stored); err != nil {
				t.Fatal(err)
			}
			if tc.stall > 0 {
				if err2 == nil {
					t.Fatal("the write of the stalled insert succeeded")
				}
				if c := ponixclickhouse.Classify(err2); c == ponixclickhouse.ClassData || c == ponixclickhouse.ClassRow {
					t.Errorf("err = %v: class %q blames the rows, not the sink", err2, c)
				}
				if stored != 0 {
					t.Fatalf("%d rows of the given-up insert stored", stored)
				}
				t.Logf("the writer went on and was told: %v (class %s)", err2, ponixclickhouse.Classify(err2))
				return
			}
			if err2 != nil || stored != rows {
				t.Fatalf("without a stall timeout: err = %v, %d rows stored; want the late insert committed (%d rows)", err2, stored, rows)
			}
		})
	}
}
