package chserver_test

import (
	"context"
	"log"

	"github.com/ponix-go/ponix/ponixclickhouse/chserver"
)

// Run the local clickhouse-server binary with its data in a directory that survives restarts.
func ExampleStart() {
	ctx := context.Background()
	srv, err := chserver.Start(ctx, chserver.Config{Dir: ".data/clickhouse", TCPPort: 9000, User: "ponix", Password: "ponix"})
	if err != nil {
		log.Fatal(err) // names apt-get install -y clickhouse-server when the binary is missing
	}
	defer srv.Stop(ctx)
	log.Printf("ClickHouse at %s", srv.Addr())
}
