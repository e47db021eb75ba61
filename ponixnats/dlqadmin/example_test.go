package dlqadmin_test

import (
	"context"
	"fmt"
	"log"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/ponix-go/ponix/ponixnats"
	"github.com/ponix-go/ponix/ponixnats/dlqadmin"
)

// Dead letters have a way back: count them, look at them, and replay them to their original
// subjects (after fixing what made them fail). Replay republishes the original bytes with a
// Ponix-Replay-Count header and a Nats-Msg-Id derived from the dead letter, then deletes the
// dead letter; running it again is harmless. Needs a NATS server at 127.0.0.1:4222.
func ExampleStream_Replay() {
	ctx := context.Background()
	nc, err := ponixnats.Connect(ctx, "nats://127.0.0.1:4222")
	if err != nil {
		log.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	dls, err := dlqadmin.Open(ctx, js, "events_dlq")
	if err != nil {
		log.Fatal(err)
	}
	sum, err := dls.Summary(ctx, dlqadmin.Filter{})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("dead letters:", sum.Total, "invalid:", sum.ByReason[ponixnats.ReasonInvalid])
	for dl, err := range dls.All(ctx, dlqadmin.Filter{Subjects: []string{"events.*"}, Limit: 10}) {
		if err != nil {
			log.Fatal(err)
		}
		fmt.Println(dl.Sequence, dl.OriginalSubject(), dl.Reason(), dl.Cause())
	}
	st, err := dls.Replay(ctx, dlqadmin.Filter{Reasons: []ponixnats.Reason{ponixnats.ReasonInvalid}}, dlqadmin.ReplayOptions{})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("replayed %d, duplicates %d, deleted %d, failed %d\n", st.Replayed, st.Duplicates, st.Deleted, st.Failed)
}
