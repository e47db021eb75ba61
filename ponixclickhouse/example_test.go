package ponixclickhouse_test

import (
	"fmt"

	"github.com/ponix-go/ponix/ponixclickhouse"
)

// ParseTable validates a configured table name before it goes into SQL.
func ExampleParseTable() {
	t, err := ponixclickhouse.ParseTable("ponix.processed_envelopes")
	q, _ := t.Quoted()
	fmt.Println(q, err)
	_, err = ponixclickhouse.ParseTable("x; DROP TABLE y")
	fmt.Println(err)
	// Output:
	// `ponix`.`processed_envelopes` <nil>
	// table name: invalid identifier: "x; DROP TABLE y" (allowed: letters, digits and '_', not starting with a digit)
}
