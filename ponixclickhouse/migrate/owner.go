package migrate

// Ownership of a version table.
//
// goose records versions, not whose they are. Two applications that run their migration sets
// on one version table (both without WithApplication, so both on goose_db_version) mix their
// records: whichever comes second fails, later and confusingly, or not at all when their
// version numbers happen to match. So a Migrator marks the version table as its migration
// set's: the comment of the table's version_id column holds the application's name and the
// set's first migration file (ALTER TABLE … COMMENT COLUMN of a MergeTree works on 18.16 as on
// 25.x, and survives a restart; older
// Ponix versions neither read nor disturb it, and it goes with the table when Reapply drops
// it). Under the migration lock, before goose runs, the Migrator reads the mark:
//
//   - no mark (a new table, or one written before marks existed): the table is marked as this
//     set's if every version it records belongs to the set (an older Ponix's table is adopted),
//     else refused;
//   - a mark of another set (another application name, or a first migration this set does
//     not have), or recorded versions this set lacks: refused with a [*CollisionError] that
//     names both.
//
// On a cluster the version table is not marked: on 18.16 a COMMENT COLUMN of a Replicated
// table times out waiting for the replicas (code 341) and writes the table's metadata without
// the commented column, after which the server no longer starts (measured on 18.16.1 with
// ZooKeeper 3.8). There only the recorded versions tell the sets apart: a version this set
// lacks is refused as above.

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"path"
	"slices"
	"strconv"
	"strings"

	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/database"
	"github.com/pressly/goose/v3/lock"
)

// ErrForeignVersions: the version table belongs to another migration set — usually another
// application's, sharing the database and the default tables. The error that carries it is a
// [*CollisionError] naming both.
var ErrForeignVersions = errors.New("the version table belongs to another migration set")

// CollisionError is a version table that belongs to another migration set than the
// Migrator's: another application's (see [WithApplication]). errors.Is(err,
// [ErrForeignVersions]) holds for it.
type CollisionError struct {
	// VersionTable is the version table, e.g. goose_db_version.
	VersionTable string
	// Owner is the application that owns the table as its mark says ("" when the owner has no
	// name, or when the table has no mark: it predates marks).
	Owner string
	// OwnerFirst is the first migration file of the owner's set, as its mark says ("" when
	// the table has no mark).
	OwnerFirst string
	// Application is the refused Migrator's application ("" without WithApplication).
	Application string
	// Migrations are the refused Migrator's migration files, oldest first.
	Migrations []string
	// Foreign are the versions the table records that the refused set does not have.
	Foreign []int64
}

func (e *CollisionError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "migrate: version table %s belongs to ", e.VersionTable)
	var owner []string
	switch {
	case e.Owner != "":
		fmt.Fprintf(&b, "application %q", e.Owner)
	case e.OwnerFirst != "":
		b.WriteString("an application without a name")
	default:
		b.WriteString("another application")
	}
	if e.OwnerFirst != "" {
		owner = append(owner, "migrations "+e.OwnerFirst+" …")
	}
	if len(e.Foreign) > 0 {
		owner = append(owner, "it records versions "+listVersions(e.Foreign, 5)+", which this set lacks")
	}
	if len(owner) > 0 {
		fmt.Fprintf(&b, " (%s)", strings.Join(owner, "; "))
	}
	b.WriteString("; ")
	if e.Application == "" {
		b.WriteString("the migrations")
		if len(e.Migrations) > 0 {
			fmt.Fprintf(&b, " %s", listFiles(e.Migrations, 3))
		}
		b.WriteString(`, run without an application name, need tables of their own: migrate.WithApplication("<name>")`)
		return b.String()
	}
	fmt.Fprintf(&b, "application %q", e.Application)
	if len(e.Migrations) > 0 {
		fmt.Fprintf(&b, " (migrations %s)", listFiles(e.Migrations, 3))
	}
	switch {
	case e.Application == e.Owner:
		b.WriteString(` is another migration set of the same name: give each application its own name, migrate.WithApplication("<name>")`)
	default:
		fmt.Fprintf(&b, " must use tables of its own: migrate.WithApplication(%q)", e.Application)
	}
	return b.String()
}

// Unwrap returns [ErrForeignVersions].
func (e *CollisionError) Unwrap() error { return ErrForeignVersions }

func listVersions(vs []int64, n int) string {
	s := make([]string, 0, min(len(vs), n)+1)
	for i, v := range vs {
		if i == n {
			s = append(s, "…")
			break
		}
		s = append(s, strconv.FormatInt(v, 10))
	}
	return strings.Join(s, ", ")
}

func listFiles(files []string, n int) string {
	if len(files) > n {
		return strings.Join(files[:n], ", ") + " …"
	}
	return strings.Join(files, ", ")
}

// markPrefix starts the version_id comment that marks a version table's owner.
const markPrefix = "ponix migrate owner: "

// ownerMark is what a version table's mark says of its owner.
type ownerMark struct {
	Application string `json:"application"`
	First       string `json:"first"`
}

func (o ownerMark) comment() string {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(o) // two strings: cannot fail
	return markPrefix + strings.TrimSpace(b.String())
}

// parseMark reads a version_id comment; ok is false when it is not a mark.
func parseMark(comment string) (ownerMark, bool) {
	rest, ok := strings.CutPrefix(comment, markPrefix)
	if !ok {
		return ownerMark{}, false
	}
	var o ownerMark
	if err := json.Unmarshal([]byte(rest), &o); err != nil {
		return ownerMark{}, false
	}
	return o, true
}

// quoteString is s as a ClickHouse string literal.
func quoteString(s string) string {
	return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(s) + "'"
}

// migrationSet is what a Migrator knows of its own set.
type migrationSet struct {
	application string
	files       []string         // base names, oldest first
	versions    map[int64]string // version → base name
}

func (s migrationSet) hasFile(name string) bool {
	for _, f := range s.versions {
		if f == name {
			return true
		}
	}
	return false
}

func (s migrationSet) mark() ownerMark {
	o := ownerMark{Application: s.application}
	if len(s.files) > 0 {
		o.First = s.files[0]
	}
	return o
}

// judge decides whether set may use table, marked mark (nil: no mark) and recording the
// versions recorded. claim is true when the table has no mark and is to be marked as set's.
func judge(table string, mark *ownerMark, recorded []int64, set migrationSet) (claim bool, _ *CollisionError) {
	var foreign []int64
	for _, v := range recorded {
		if _, ok := set.versions[v]; !ok && v != 0 {
			foreign = append(foreign, v)
		}
	}
	slices.Sort(foreign)
	foreign = slices.Compact(foreign)
	other := len(foreign) > 0
	if mark != nil {
		if mark.Application != "" && set.application != "" && mark.Application != set.application {
			other = true
		}
		if mark.First != "" && !set.hasFile(mark.First) {
			other = true
		}
	}
	if other {
		ce := &CollisionError{VersionTable: table, Application: set.application, Migrations: set.files, Foreign: foreign}
		if mark != nil {
			ce.Owner, ce.OwnerFirst = mark.Application, mark.First
		}
		return false, ce
	}
	return mark == nil, nil
}

// migrationSet is the Migrator's set.
func (m *Migrator) migrationSet() migrationSet {
	set := migrationSet{application: m.application, versions: map[int64]string{}}
	srcs := m.provider.ListSources()
	slices.SortFunc(srcs, func(a, b *goose.Source) int { return cmpInt64(a.Version, b.Version) })
	for _, src := range srcs {
		name := path.Base(src.Path)
		set.files = append(set.files, name)
		set.versions[src.Version] = name
	}
	return set
}

func cmpInt64(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// check refuses, before goose runs, a version table that belongs to another migration set
// with a [*CollisionError]; it changes nothing (claim does, under the lock). goose itself
// would fail first with a confusing error (versions of the other set are "missing
// migrations" of this one), or find nothing pending and say nothing.
func (m *Migrator) check(ctx context.Context) error {
	table := m.store.Tablename()
	exists, err := m.store.TableExists(ctx, m.db)
	if err != nil || !exists {
		return err
	}
	mark, recorded, _, err := m.readOwnership(ctx, m.db, m.store)
	if err != nil {
		return err
	}
	if _, ce := judge(table, mark, recorded, m.migrationSet()); ce != nil {
		return ce
	}
	return nil
}

// readOwnership reads the version table's mark and the versions it records (applied counts
// those above 0).
func (m *Migrator) readOwnership(ctx context.Context, db *sql.DB, store database.Store) (mark *ownerMark, recorded []int64, applied int, err error) {
	mark, err = readMark(ctx, db, m.store.quoted)
	if err != nil {
		return nil, nil, 0, fmt.Errorf("version table %s: read its owner: %w", m.store.Tablename(), err)
	}
	rows, err := store.ListMigrations(ctx, db)
	if err != nil {
		return nil, nil, 0, err
	}
	for _, r := range rows {
		recorded = append(recorded, r.Version)
		if r.Version != 0 {
			applied++
		}
	}
	return mark, recorded, applied, nil
}

// claim runs under the migration lock, before goose does anything: it creates the version
// table when it is missing (as goose would: the table and its version 0), reads its mark
// and the versions it records, and refuses a table of another set with a [*CollisionError],
// or marks an unmarked table as this set's.
func (m *Migrator) claim(ctx context.Context, db *sql.DB) error {
	table := m.store.Tablename()
	exists, err := m.vstore.TableExists(ctx, db)
	if err != nil {
		return err
	}
	if !exists {
		if err := m.vstore.CreateVersionTable(ctx, db); err != nil {
			return err
		}
		if err := m.vstore.Insert(ctx, db, database.InsertRequest{Version: 0}); err != nil {
			return fmt.Errorf("version table %s: insert version 0: %w", table, err)
		}
	}
	mark, recorded, applied, err := m.readOwnership(ctx, db, m.vstore)
	if err != nil {
		return err
	}
	set := m.migrationSet()
	claim, ce := judge(table, mark, recorded, set)
	if ce != nil {
		return ce
	}
	if !claim || len(set.files) == 0 || m.cluster != "" {
		return nil // nothing to mark, or a Replicated table (see the top of this file)
	}
	own := set.mark()
	if _, err := db.ExecContext(ctx, "ALTER TABLE "+m.store.quoted+" COMMENT COLUMN version_id "+quoteString(own.comment())); err != nil {
		return fmt.Errorf("version table %s: mark its owner: %w", table, err)
	}
	if applied > 0 {
		m.logger.InfoContext(ctx, "migrate: version table marked as this migration set's (every version it records is one of the set's)",
			"table", table, "application", own.Application, "first", own.First, "versions", applied)
	} else {
		m.logger.DebugContext(ctx, "migrate: version table marked as this migration set's", "table", table, "application", own.Application, "first", own.First)
	}
	return nil
}

// readMark reads the mark of the version table quoted (nil when it has none). DESCRIBE
// TABLE asks the table itself, not the system tables (see [Store.TableExists]); its comment
// column is "comment_expression" on 18.16 and "comment" on 25.x.
func readMark(ctx context.Context, db *sql.DB, quoted string) (*ownerMark, error) {
	rows, err := db.QueryContext(ctx, "DESCRIBE TABLE "+quoted)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	cols, err := rows.Columns()
	if err != nil {
		return nil, err
	}
	nameCol, commentCol := slices.Index(cols, "name"), slices.Index(cols, "comment")
	if commentCol < 0 {
		commentCol = slices.Index(cols, "comment_expression")
	}
	if nameCol < 0 || commentCol < 0 {
		return nil, fmt.Errorf("DESCRIBE TABLE answered columns %v: no name or comment", cols)
	}
	vals := make([]any, len(cols))
	ptrs := make([]any, len(cols))
	for i := range vals {
		ptrs[i] = &vals[i]
	}
	var mark *ownerMark
	for rows.Next() {
		if err := rows.Scan(ptrs...); err != nil {
			return nil, err
		}
		if name, _ := vals[nameCol].(string); name != "version_id" {
			continue
		}
		comment, _ := vals[commentCol].(string)
		if o, ok := parseMark(comment); ok {
			mark = &o
		}
	}
	return mark, rows.Err()
}

// claimingLocker is the migration lock followed by the ownership check ([Migrator.claim]): a
// migrator that may not use the version table lets the lock go again and fails.
type claimingLocker struct {
	lock.Locker
	claim func(ctx context.Context, db *sql.DB) error
}

// Lock implements [lock.Locker].
func (l *claimingLocker) Lock(ctx context.Context, db *sql.DB) error {
	if err := l.Locker.Lock(ctx, db); err != nil {
		return err
	}
	if err := l.claim(ctx, db); err != nil {
		if uerr := l.Locker.Unlock(context.WithoutCancel(ctx), db); uerr != nil {
			return errors.Join(err, uerr)
		}
		return err
	}
	return nil
}
