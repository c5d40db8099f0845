package clickhouse

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/pulsehq/pulse/config"
	"github.com/pulsehq/pulse/engine"
	"github.com/pulsehq/pulse/rules"
	"github.com/pulsehq/pulse/sinks"
)

// Output runs the sink in the daemon: the config file's clickhouse
// section turns it on with an address. It stores score rows, and buffers
// (the engine flushes it before every offset commit).
var Output = &sinks.Spec[settings, Config]{
	Name:    "clickhouse",
	Section: "clickhouse",
	Default: func() settings {
		d := DefaultConfig()
		return settings{Database: d.Database, Username: d.Username, BatchRows: d.BatchRows,
			FlushInterval: config.Duration(d.FlushInterval), HistoryMonths: d.HistoryMonths}
	},
	Environ: func(s *settings, getenv func(string) string) {
		if v := getenv("PULSE_CLICKHOUSE_ADDR"); v != "" {
			s.Addr = strings.Split(v, ",")
		}
		if v := getenv("PULSE_CLICKHOUSE_PASSWORD"); v != "" {
			s.Password = v
		}
	},
	Config: func(s *settings, _ *sinks.Env) (Config, error) {
		c := Config{Addr: s.Addr, Database: s.Database, Username: s.Username, Password: s.Password,
			BatchRows: s.BatchRows, FlushInterval: time.Duration(s.FlushInterval), HistoryMonths: s.HistoryMonths}
		if len(c.Addr) == 0 {
			return c, nil // off: nothing to check, no file to read
		}
		tc, err := s.TLS.Client()
		c.TLS = tc
		return c, errors.Join(c.Validate(), config.Under("tls", err))
	},
	Needs: func(c *Config, _ *rules.Ruleset) sinks.Needs {
		if len(c.Addr) == 0 {
			return sinks.Needs{}
		}
		return sinks.Needs{On: true, ScoreRows: true, Target: strings.Join(c.Addr, ",")}
	},
	Open: func(ctx context.Context, c Config, env *sinks.Env) (engine.Sink, error) {
		c.Log = env.Log
		c.Inserted = env.Hooks.ClickHouseInserted
		// The sink retries INSERTs on its own, after Write accepted the
		// rows: count each failed attempt, or an outage stays invisible.
		c.Failed = func(error) { env.Hooks.SinkRetried("clickhouse") }
		// A ClickHouse that does not answer yet does not stop Pulse: the
		// sink creates the schema once it does, and holds rows (then the
		// partitions) meanwhile.
		octx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		s, err := Open(octx, c)
		if err != nil {
			return nil, fmt.Errorf("clickhouse: %w", err)
		}
		return s, nil
	},
}

// settings are the config file's clickhouse section.
type settings struct {
	Addr          []string        `yaml:"addr"` // native protocol, host:9000; empty: no ClickHouse
	Database      string          `yaml:"database"`
	Username      string          `yaml:"username"`
	Password      string          `yaml:"password"` // prefer PULSE_CLICKHOUSE_PASSWORD
	BatchRows     int             `yaml:"batch_rows"`
	FlushInterval config.Duration `yaml:"flush_interval"`
	HistoryMonths int             `yaml:"history_months"` // TTL where the server has TTL; 0 keeps everything
	TLS           config.TLS      `yaml:"tls"`            // the native protocol's secure port, e.g. 9440
}
