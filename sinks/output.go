package sinks

import (
	"context"
	"log/slog"

	"github.com/segmentio/kafka-go"

	"github.com/pulsehq/pulse/engine"
	"github.com/pulsehq/pulse/rules"
)

// Output is a sink the daemon can run, as its package declares it (a
// Spec). cmd/pulse registers every Output with one line of its list; the
// daemon decodes each output's section of the config file, checks it with
// the rest, and opens the outputs the config turns on, writing every batch
// to them in the list's order.
type Output interface {
	// Load returns the output's settings at their defaults, for one config
	// file's section to be decoded into.
	Load() Loaded
}

// Loaded is one output with its settings, as one config file sets them.
// Its methods are called in order: the daemon decodes the section into
// Settings, applies the environment (Environ), then calls Check, then
// (with the rules in force) Needs, then Open for an output that is on.
type Loaded interface {
	// Name labels the sink's pulse_sink_* series and its log lines.
	Name() string
	// Section is the key of the config file the settings are under; the
	// keys of several outputs may share one section.
	Section() string
	// Settings is the pointer the section is decoded into.
	Settings() any
	// Environ applies the environment variables that override settings
	// (secrets, addresses a deployment sets).
	Environ(getenv func(string) string)
	// Check validates the decoded settings and builds the sink's config,
	// reading the files they name (certificates). It reports every problem
	// at once, joined, each a *config.Error keyed within the section. It
	// starts nothing: pulse config check runs it.
	Check(env *Env) error
	// Config is the sink's config Check built, for tests and tools.
	Config() any
	// Needs says whether the sink runs with the rules rs, and what it
	// then needs. It is called after Check passed.
	Needs(rs *rules.Ruleset) Needs
	// Open starts the sink with the config Check built.
	Open(ctx context.Context, env *Env) (engine.Sink, error)
}

// Needs is what an output needs from the daemon with its settings. What a
// sink does is said by the interfaces it implements: engine.Flusher (it
// buffers: the engine flushes it before every offset commit), Reloader
// (it follows rules reloads).
type Needs struct {
	// On: the settings turn the sink on. An output that is off is not
	// opened, and needs nothing.
	On bool
	// ScoreRows: the sink stores score rows, so the engine must emit them
	// (a row per account per engine.score_interval, and on every change).
	ScoreRows bool
	// Dirs are the directories the sink writes to: the daemon creates each
	// that is missing before it starts anything.
	Dirs []Dir
	// Target says where the sink writes, for pulse config check's summary
	// (addresses, a path, topics).
	Target string
}

// Dir is a directory an output writes to, and the key (within the
// output's section) that names it.
type Dir struct{ Key, Path string }

// Env is what the daemon gives outputs. At Check, only Kafka is set.
type Env struct {
	// Kafka is the cluster the events are read from, for outputs that
	// write to it too.
	Kafka Kafka
	// Rules is the ruleset in force when the output is opened.
	Rules *rules.Ruleset
	Log   *slog.Logger
	Hooks Hooks
}

// Kafka is a cluster: its bootstrap brokers, and the dialer with the TLS
// and SASL settings to reach them.
type Kafka struct {
	Brokers []string
	Dialer  *kafka.Dialer
}

// Hooks are the observations outputs report, beyond the batches, errors
// and write times every output is counted for (prom.Metrics implements
// them). Calls must not block.
type Hooks interface {
	// SinkRetried counts a failed attempt a sink retries on its own, after
	// Write accepted the batch (a buffering sink's store): an error of
	// that sink, and a retry.
	SinkRetried(sink string)
	// ClickHouseInserted records the rows of one ClickHouse INSERT.
	ClickHouseInserted(table string, rows int)
	// Notified counts a webhook notification's outcome.
	Notified(notifier, outcome string)
}

// NopHooks observe nothing.
type NopHooks struct{}

func (NopHooks) SinkRetried(string)             {}
func (NopHooks) ClickHouseInserted(string, int) {}
func (NopHooks) Notified(string, string)        {}

// Reloader is a sink that follows the rules: the daemon hands it every
// ruleset a reload accepts, after the partitions have it.
type Reloader interface {
	SetRules(rs *rules.Ruleset)
}

// Spec declares an output: S is its settings as the config file writes
// them (a struct with yaml tags, of config.Duration and the like), C the
// sink's own Config.
type Spec[S, C any] struct {
	Name    string // label of the sink's pulse_sink_* series and logs
	Section string // the config file's key for the settings
	Default func() S
	// Environ, if set, overrides settings from the environment (getenv).
	Environ func(s *S, getenv func(string) string)
	// Config validates the settings and builds the sink's config from
	// them, reading the files they name; every problem at once, each a
	// *config.Error keyed within the section. It starts nothing.
	Config func(s *S, env *Env) (C, error)
	// Needs says whether the sink runs with c and the rules rs, and what
	// it then needs (see Needs).
	Needs func(c *C, rs *rules.Ruleset) Needs
	// Open starts the sink. env carries the rules in force, the log and
	// the hooks.
	Open func(ctx context.Context, c C, env *Env) (engine.Sink, error)
}

// Load implements Output.
func (sp *Spec[S, C]) Load() Loaded {
	return &loaded[S, C]{spec: sp, s: sp.Default()}
}

type loaded[S, C any] struct {
	spec *Spec[S, C]
	s    S
	c    C
}

func (l *loaded[S, C]) Name() string    { return l.spec.Name }
func (l *loaded[S, C]) Section() string { return l.spec.Section }
func (l *loaded[S, C]) Settings() any   { return &l.s }
func (l *loaded[S, C]) Config() any     { return l.c }

func (l *loaded[S, C]) Environ(getenv func(string) string) {
	if l.spec.Environ != nil {
		l.spec.Environ(&l.s, getenv)
	}
}

func (l *loaded[S, C]) Check(env *Env) error {
	c, err := l.spec.Config(&l.s, env)
	l.c = c
	return err
}

func (l *loaded[S, C]) Needs(rs *rules.Ruleset) Needs { return l.spec.Needs(&l.c, rs) }

func (l *loaded[S, C]) Open(ctx context.Context, env *Env) (engine.Sink, error) {
	return l.spec.Open(ctx, l.c, env)
}
