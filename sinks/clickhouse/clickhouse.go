// Package clickhouse writes Pulse's history to ClickHouse for Grafana and
// CSM leads: score history (scores), alert transitions (alerts) and a daily
// per-account rollup (daily, fed by a materialized view). It creates and
// migrates its schema on start, in the dialect the server speaks (18.16 or
// current), over the native protocol.
//
// Writes are group-committed: every Write joins the batch being filled and
// returns once a single INSERT per table has stored it. A batch is cut once
// every partition that wrote lately has a Write in it (nobody else is
// coming), at BatchRows, or FlushInterval after its first rows. ClickHouse
// wants few large INSERTs: on 18.16, 800 k rows cost the server 6.8 CPU
// seconds in 8 k-row INSERTs and 1.2 s in 100 k-row ones. A failing INSERT is retried with
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
	HistoryMonths int           // TTL of history on servers that have TTL; 0 keeps it forever
	Log           *slog.Logger
	// Inserted, if set, is told of every INSERT that succeeded: the rows
	// per INSERT are what ClickHouse's load depends on.
	Inserted func(table string, rows int)
}

// Sink is the ClickHouse sink; it implements engine.Sink and is safe for
// concurrent use.
type Sink struct {
	cfg     Config
	conn    driver.Conn
	dialect dialect

	mu      sync.Mutex
	filling *batch
	// writers is when each partition last wrote: the ones that wrote
	// within activeFor are expected in every batch.
	writers map[int32]time.Time
	arrived chan struct{} // a Write added the batch's first rows
	kick    chan struct{} // the filling batch is complete: cut it now
	stop    chan struct{}
	stopped chan struct{}
}

// activeFor is how long a partition that stopped writing (idle, or handed
// to another instance) still holds batches back, up to FlushInterval each.
const activeFor = 5 * time.Second

// batch is the rows of many Writes, stored by one INSERT per table. It
// holds the writers' slices rather than copies: each writer waits for the
// batch, so its rows stay put until they are stored.
type batch struct {
	scores  [][]engine.ScoreRow
	alerts  [][]rules.Transition
	rows    int
	writers map[int32]bool // the partitions waiting on it
	done    chan struct{}  // closed once stored (or the sink closed)
	err     error
}

func newBatch() *batch { return &batch{writers: map[int32]bool{}, done: make(chan struct{})} }

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
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if cfg.Inserted == nil {
		cfg.Inserted = func(string, int) {}
	}
	conn, err := ch.Open(&ch.Options{
		Addr:        cfg.Addr,
		Auth:        ch.Auth{Username: cfg.Username, Password: cfg.Password},
		DialTimeout: 5 * time.Second,
	})
	if err != nil {
		return nil, fmt.Errorf("clickhouse: %w", err)
	}
	s := &Sink{cfg: cfg, conn: conn, filling: newBatch(), writers: map[int32]time.Time{},
		arrived: make(chan struct{}, 1), kick: make(chan struct{}, 1), stop: make(chan struct{}), stopped: make(chan struct{})}
	if err := s.migrate(ctx, -1); err != nil {
		conn.Close()
		return nil, err
	}
	go s.flusher()
	return s, nil
}

// Dialect names the schema dialect in use: "compat" (18.16) or "modern".
func (s *Sink) Dialect() string { return s.dialect.name }

// migrate applies the migrations not yet applied, up to the first limit
// of them (all when limit < 0).
func (s *Sink) migrate(ctx context.Context, limit int) error {
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
		if limit >= 0 && i >= limit {
			break
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
	first := f.rows == 0
	if len(b.Scores) > 0 {
		f.scores = append(f.scores, b.Scores)
	}
	if len(b.Transitions) > 0 {
		f.alerts = append(f.alerts, b.Transitions)
	}
	f.rows += len(b.Scores) + len(b.Transitions)
	now := time.Now()
	s.writers[b.Partition] = now
	f.writers[b.Partition] = true
	if first {
		signal(s.arrived)
	}
	if f.rows >= s.cfg.BatchRows || s.everyoneIn(f, now) {
		signal(s.kick) // under the lock: the flusher clears it with the cut
	}
	s.mu.Unlock()
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

// everyoneIn reports whether every partition that wrote lately waits on f;
// it forgets the ones that did not. Called with s.mu held.
func (s *Sink) everyoneIn(f *batch, now time.Time) bool {
	in := true
	for p, last := range s.writers {
		if now.Sub(last) > activeFor {
			delete(s.writers, p)
		} else if !f.writers[p] {
			in = false
		}
	}
	return in
}

func signal(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// flusher cuts and stores batches: once rows have arrived, it waits until
// the batch is complete or FlushInterval passed.
func (s *Sink) flusher() {
	defer close(s.stopped)
	for {
		stopping := false
		select {
		case <-s.arrived:
		case <-s.stop:
			stopping = true
		}
		if !stopping {
			deadline := time.NewTimer(s.cfg.FlushInterval)
			select {
			case <-s.kick:
			case <-deadline.C:
			case <-s.stop:
				stopping = true
			}
			deadline.Stop()
		}
		s.mu.Lock()
		b := s.filling
		s.filling = newBatch()
		select {
		case <-s.kick: // a kick for the batch just cut must not cut the next one
		default:
		}
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
		for i, col := range scoreBlock(b.scores) {
			if err := ib.Column(i).Append(col); err != nil {
				ib.Abort()
				return err
			}
		}
		if err := ib.Send(); err != nil {
			return err
		}
		s.cfg.Inserted("scores", rowCount(b.scores))
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
		s.cfg.Inserted("alerts", rowCount(b.alerts))
		b.alerts = nil
	}
	return nil
}

// scoreBlock turns score rows into the columns of scoreColumns, in order.
// Whole columns go to the driver in one call each, not row by row: a
// catch-up writes millions of rows, and a row-wise append boxes every
// value. Nullable values point into the rows, which stay put until the
// batch is stored.
func scoreBlock(chunks [][]engine.ScoreRow) []any {
	n := rowCount(chunks)
	ids := make([]string, 0, n)
	ts := make([]time.Time, 0, n)
	tsNs := make([]uint64, 0, n)
	scores := make([]*float64, 0, n)
	grades := make([]int8, 0, n) // the enums' values are the rules' constants
	depths := make([]int8, 0, n)
	attrs := make([][]string, len(historyAttrs))
	for i := range attrs {
		attrs[i] = make([]string, 0, n)
	}
	metrics := make([][]*float64, len(historyMetrics))
	for i := range metrics {
		metrics[i] = make([]*float64, 0, n)
	}
	for _, r := range rowsOf(chunks) {
		ids = append(ids, r.AccountID)
		ts = append(ts, time.Unix(0, r.Ts).UTC())
		tsNs = append(tsNs, uint64(r.Ts))
		scores = append(scores, nullableIn(&r.Score))
		grades = append(grades, int8(r.Grade))
		depths = append(depths, int8(r.Depth))
		for i, a := range historyAttrs {
			attrs[i] = append(attrs[i], r.Attrs[a])
		}
		for i, m := range historyMetrics {
			metrics[i] = append(metrics[i], nullableIn(&r.Metrics[m]))
		}
	}
	cols := []any{ids, ts, tsNs, scores, grades, depths}
	for _, c := range attrs {
		cols = append(cols, c)
	}
	for _, c := range metrics {
		cols = append(cols, c)
	}
	return cols
}

func rowCount[T any](chunks [][]T) int {
	n := 0
	for _, c := range chunks {
		n += len(c)
	}
	return n
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

func nullable(v float64) *float64 { return nullableIn(&v) }

// nullableIn is v, or nil for null (NaN) and infinities, which SQL has not.
func nullableIn(v *float64) *float64 {
	if rules.IsNull(*v) || math.IsInf(*v, 0) {
		return nil
	}
	return v
}
