package migrations_test

import (
	"io/fs"
	"regexp"
	"strings"
	"testing"

	"github.com/ponix-go/ponix/migrations"
)

func TestFSHoldsTheStepsWithUpAndDown(t *testing.T) {
	names, err := fs.Glob(migrations.FS(), "*.sql")
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"20251101000000_create_processed_envelopes.sql", "20251102000000_rekey_processed_envelopes_by_organization.sql",
		"20251201000000_dedup_processed_envelopes_by_stream_seq.sql", "20261201000000_key_processed_envelopes_by_stream_incarnation.sql"}
	if strings.Join(names, ",") != strings.Join(want, ",") {
		t.Fatalf("files = %v, want %v", names, want)
	}
	dbLiteral := regexp.MustCompile(`(?i)\b(ponix|default)\s*\.`)
	for _, n := range names {
		b, err := fs.ReadFile(migrations.FS(), n)
		if err != nil {
			t.Fatal(err)
		}
		s := string(b)
		for _, marker := range []string{"-- +goose Up", "-- +goose Down", "-- +goose NO TRANSACTION"} {
			if !strings.Contains(s, marker) {
				t.Errorf("%s lacks %q", n, marker)
			}
		}
		if dbLiteral.MatchString(s) {
			t.Errorf("%s names a database; migrations must use the connection's database", n)
		}
	}
}
