// Package clickhouse writes Pulse's history to ClickHouse for Grafana and
// CSM leads: score history (scores), alert transitions (alerts) and a daily
// per-account rollup (daily, fed by a materialized view). It creates and
// migrates its schema on start, in the dialect the server speaks (18.16 or
// current), over the native protocol.
//
// Writes are group-committed: every Write joins the batch being filled and
// returns once a single INSERT per table has stored it. A batch is cut when
// no Write came for Linger (all writers are waiting), at BatchRows, or
// FlushInterval after its first rows. A failing INSERT is retried with
// backoff and jitter, and the Writes waiting on it wait too, so the
// consumer stops committing offsets past what ClickHouse holds
// (backpressure) and catches up when it returns; memory stays bounded by
// one waiting batch per partition. Tables are ReplacingMergeTree keyed by
// the outputs' stable ids, so re-sent rows (after a crash, or a replay)
// leave no visible duplicates with FINAL or argMax queries.
package clickhouse

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"strings"
	"sync"
	"time"

	ch "github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/pulsehq/pulse/engine"
	"github.com/pulsehq/pulse/rules"
)

// Config configures the sink.
type Config struct {
	Addr          []string // host:port of the native protocol (9000)
	Database      string
	Username      string
	Password      string
	BatchRows     int           // cut a batch at this many rows (default 100,000)
	FlushInterval time.Duration // at most this long after its first rows (default 1s)
	// Linger cuts a batch once no Write has arrived for this long (default
	// 5ms): every writer waits for its batch, so once all are waiting
	// there is nothing to gain from waiting longer.
	Linger        time.Duration
	HistoryMonths int // TTL of history on servers that have TTL; 0 keeps it forever
	Log           *slog.Logger
}

// Sink is the ClickHouse sink; it implements engine.Sink and is safe for
// concurrent use.
type Sink struct {
	cfg     Config
	conn    driver.Conn
	dialect dialect

	mu      sync.Mutex
	filling *batch
	arrived chan struct{} // a Write added rows
	kick    chan struct{} // the filling batch is full
	stop    chan struct{}
	stopped chan struct{}
}

// batch is the rows of many Writes, stored by one INSERT per table. It
// holds the writers' slices rather than copies: each writer waits for the
// batch, so its rows stay put until they are stored.
type batch struct {
	scores [][]engine.ScoreRow
	alerts [][]rules.Transition
	rows   int
	done   chan struct{} // closed once stored (or the sink closed)
	err    error
}

func newBatch() *batch { return &batch{done: make(chan struct{})} }

// Open connects, creates or migrates the schema and starts the flusher.
func Open(ctx context.Context, cfg Config) (*Sink, error) {
	if cfg.Database == "" {
		cfg.Database = "pulse"
	}
	if cfg.BatchRows == 0 {
		cfg.BatchRows = 100_000
	}
	if cfg.FlushInterval == 0 {
		cfg.FlushInterval = time.Second
	}
	if cfg.Linger == 0 {
		cfg.Linger = 5 * time.Millisecond
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	conn, err := ch.Open(&ch.Options{
		Addr:        cfg.Addr,
		Auth:        ch.Auth{Username: cfg.Username, Password: cfg.Password},
		DialTimeout: 5 * time.Second,
	})
	if err != nil {
		return nil, fmt.Errorf("clickhouse: %w", err)
	}
	s := &Sink{cfg: cfg, conn: conn, filling: newBatch(), arrived: make(chan struct{}, 1), kick: make(chan struct{}, 1), stop: make(chan struct{}), stopped: make(chan struct{})}
	if err := s.migrate(ctx); err != nil {
		conn.Close()
		return nil, err
	}
	go s.flusher()
	return s, nil
}

// Dialect names the schema dialect in use: "compat" (18.16) or "modern".
func (s *Sink) Dialect() string { return s.dialect.name }

func (s *Sink) migrate(ctx context.Context) error {
	v, err := s.conn.ServerVersion()
	if err != nil {
		return fmt.Errorf("clickhouse: server version: %w", err)
	}
	s.dialect = compatDialect()
	if modern(v.Version.Major, v.Version.Minor) {
		s.dialect = modernDialect(s.cfg.HistoryMonths)
	}
	db := s.cfg.Database
	if err := s.conn.Exec(ctx, "CREATE DATABASE IF NOT EXISTS "+db); err != nil {
		return fmt.Errorf("clickhouse: creating database %s: %w", db, err)
	}
	if err := s.conn.Exec(ctx, fmt.Sprintf("CREATE TABLE IF NOT EXISTS %s.pulse_schema (version UInt32, dialect String, applied DateTime('UTC')) ENGINE = TinyLog", db)); err != nil {
		return fmt.Errorf("clickhouse: creating %s.pulse_schema: %w", db, err)
	}
	var applied uint32
	row := s.conn.QueryRow(ctx, fmt.Sprintf("SELECT max(version) FROM %s.pulse_schema", db))
	if err := row.Scan(&applied); err != nil {
		return fmt.Errorf("clickhouse: reading the schema version: %w", err)
	}
	for i, stmt := range migrations(db, s.dialect) {
		version := uint32(i + 1)
		if version <= applied {
			continue
		}
		if err := s.conn.Exec(ctx, stmt); err != nil {
			return fmt.Errorf("clickhouse: migration %d: %w", version, err)
		}
		if err := s.record(ctx, version); err != nil {
			return fmt.Errorf("clickhouse: recording migration %d: %w", version, err)
		}
		s.cfg.Log.Info("clickhouse schema migrated", "version", version, "dialect", s.dialect.name)
	}
	return nil
}

// record notes an applied migration. Inserts go through batches: 18.16
// does not take bound INSERT … VALUES over the native protocol.
func (s *Sink) record(ctx context.Context, version uint32) error {
	b, err := s.conn.PrepareBatch(ctx, fmt.Sprintf("INSERT INTO %s.pulse_schema (version, dialect, applied)", s.cfg.Database))
	if err != nil {
		return err
	}
	if err := b.Append(version, s.dialect.name, time.Now().UTC()); err != nil {
		b.Abort()
		return err
	}
	return b.Send()
}

// ErrClosed is returned by Write after Close.
var ErrClosed = errors.New("clickhouse sink closed")

// Write implements engine.Sink: it returns once ClickHouse stores the rows
// (or ctx ends — the rows may still be stored later; a re-sent batch
// replaces them).
func (s *Sink) Write(ctx context.Context, b *engine.Batch) error {
	if len(b.Scores) == 0 && len(b.Transitions) == 0 {
		return nil
	}
	s.mu.Lock()
	select {
	case <-s.stop:
		s.mu.Unlock()
		return ErrClosed
	default:
	}
	f := s.filling
	if len(b.Scores) > 0 {
		f.scores = append(f.scores, b.Scores)
	}
	if len(b.Transitions) > 0 {
		f.alerts = append(f.alerts, b.Transitions)
	}
	f.rows += len(b.Scores) + len(b.Transitions)
	full := f.rows >= s.cfg.BatchRows
	s.mu.Unlock()
	signal(s.arrived)
	if full {
		signal(s.kick)
	}
	select {
	case <-f.done:
		return f.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Close stores what is pending (within ctx) and closes the connection.
func (s *Sink) Close(ctx context.Context) error {
	s.mu.Lock()
	select {
	case <-s.stop:
	default:
		close(s.stop)
	}
	s.mu.Unlock()
	select {
	case <-s.stopped:
	case <-ctx.Done():
	}
	return s.conn.Close()
}

func signal(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// flusher cuts and stores batches: once rows have arrived, it waits until
// no Write came for Linger, the batch is full, or FlushInterval passed.
func (s *Sink) flusher() {
	defer close(s.stopped)
	linger := time.NewTimer(time.Hour)
	defer linger.Stop()
	for {
		stopping := false
		select {
		case <-s.arrived:
		case <-s.stop:
			stopping = true
		}
		deadline := time.After(s.cfg.FlushInterval)
		linger.Reset(s.cfg.Linger)
	wait:
		for !stopping {
			select {
			case <-s.arrived:
				linger.Reset(s.cfg.Linger)
			case <-linger.C:
				break wait
			case <-deadline:
				break wait
			case <-s.kick:
				break wait
			case <-s.stop:
				stopping = true
			}
		}
		s.mu.Lock()
		b := s.filling
		s.filling = newBatch()
		s.mu.Unlock()
		s.store(b, stopping)
		close(b.done)
		if stopping {
			return
		}
	}
}

// store inserts a batch, retrying with capped exponential backoff and full
// jitter until it succeeds — or, once stopping, until one last try fails.
func (s *Sink) store(b *batch, stopping bool) {
	if b.rows == 0 {
		return
	}
	wait := 200 * time.Millisecond
	for attempt := 1; ; attempt++ {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		err := s.insert(ctx, b)
		cancel()
		if err == nil {
			if attempt > 1 {
				s.cfg.Log.Info("clickhouse write recovered", "attempts", attempt, "rows", b.rows)
			}
			return
		}
		s.cfg.Log.Warn("clickhouse write failed; retrying", "attempt", attempt, "rows", b.rows, "err", err)
		if stopping {
			b.err = err
			return
		}
		select {
		case <-time.After(time.Duration(rand.Int64N(int64(wait))) + wait/2):
		case <-s.stop:
			stopping = true
		}
		wait = min(wait*2, 30*time.Second)
	}
}

var scoreColumns = func() string {
	cols := []string{"account_id", "ts", "ts_ns", "score", "grade", "depth"}
	for _, a := range historyAttrs {
		cols = append(cols, a.String())
	}
	for _, m := range historyMetrics {
		cols = append(cols, m.String())
	}
	return strings.Join(cols, ", ")
}()

var alertColumns = func() string {
	cols := []string{"alert_id", "state", "account_id", "rule", "severity", "kind", "ts", "ts_ns", "score", "grade", "depth", "metric_names", "metric_values", "message"}
	for i := range rules.NumAttrs {
		cols = append(cols, rules.Attr(i).String())
	}
	return strings.Join(cols, ", ")
}()

func (s *Sink) insert(ctx context.Context, b *batch) error {
	if len(b.scores) > 0 {
		ib, err := s.conn.PrepareBatch(ctx, fmt.Sprintf("INSERT INTO %s.scores (%s)", s.cfg.Database, scoreColumns))
		if err != nil {
			return err
		}
		vals := make([]any, 0, 6+len(historyAttrs)+len(historyMetrics))
		for _, r := range rowsOf(b.scores) {
			vals = append(vals[:0], r.AccountID, time.Unix(0, r.Ts).UTC(), uint64(r.Ts), nullable(r.Score), r.Grade.String(), r.Depth.String())
			for _, a := range historyAttrs {
				vals = append(vals, r.Attrs[a])
			}
			for _, m := range historyMetrics {
				vals = append(vals, nullable(r.Metrics[m]))
			}
			if err := ib.Append(vals...); err != nil {
				ib.Abort()
				return err
			}
		}
		if err := ib.Send(); err != nil {
			return err
		}
		b.scores = nil // stored: a retry of the alerts must not insert them again
	}
	if len(b.alerts) > 0 {
		ib, err := s.conn.PrepareBatch(ctx, fmt.Sprintf("INSERT INTO %s.alerts (%s)", s.cfg.Database, alertColumns))
		if err != nil {
			return err
		}
		for _, t := range rowsOf(b.alerts) {
			names := make([]string, len(t.Values))
			values := make([]float64, len(t.Values))
			for j, v := range t.Values {
				names[j], values[j] = v.Name, v.Value // NaN stands for null
			}
			vals := []any{t.ID, t.State.String(), t.AccountID, t.Rule, t.Severity.String(), t.Kind.String(),
				time.Unix(0, t.Ts).UTC(), uint64(t.Ts), nullable(t.Score), t.Grade.String(), t.Depth.String(), names, values, t.Message}
			for _, a := range t.Attrs {
				vals = append(vals, a)
			}
			if err := ib.Append(vals...); err != nil {
				ib.Abort()
				return err
			}
		}
		if err := ib.Send(); err != nil {
			return err
		}
		b.alerts = nil
	}
	return nil
}

// rowsOf walks the rows of a batch's chunks in order, by pointer.
func rowsOf[T any](chunks [][]T) func(yield func(int, *T) bool) {
	return func(yield func(int, *T) bool) {
		n := 0
		for _, c := range chunks {
			for i := range c {
				if !yield(n, &c[i]) {
					return
				}
				n++
			}
		}
	}
}

func nullable(v float64) *float64 {
	if rules.IsNull(v) || math.IsInf(v, 0) {
		return nil
	}
	return &v
}
