package migrate

import (
	"context"
	"errors"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/ponix-go/ponix/ponixclickhouse"
)

func set(app string, files ...string) migrationSet {
	s := migrationSet{application: app, files: files, versions: map[int64]string{}}
	for _, f := range files {
		var v int64
		for _, c := range f {
			if c < '0' || c > '9' {
				break
			}
			v = v*10 + int64(c-'0')
		}
		s.versions[v] = f
	}
	return s
}

func TestJudge(t *testing.T) {
	ponix := set("", "20251101000000_create_processed_envelopes.sql", "20251102000000_rekey.sql")
	readings := set("", "00001_create_readings.sql")
	for name, tc := range map[string]struct {
		mark      *ownerMark
		recorded  []int64
		set       migrationSet
		claim     bool
		collision bool
	}{
		"new table is claimed":                     {nil, []int64{0}, ponix, true, false},
		"empty table is claimed":                   {nil, nil, ponix, true, false},
		"unmarked table of this set is adopted":    {nil, []int64{0, 20251101000000, 20251102000000}, ponix, true, false},
		"unmarked table with a prefix is adopted":  {nil, []int64{0, 20251101000000}, ponix, true, false},
		"unmarked table of another set is refused": {nil, []int64{0, 20251101000000}, readings, false, true},
		"marked by this set":                       {&ownerMark{First: "20251101000000_create_processed_envelopes.sql"}, []int64{0, 20251101000000}, ponix, false, false},
		"marked by this set, named":                {&ownerMark{Application: "readings", First: "00001_create_readings.sql"}, []int64{0, 1}, set("readings", "00001_create_readings.sql"), false, false},
		"marked named, run unnamed, same set":      {&ownerMark{Application: "ponix", First: "20251101000000_create_processed_envelopes.sql"}, []int64{0}, ponix, false, false},
		"marked by another set, nothing applied":   {&ownerMark{First: "20251101000000_create_processed_envelopes.sql"}, []int64{0}, readings, false, true},
		"marked by another set, same version":      {&ownerMark{First: "00001_create_items.sql"}, []int64{0, 1}, readings, false, true},
		"marked by another application":            {&ownerMark{Application: "ponix", First: "00001_create_readings.sql"}, []int64{0, 1}, set("readings", "00001_create_readings.sql"), false, true},
		"marked by this set, foreign versions":     {&ownerMark{First: "20251101000000_create_processed_envelopes.sql"}, []int64{0, 7}, ponix, false, true},
		"set grew at the front":                    {&ownerMark{First: "20251101000000_create_processed_envelopes.sql"}, []int64{0}, set("", "20251001000000_first.sql", "20251101000000_create_processed_envelopes.sql"), false, false},
	} {
		t.Run(name, func(t *testing.T) {
			claim, ce := judge("goose_db_version", tc.mark, tc.recorded, tc.set)
			if claim != tc.claim || (ce != nil) != tc.collision {
				t.Fatalf("claim %v, collision %v; want %v, %v", claim, ce, tc.claim, tc.collision)
			}
		})
	}
}

func TestCollisionErrorNamesBoth(t *testing.T) {
	_, ce := judge("goose_db_version", &ownerMark{Application: "ponix", First: "20251101000000_create_processed_envelopes.sql"},
		[]int64{0, 20251101000000}, set("readings", "00001_create_readings.sql"))
	var err error = ce
	var got *CollisionError
	if !errors.As(err, &got) || !errors.Is(err, ErrForeignVersions) {
		t.Fatalf("err %v is not a *CollisionError and ErrForeignVersions", err)
	}
	if got.Owner != "ponix" || got.Application != "readings" || len(got.Foreign) != 1 || got.Foreign[0] != 20251101000000 {
		t.Errorf("%+v", got)
	}
	want := `migrate: version table goose_db_version belongs to application "ponix" (migrations 20251101000000_create_processed_envelopes.sql …; ` +
		`it records versions 20251101000000, which this set lacks); application "readings" (migrations 00001_create_readings.sql) ` +
		`must use tables of its own: migrate.WithApplication("readings")`
	if err.Error() != want {
		t.Errorf("message\n%s\nwant\n%s", err, want)
	}

	// Unnamed both, the owner's table without a mark.
	_, ce = judge("goose_db_version", nil, []int64{0, 1, 2, 3, 4, 5, 6, 7}, set("", "20990101000000_a.sql", "20990102000000_b.sql", "20990103000000_c.sql", "20990104000000_d.sql"))
	msg := ce.Error()
	for _, w := range []string{"belongs to another application (it records versions 1, 2, 3, 4, 5, …, which this set lacks)",
		"the migrations 20990101000000_a.sql, 20990102000000_b.sql, 20990103000000_c.sql …, run without an application name, need tables of their own",
		`migrate.WithApplication("<name>")`} {
		if !strings.Contains(msg, w) {
			t.Errorf("message %q lacks %q", msg, w)
		}
	}
	_, ce = judge("goose_db_version", &ownerMark{First: "00001_x.sql"}, []int64{0}, set("", "00001_y.sql"))
	if msg := ce.Error(); !strings.Contains(msg, "belongs to an application without a name (migrations 00001_x.sql …)") {
		t.Errorf("message %q", msg)
	}
	_, ce = judge("r_goose_db_version", &ownerMark{Application: "r", First: "00001_x.sql"}, []int64{0}, set("r", "00001_y.sql"))
	if msg := ce.Error(); !strings.Contains(msg, "another migration set of the same name") {
		t.Errorf("message %q", msg)
	}
}

func TestMarkRoundTrip(t *testing.T) {
	for _, o := range []ownerMark{{}, {Application: "ponix", First: "20251101000000_create_processed_envelopes.sql"}, {First: `it's "odd" \ <&>.sql`}} {
		c := o.comment()
		if !strings.HasPrefix(c, markPrefix) || strings.Contains(c, "\n") {
			t.Errorf("comment %q", c)
		}
		got, ok := parseMark(c)
		if !ok || got != o {
			t.Errorf("parseMark(%q) = %+v, %v; want %+v", c, got, ok, o)
		}
	}
	for _, c := range []string{"", "a user's comment", markPrefix + "{not json"} {
		if _, ok := parseMark(c); ok {
			t.Errorf("parseMark(%q) took it for a mark", c)
		}
	}
}

func TestQuoteString(t *testing.T) {
	for in, want := range map[string]string{"": "''", "abc": "'abc'", `it's`: `'it\'s'`, `a\b`: `'a\\b'`, `\'`: `'\\\''`} {
		if got := quoteString(in); got != want {
			t.Errorf("quoteString(%q) = %s, want %s", in, got, want)
		}
	}
}

func TestMigratorSetIsOldestFirst(t *testing.T) {
	fsys := fstest.MapFS{
		"00002_b.sql": {Data: []byte("-- +goose Up\nSELECT 1;\n")},
		"00001_a.sql": {Data: []byte("-- +goose Up\nSELECT 1;\n")},
	}
	db := ponixclickhouse.OpenDB(ponixclickhouse.Config{Addr: "127.0.0.1:1"}) // never connects here
	defer db.Close()
	m, err := New(db, fsys, WithApplication("app"))
	if err != nil {
		t.Fatal(err)
	}
	s := m.migrationSet()
	if s.application != "app" || strings.Join(s.files, ",") != "00001_a.sql,00002_b.sql" || s.versions[2] != "00002_b.sql" {
		t.Fatalf("%+v", s)
	}
	if s.mark() != (ownerMark{Application: "app", First: "00001_a.sql"}) {
		t.Fatalf("mark %+v", s.mark())
	}
}

func TestEnsureDatabaseNeedsNoServerForNothing(t *testing.T) {
	created, err := EnsureDatabase(context.Background(), ponixclickhouse.Config{Addr: "127.0.0.1:1"})
	if created || err != nil {
		t.Fatalf("empty database: %v, %v; want nothing done", created, err)
	}
	_, err = EnsureDatabase(context.Background(), ponixclickhouse.Config{Addr: "127.0.0.1:1", Database: "no`pe"})
	var ce *ponixclickhouse.ConfigError
	if !errors.As(err, &ce) || ce.Setting != "Database" {
		t.Fatalf("bad name: %v, want a ConfigError naming Database", err)
	}
}
