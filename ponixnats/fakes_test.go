package ponixnats

import (
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// fakeMsg is a jetstream.Msg for unit tests of processors (no server).
type fakeMsg struct {
	jetstream.Msg // nil: calling anything not overridden panics
	subject       string
	data          []byte
}

func (m *fakeMsg) Data() []byte         { return m.data }
func (m *fakeMsg) Subject() string      { return m.subject }
func (m *fakeMsg) Headers() nats.Header { return nil }
func (m *fakeMsg) Reply() string        { return "" }

// replyMsg is a jetstream.Msg with only a reply subject.
type replyMsg struct {
	jetstream.Msg
	reply string
}

func (m replyMsg) Reply() string { return m.reply }
