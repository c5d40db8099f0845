package clickhouse

import (
	"cmp"
	"errors"
	"log/slog"
	"regexp"
	"time"

	"github.com/pulsehq/pulse/config"
	"github.com/pulsehq/pulse/rules"
)

// DefaultConfig returns the sink's defaults. It names no server.
func DefaultConfig() Config {
	return Config{
		Database:      "pulse",
		Username:      "default",
		BatchRows:     100_000,
		FlushInterval: time.Second,
	}
}

// WithDefaults returns c with its zero settings set from DefaultConfig
// (HistoryMonths, whose zero keeps history forever, stays), and the hooks
// and log set when nil.
func (c Config) WithDefaults() Config {
	d := DefaultConfig()
	c.Database = cmp.Or(c.Database, d.Database)
	c.Username = cmp.Or(c.Username, d.Username)
	c.BatchRows = cmp.Or(c.BatchRows, d.BatchRows)
	c.FlushInterval = cmp.Or(c.FlushInterval, d.FlushInterval)
	if c.Log == nil {
		c.Log = slog.Default()
	}
	if c.Inserted == nil {
		c.Inserted = func(string, int) {}
	}
	if c.Failed == nil {
		c.Failed = func(error) {}
	}
	return c
}

// identRe is a database name that needs no quoting in DDL.
var identRe = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// Validate reports every problem of c at once, joined, each a
// *config.Error keyed as the config file's clickhouse section writes it.
// It checks a complete config: DefaultConfig with changes.
func (c Config) Validate() error {
	var errs []error
	bad := func(key, format string, args ...any) { errs = append(errs, config.Errorf(key, format, args...)) }
	if len(c.Addr) == 0 {
		bad("addr", "at least one host:port is required")
	}
	if !identRe.MatchString(c.Database) {
		bad("database", "%q must be a plain identifier", c.Database)
	}
	if c.BatchRows < 1 {
		bad("batch_rows", "%d must be ≥ 1", c.BatchRows)
	}
	if c.FlushInterval <= 0 {
		bad("flush_interval", "%s must be positive", rules.FormatDuration(c.FlushInterval))
	}
	if c.HistoryMonths < 0 {
		bad("history_months", "%d must be ≥ 0", c.HistoryMonths)
	}
	return errors.Join(errs...)
}
