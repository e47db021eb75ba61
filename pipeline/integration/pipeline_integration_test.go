//go:build integration

package integration

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/ponix-go/ponix/pipeline"
	"github.com/ponix-go/ponix/ponixclickhouse"
	"github.com/ponix-go/ponix/ponixclickhouse/chserver"
	"github.com/ponix-go/ponix/ponixnats"
)

// A protobuf pipeline from start to end: the database does not exist and is created, the
// migrations create the table under the test's own migration set, every good message becomes
// exactly one row, and each bad one is dead-lettered alone with its reason while the rest of
// its batch is stored.
func TestProtoPipelineEndToEnd(t *testing.T) {
	t.Parallel()
	ch := srv.Config(newDatabaseName(t))
	r := newRun(t, ch, nil)
	ready := httptest.NewServer(r.p)
	t.Cleanup(ready.Close)

	if err := r.p.Migrate(t.Context()); err != nil {
		t.Fatalf("Migrate: %v", err)
	}
	conn := openDB(t, ch) // the database exists now
	var versionTables uint64
	if err := conn.QueryRow(t.Context(), "SELECT count() FROM system.tables WHERE database = currentDatabase() AND name = ?",
		application+"_goose_db_version").Scan(&versionTables); err != nil || versionTables != 1 {
		t.Errorf("the migration set's own version table %s_goose_db_version: %d found (%v)", application, versionTables, err)
	}
	if err := r.p.Start(t.Context()); err != nil {
		t.Fatalf("Start: %v", err)
	}

	want := r.publishEnvelopes("dev1", 60)
	garbage := r.publish("dev1", []byte{0xff, 0xff, 0xff})
	want = append(want, r.publishEnvelopes("dev2", 40)...)
	noDevice, err := proto.Marshal(envelope("", 0))
	if err != nil {
		t.Fatal(err)
	}
	invalid := r.publish("dev3", noDevice)
	noTime := envelope("dev3", 0)
	noTime.OccurredAt = nil
	b, err := proto.Marshal(noTime)
	if err != nil {
		t.Fatal(err)
	}
	rejected := r.publish("dev3", b)
	want = append(want, r.publishEnvelopes("dev4", 50)...)
	r.start()

	waitRows(t, conn, want)
	r.wantDeadLetters(map[uint64]ponixnats.Reason{
		garbage: ponixnats.ReasonDecode, invalid: ponixnats.ReasonInvalid, rejected: ponixnats.ReasonRejected,
	})
	var devices, orgs uint64
	if err := conn.QueryRow(t.Context(), "SELECT uniqExact(end_device_id), countIf(organization_id = 'org') FROM "+tableName).
		Scan(&devices, &orgs); err != nil || devices != 3 || orgs != uint64(len(want)) {
		t.Errorf("rows of %d devices, %d with the organization (%v); want 3 and %d", devices, orgs, err, len(want))
	}
	waitFor(t, "the readiness endpoint says ready", func() (bool, string) {
		resp, err := http.Get(ready.URL)
		if err != nil {
			return false, err.Error()
		}
		defer resp.Body.Close()
		var body struct {
			Status string            `json:"status"`
			Checks map[string]string `json:"checks"`
		}
		err = json.NewDecoder(resp.Body).Decode(&body)
		return err == nil && resp.StatusCode == http.StatusOK && body.Status == "ready",
			fmt.Sprintf("%d %+v %v", resp.StatusCode, body, err)
	})
	waitFor(t, "every message acknowledged", func() (bool, string) {
		info, err := r.p.Consumer().Info(t.Context())
		if err != nil {
			return false, err.Error()
		}
		return info.NumAckPending == 0 && info.NumPending == 0, fmt.Sprintf("%d ack pending, %d pending", info.NumAckPending, info.NumPending)
	})
}

// A table dropped while the pipeline runs is created again from the migrations, and the
// messages published meanwhile are all stored.
func TestTableDroppedWhileRunningIsCreatedAgain(t *testing.T) {
	t.Parallel()
	r, conn := startOnNewDatabase(t)
	first := r.publishEnvelopes("dev1", 50)
	waitRows(t, conn, first)

	if err := conn.Exec(t.Context(), "DROP TABLE "+tableName); err != nil {
		t.Fatal(err)
	}
	then := r.publishEnvelopes("dev2", 50)
	waitRows(t, conn, then)
	waitConsuming(t, r) // the schema check forgets the dropped table
	r.wantDeadLetters(nil)
}

// A ClickHouse killed while the pipeline runs holds the batch in hand: the sink check names
// the fault, nothing is dead-lettered, and once the server is back everything is stored once.
func TestSinkFaultHoldsAndResumes(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	chs, err := chserver.Start(t.Context(), chserver.Config{Dir: dir, User: "ponix", Password: "ponix"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = chs.Kill() }) // a throwaway server: no need to wait for a clean stop
	ch := ponixclickhouse.Config{Addr: chs.Addr(), Database: "pipe", Username: "ponix", Password: "ponix"}
	r := newRun(t, ch, nil)
	r.start()
	first := r.publishEnvelopes("dev1", 30)
	waitConsuming(t, r)
	waitRows(t, openDB(t, ch), first)

	if err := chs.Kill(); err != nil {
		t.Fatal(err)
	}
	then := r.publishEnvelopes("dev2", 30)
	waitFor(t, "the sink check names the held batch", func() (bool, string) {
		err := r.p.Ready(t.Context())
		return err != nil && strings.Contains(err.Error(), pipeline.CheckSink+": batch held since"), fmt.Sprint(err)
	})
	if st := r.p.Hold().State(); !st.Held || st.Class != string(ponixclickhouse.ClassUnreachable) {
		t.Errorf("hold state %+v, want held, class unreachable", st)
	}

	_, port, _ := strings.Cut(chs.Addr(), ":")
	tcpPort, err := strconv.Atoi(port)
	if err != nil {
		t.Fatal(err)
	}
	again, err := chserver.Start(t.Context(), chserver.Config{Dir: dir, TCPPort: tcpPort, User: "ponix", Password: "ponix"})
	if err != nil {
		t.Fatalf("starting ClickHouse again: %v", err)
	}
	t.Cleanup(func() { _ = again.Kill() })
	waitRows(t, openDB(t, ch), slices.Concat(first, then))
	waitConsuming(t, r)
	if st := r.p.Hold().State(); st.Holds != 1 {
		t.Errorf("%d holds, want 1", st.Holds)
	}
	r.wantDeadLetters(nil)
}

// The durable consumer deleted while the pipeline runs is created again and resumes after the
// rows already stored: with a Key, no message is stored twice, whatever the ack floor the
// consumer knew.
func TestConsumerDeletedResumesAfterTheStoredRows(t *testing.T) {
	t.Parallel()
	r, conn := startOnNewDatabase(t)
	// Background merges would collapse a row stored twice before the raw count sees it.
	if err := conn.Exec(t.Context(), "SYSTEM STOP MERGES "+tableName); err != nil {
		t.Fatal(err)
	}
	first := r.publishEnvelopes("dev1", 100)
	waitRows(t, conn, first)

	if err := r.js.DeleteConsumer(t.Context(), streamName, durableName); err != nil {
		t.Fatal(err)
	}
	then := r.publishEnvelopes("dev2", 100)
	waitRows(t, conn, slices.Concat(first, then))
	info, err := r.js.Consumer(t.Context(), streamName, durableName)
	if err != nil {
		t.Fatalf("the durable consumer was not created again: %v", err)
	}
	if c := info.CachedInfo(); c.Delivered.Stream < then[len(then)-1] {
		t.Errorf("the new consumer delivered up to stream sequence %d, want %d", c.Delivered.Stream, then[len(then)-1])
	}
	r.wantDeadLetters(nil)
}
