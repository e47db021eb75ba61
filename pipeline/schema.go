package pipeline

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/ponix-go/ponix/ponixclickhouse"
	"github.com/ponix-go/ponix/runner/backoff"
)

// schemaRecheck is how often a table that does not fit the writer is looked at again before
// the consumer starts.
const schemaRecheck = 2 * time.Second

// schema watches whether the table fits the writer. Before the consumer starts it
// waits until the table fits; while it runs, an insert that fails with a schema error makes it
// compare the table with the writer again. What is wrong (a missing table, a missing column, a
// column of the wrong type) is reported by Problem — /readyz shows it — and logged once per
// change. A table that is missing although nothing else in the database looks like it was
// dropped, and the migrations are applied again (repair); a table that looks renamed (another
// table has all its columns) is left to a person, as are missing or changed columns.
type schema[R any] struct {
	conn    driver.Conn
	table   ponixclickhouse.Table
	columns []string // the writer's
	// newWriter builds the writer, which checks the table.
	newWriter func(ctx context.Context) (writer[R], error)
	// repair, if set, applies the migrations again; nil: a missing table is reported and
	// waited for.
	repair func(ctx context.Context) error
	// cluster, if set, names the cluster the tables are on, where a problem is named, never
	// repaired.
	cluster string
	log     *slog.Logger
	// recheck is the wait between two checks of a table that does not fit yet (every
	// schemaRecheck).
	recheck backoff.Policy

	mu        sync.Mutex
	problem   error
	unchecked error // why the table could not be checked, while waiting for it
}

// setUnchecked records why the table could not be checked.
func (s *schema[R]) setUnchecked(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.unchecked = err
}

// uncheckedErr returns why the table could not be checked last, nil once it fits.
func (s *schema[R]) uncheckedErr() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.unchecked
}

// Problem returns what is wrong with the table, nil when it fits the writer.
func (s *schema[R]) Problem() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.problem
}

// set records a problem, logging it when it changed.
func (s *schema[R]) set(err error) {
	s.mu.Lock()
	changed := s.problem == nil || s.problem.Error() != err.Error()
	s.problem = err
	s.mu.Unlock()
	if changed && !errors.Is(err, errRecreated) {
		s.log.Error("the ClickHouse table does not fit: holding until it does", "table", s.table.String(), "error", err)
	}
}

// fits records that the table fits (an insert succeeded).
func (s *schema[R]) fits() {
	s.mu.Lock()
	was := s.problem
	s.problem, s.unchecked = nil, nil
	s.mu.Unlock()
	if was != nil {
		s.log.Info("the ClickHouse table fits again", "table", s.table.String())
	}
}

// wait builds the writer, which checks the table; until the table fits it reports the
// problem, repairs a dropped table, and tries again, until ctx ends.
func (s *schema[R]) wait(ctx context.Context) (writer[R], error) {
	retry := s.recheck.Start()
	for {
		w, err := s.newWriter(ctx)
		if err == nil {
			s.fits()
			return w, nil
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		var se *ponixclickhouse.SchemaError
		if !errors.As(err, &se) {
			if ponixclickhouse.Classify(err) == ponixclickhouse.ClassSchema {
				return nil, err // a name that can never be right (configuration)
			}
			// ClickHouse is not answering: the consumer check says so (see Pipeline.Checks).
			s.setUnchecked(err)
			s.log.Warn("checking the ClickHouse table failed, retrying", "error", err)
		} else {
			s.set(s.heal(ctx, err, se))
		}
		if err := retry.Wait(ctx); err != nil {
			return nil, err
		}
	}
}

// diagnose is called when an insert failed with a schema error: it compares the table with
// the writer, repairs a dropped table, and returns the precise problem (or the insert's error
// when the table fits again, e.g. repaired).
func (s *schema[R]) diagnose(ctx context.Context, w writer[R], insertErr error) error {
	err := w.CheckSchema(ctx)
	var se *ponixclickhouse.SchemaError
	if !errors.As(err, &se) {
		if err == nil {
			return insertErr
		}
		return fmt.Errorf("%w (checking the table: %v)", insertErr, err)
	}
	problem := s.heal(ctx, err, se)
	s.set(problem)
	return problem
}

// heal repairs a table that was dropped (no other table looks like it) by applying the
// migrations again, and says what is wrong otherwise (always on a cluster: err says where).
func (s *schema[R]) heal(ctx context.Context, err error, se *ponixclickhouse.SchemaError) error {
	if s.cluster != "" {
		return clusterProblem(s.cluster, err)
	}
	if !se.TableMissing {
		return fmt.Errorf("%w: fix the table (or restore it from the migrations); the consumer holds until it fits", se)
	}
	if like, err := s.lookalike(ctx); err != nil {
		return fmt.Errorf("%w (looking for a renamed copy failed: %v)", se, err)
	} else if like != "" {
		return fmt.Errorf("%w, but table %s has all its columns: renamed? Rename it back (RENAME TABLE %s TO %s) or drop it to let the pipeline create %s again",
			se, like, like, s.table.Name, s.table.Name)
	}
	if s.repair == nil {
		return fmt.Errorf("%w: create it (apply the migrations)", se)
	}
	s.log.Warn("the ClickHouse table is missing although the migrations were recorded as applied (dropped?): applying the migrations again",
		"table", s.table.String())
	if err := s.repair(ctx); err != nil {
		return fmt.Errorf("%w; applying the migrations again failed: %w", se, err)
	}
	s.log.Info("the ClickHouse table was created again by the migrations", "table", s.table.String())
	return fmt.Errorf("%w: %w", se, errRecreated)
}

// errRecreated is wrapped by the problem heal reports when it created the table again: the
// table fits at the next check, so no error is logged for it.
var errRecreated = errors.New("created again by the migrations")

// lookalike returns another table of the database that has every column the writer needs: the
// table renamed, or a copy of it.
func (s *schema[R]) lookalike(ctx context.Context) (string, error) {
	cols := s.columns
	quoted := make([]string, len(cols))
	for i, c := range cols {
		quoted[i] = "'" + c + "'" // plain identifiers
	}
	db := "currentDatabase()"
	if s.table.Database != "" {
		db = "'" + s.table.Database + "'"
	}
	q := fmt.Sprintf(`SELECT table FROM system.columns WHERE database = %s AND table != '%s' AND name IN (%s)
		GROUP BY table HAVING count() = %d ORDER BY table LIMIT 1`, db, s.table.Name, strings.Join(quoted, ", "), len(cols))
	var name string
	err := s.conn.QueryRow(ctx, q).Scan(&name)
	if errors.Is(err, sql.ErrNoRows) {
		return "", nil
	}
	return name, err
}
