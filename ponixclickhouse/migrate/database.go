package migrate

import (
	"context"
	"errors"
	"fmt"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ponix-go/ponix/ponixclickhouse"
)

// codeDatabaseAlreadyExists is ClickHouse's DATABASE_ALREADY_EXISTS.
const codeDatabaseAlreadyExists = 82

// EnsureDatabase creates cfg.Database when the server lacks it, before the migrations run in
// it, and reports whether it did. A connection to a database that does not exist cannot even
// be opened (code 81), so the database is created through a connection without one (the
// user's default database): cfg's user needs the right to create databases only when one is
// missing. With [WithCluster] the database is created ON CLUSTER, on every node that lacks
// it (CREATE DATABASE IF NOT EXISTS … ON CLUSTER), and only when the node cfg reaches lacks it:
// an ON CLUSTER statement waits for every node. A created database is logged once at Info
// level ([WithLogger]); the other options do not apply. An empty cfg.Database (the user's
// default database) is left as it is.
func EnsureDatabase(ctx context.Context, cfg ponixclickhouse.Config, opts ...Option) (created bool, err error) {
	o := buildOptions(opts)
	name := cfg.Database
	if name == "" {
		return false, nil
	}
	quoted, err := ponixclickhouse.QuoteIdentifier(name)
	if err != nil {
		return false, &ponixclickhouse.ConfigError{Setting: "Database", Value: name, Err: err}
	}
	if o.cluster != "" {
		if err := ponixclickhouse.ValidateIdentifier(o.cluster); err != nil {
			return false, fmt.Errorf("migrate: cluster name: %w", err)
		}
	}
	db := ponixclickhouse.OpenDB(cfg)
	err = ponixclickhouse.PingDB(ctx, db, cfg)
	_ = db.Close()
	if err == nil || !errors.Is(err, ponixclickhouse.ErrUnknownDatabase) {
		return false, err // there, or a failure that is not the database's
	}
	admin := cfg
	admin.Database = ""
	adb := ponixclickhouse.OpenDB(admin)
	defer adb.Close()
	stmt := "CREATE DATABASE " + quoted
	if o.cluster != "" {
		stmt = "CREATE DATABASE IF NOT EXISTS " + quoted + " ON CLUSTER " + o.cluster
	}
	if _, err := adb.ExecContext(ctx, stmt); err != nil {
		var ex *clickhouse.Exception
		if errors.As(err, &ex) && ex.Code == codeDatabaseAlreadyExists {
			return false, nil // another instance created it meanwhile
		}
		user := cfg.Username
		if user == "" {
			user = "default"
		}
		return false, fmt.Errorf("migrate: database %s does not exist and user %q could not create it (create it, or grant the user CREATE DATABASE): %w",
			name, user, ponixclickhouse.ExplainConnectError(err))
	}
	attrs := []any{"database", name}
	if o.cluster != "" {
		attrs = append(attrs, "cluster", o.cluster)
	}
	o.logger.InfoContext(ctx, "created the missing database", attrs...)
	return true, nil
}
