package ponixnats

import (
	"errors"
	"testing"
	"time"
)

func TestAckAllAndNakAll(t *testing.T) {
	r := AckAll(3)
	for i := range 3 {
		if d, ok := r.Decision(i); !ok || d.Action != ActionAck {
			t.Fatalf("AckAll(3).Decision(%d) = %v, %v; want ack", i, d, ok)
		}
	}
	if _, ok := r.Decision(3); ok {
		t.Fatal("AckAll(3) mentions index 3")
	}
	n := NakAll(2, time.Second)
	if d, ok := n.Decision(1); !ok || d.Action != ActionNak || d.Delay != time.Second {
		t.Fatalf("NakAll(2, 1s).Decision(1) = %+v, %v", d, ok)
	}
}

func TestPartialResultLeavesUnmentioned(t *testing.T) {
	r := NewResult(4)
	r.Ack(0)
	r.Nak(2, 5*time.Millisecond)
	if _, ok := r.Decision(1); ok {
		t.Fatal("index 1 was never set but is mentioned")
	}
	if d, _ := r.Decision(2); d.Action != ActionNak || d.Delay != 5*time.Millisecond {
		t.Fatalf("index 2 = %+v", d)
	}
	r.AckRest()
	for _, i := range []int{1, 3} {
		if d, ok := r.Decision(i); !ok || d.Action != ActionAck {
			t.Fatalf("after AckRest index %d = %+v, %v", i, d, ok)
		}
	}
	if d, _ := r.Decision(2); d.Action != ActionNak {
		t.Fatalf("AckRest overwrote index 2: %+v", d)
	}
	if r.Conflicts() != 0 {
		t.Fatalf("AckRest counted %d conflicts", r.Conflicts())
	}
}

func TestDuplicateMostConservativeWins(t *testing.T) {
	cases := []struct {
		name  string
		set   func(r *Result)
		want  Action
		delay time.Duration
	}{
		{"ack then nak", func(r *Result) { r.Ack(0); r.Nak(0, 0) }, ActionNak, 0},
		{"nak then ack", func(r *Result) { r.Nak(0, 0); r.Ack(0) }, ActionNak, 0},
		{"term then dead letter", func(r *Result) { r.Term(0, "x"); r.DeadLetter(0, ReasonInvalid, nil) }, ActionDeadLetter, 0},
		{"dead letter then term", func(r *Result) { r.DeadLetter(0, ReasonInvalid, nil); r.Term(0, "x") }, ActionDeadLetter, 0},
		{"ack then term", func(r *Result) { r.Ack(0); r.Term(0, "x") }, ActionTerm, 0},
		{"two naks keep the longer delay", func(r *Result) { r.Nak(0, time.Second); r.Nak(0, time.Millisecond) }, ActionNak, time.Second},
		{"ack all then nak", func(r *Result) { *r = AckAll(1); r.Nak(0, 0) }, ActionNak, 0},
		{"nak all then ack", func(r *Result) { *r = NakAll(1, 0); r.Ack(0) }, ActionNak, 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := NewResult(1)
			c.set(&r)
			d, ok := r.Decision(0)
			if !ok || d.Action != c.want || d.Delay != c.delay {
				t.Fatalf("decision = %+v (mentioned %v); want %s delay %s", d, ok, c.want, c.delay)
			}
			if r.Conflicts() != 1 {
				t.Fatalf("conflicts = %d; want 1", r.Conflicts())
			}
		})
	}
}

func TestSetBeyondSizeGrows(t *testing.T) {
	r := NewResult(1)
	r.Ack(3)
	if r.Len() != 4 {
		t.Fatalf("Len = %d; want 4", r.Len())
	}
	if _, ok := r.Decision(0); ok {
		t.Fatal("index 0 mentioned")
	}
	r.Ack(-1) // ignored
	if r.Len() != 4 {
		t.Fatalf("negative index changed Len to %d", r.Len())
	}
}

func TestNakBackoff(t *testing.T) {
	base, maxD := 100*time.Millisecond, time.Second
	for _, c := range []struct {
		n    uint64
		want time.Duration
	}{{0, base}, {1, base}, {2, 200 * time.Millisecond}, {3, 400 * time.Millisecond}, {4, 800 * time.Millisecond}, {5, time.Second}, {100, time.Second}} {
		if got := nakBackoff(c.n, base, maxD); got != c.want {
			t.Errorf("nakBackoff(%d) = %s; want %s", c.n, got, c.want)
		}
	}
}

func TestConsumerConfigDefaultsAndValidation(t *testing.T) {
	// No names of anyone's application are made up: another team's consumer must not join
	// ours by leaving Stream or Durable empty.
	for _, c := range []ConsumerConfig{{}, {Stream: "readings"}, {Durable: "readings-app"}} {
		if err := c.withDefaults().validate(); !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("%+v: validate = %v, want ErrInvalidConfig", c, err)
		}
	}
	c := ConsumerConfig{Stream: "readings", Durable: "readings-app"}.withDefaults()
	if c.BatchSize != 10_000 || c.MaxWait != 5*time.Second || c.MaxAckPending != 20_000 {
		t.Fatalf("defaults: %+v", c)
	}
	if c.DeadLetter.Stream != "readings_dlq" || c.DeadLetter.SubjectPrefix != "readings_dlq" {
		t.Fatalf("dead-letter defaults: %+v", c.DeadLetter)
	}
	if err := c.validate(); err != nil {
		t.Fatal(err)
	}
	bad := ConsumerConfig{Stream: "s", Durable: "d", AckWait: time.Second, MaxWait: 2 * time.Second}.withDefaults()
	if err := bad.validate(); err == nil {
		t.Fatal("AckWait <= MaxWait accepted")
	}
	bad = ConsumerConfig{Stream: "s", Durable: "d", MaxDeliver: -2}.withDefaults()
	if err := bad.validate(); err == nil {
		t.Fatal("MaxDeliver -2 accepted")
	}
	// JetStream's max_deliver is unlimited whatever MaxDeliver says: it counts deliveries
	// that ended because the sink failed.
	if cc := (ConsumerConfig{Stream: "s", Durable: "d", MaxDeliver: 2}.withDefaults()).jetStreamConfig(); cc.MaxDeliver != -1 {
		t.Errorf("server-side max_deliver %d, want -1", cc.MaxDeliver)
	}
}
