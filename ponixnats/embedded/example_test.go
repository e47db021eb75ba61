package embedded_test

import (
	"context"
	"fmt"
	"log"

	"github.com/ponix-go/ponix/ponixnats/embedded"
)

// Start a JetStream server on a free port with a temporary store.
func Example() {
	srv, err := embedded.Start(context.Background(), embedded.Config{})
	if err != nil {
		log.Fatal(err)
	}
	defer srv.Shutdown()
	fmt.Println(srv.Port() > 0, srv.NATSServer().JetStreamEnabled())
	// Output: true true
}
