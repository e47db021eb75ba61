//go:build integration && !ponix_noenvelope

package integration

import (
	"fmt"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/ponix-go/ponix/ponixclickhouse"
)

// BenchmarkEnvelopeWriter measures one native batch INSERT of n envelope rows
// given as wire bytes (the service's path), per row, against the test server.
func BenchmarkEnvelopeWriter(b *testing.B) {
	for _, n := range []int{1_000, 10_000, 100_000} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			db := srv.NewDatabase(b)
			if err := db.Conn.Exec(b.Context(), `CREATE TABLE processed_envelopes (
				organization_id String, end_device_id String, occurred_at DateTime, processed_at DateTime,
				data String, stream_created_ns UInt64, stream_seq UInt64
			) ENGINE = ReplacingMergeTree() PARTITION BY toYYYYMM(occurred_at)
			ORDER BY (organization_id, occurred_at, end_device_id, stream_seq)`); err != nil {
				b.Fatal(err)
			}
			w, err := ponixclickhouse.NewEnvelopeWriter(b.Context(), db.Conn, ponixclickhouse.Table{})
			if err != nil {
				b.Fatal(err)
			}
			rows := make([]ponixclickhouse.EnvelopeRow, n)
			for i := range rows {
				wire, err := proto.Marshal(envelope(b, i))
				if err != nil {
					b.Fatal(err)
				}
				rows[i] = ponixclickhouse.EnvelopeRow{Wire: wire, StreamSeq: uint64(i + 1)}
			}
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				if err := w.Write(b.Context(), rows); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/row")
			b.ReportMetric(float64(b.N*n)/b.Elapsed().Seconds(), "rows/s")
		})
	}
}
