//go:build integration

package natstest_test

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/ponix-go/ponix/ponixnats/natstest"
)

func TestNewServesJetStreamAndRestartKeepsData(t *testing.T) {
	ctx := context.Background()
	srv := natstest.New(t)
	nc, err := nats.Connect(srv.URL(), nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "S", Subjects: []string{"s.>"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := js.Publish(ctx, "s.1", []byte("hello")); err != nil {
		t.Fatal(err)
	}
	url := srv.URL()
	if err := srv.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	if srv.URL() != url {
		t.Fatalf("URL changed across Restart: %s -> %s", url, srv.URL())
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		// Short attempts: a request sent while the client is still
		// reconnecting or JetStream is still recovering can go unanswered.
		actx, cancel := context.WithTimeout(ctx, time.Second)
		st, err := js.Stream(actx, "S")
		if err == nil {
			var msg *jetstream.RawStreamMsg
			msg, err = st.GetLastMsgForSubject(actx, "s.1")
			if err == nil && string(msg.Data) == "hello" {
				cancel()
				break
			}
		}
		cancel()
		if time.Now().After(deadline) {
			t.Fatalf("message not found after restart: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestStartShutdownRemovesTempStore(t *testing.T) {
	srv, err := natstest.Start()
	if err != nil {
		t.Fatal(err)
	}
	dir := srv.StoreDir()
	if _, err := os.Stat(dir); err != nil {
		t.Fatal(err)
	}
	srv.Shutdown()
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Fatalf("store %s still there after Shutdown: %v", dir, err)
	}
	if _, err := nats.Connect(srv.URL(), nats.Timeout(time.Second)); err == nil {
		t.Fatal("server still accepts connections after Shutdown")
	}
}

func TestUserPasswordRequired(t *testing.T) {
	srv := natstest.New(t, natstest.WithUserPassword("u", "p"))
	if nc, err := nats.Connect(srv.URL()); err == nil {
		nc.Close()
		t.Fatal("connected without credentials")
	}
	nc, err := nats.Connect(srv.URL(), nats.UserInfo("u", "p"))
	if err != nil {
		t.Fatal(err)
	}
	nc.Close()
}
