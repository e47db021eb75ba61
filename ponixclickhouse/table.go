package ponixclickhouse

import (
	"errors"
	"fmt"
	"strings"
)

// ErrInvalidIdentifier is wrapped by errors about a database or table name that is not a plain
// identifier.
var ErrInvalidIdentifier = errors.New("invalid identifier")

// ValidateIdentifier accepts plain ClickHouse identifiers: ASCII letters, digits and '_', not
// starting with a digit, at most 255 bytes. Restricting names this way (rather than escaping
// anything) keeps configuration from smuggling SQL into a statement.
func ValidateIdentifier(name string) error {
	if name == "" {
		return fmt.Errorf("%w: empty name", ErrInvalidIdentifier)
	}
	if len(name) > 255 {
		return fmt.Errorf("%w: %q is longer than 255 bytes", ErrInvalidIdentifier, name)
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case c == '_', c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z':
		case c >= '0' && c <= '9' && i > 0:
		default:
			return fmt.Errorf("%w: %q (allowed: letters, digits and '_', not starting with a digit)", ErrInvalidIdentifier, name)
		}
	}
	return nil
}

// QuoteIdentifier validates name with [ValidateIdentifier] and returns it in backquotes.
func QuoteIdentifier(name string) (string, error) {
	if err := ValidateIdentifier(name); err != nil {
		return "", err
	}
	return "`" + name + "`", nil
}

// Table names a table, optionally in a database. An empty Database means the connection's
// database.
type Table struct {
	Database string
	Name     string
}

// ParseTable parses "table" or "database.table" and validates both parts.
func ParseTable(s string) (Table, error) {
	var t Table
	if db, name, ok := strings.Cut(s, "."); ok {
		if db == "" {
			return Table{}, fmt.Errorf("database name: %w: empty name in %q", ErrInvalidIdentifier, s)
		}
		t = Table{Database: db, Name: name}
	} else {
		t = Table{Name: s}
	}
	if err := t.Validate(); err != nil {
		return Table{}, err
	}
	return t, nil
}

// Validate checks both parts of the name.
func (t Table) Validate() error {
	if t.Database != "" {
		if err := ValidateIdentifier(t.Database); err != nil {
			return fmt.Errorf("database name: %w", err)
		}
	}
	if err := ValidateIdentifier(t.Name); err != nil {
		return fmt.Errorf("table name: %w", err)
	}
	return nil
}

// Quoted returns the validated, backquoted name for use in SQL, e.g. "`ponix`.`events`".
func (t Table) Quoted() (string, error) {
	if err := t.Validate(); err != nil {
		return "", err
	}
	if t.Database == "" {
		return "`" + t.Name + "`", nil
	}
	return "`" + t.Database + "`.`" + t.Name + "`", nil
}

// String returns the unquoted name, "database.table" or "table".
func (t Table) String() string {
	if t.Database == "" {
		return t.Name
	}
	return t.Database + "." + t.Name
}
