// Package clickhouse writes Pulse's history to ClickHouse for Grafana and
// CSM leads: score history (scores), alert transitions (alerts), renewal
// outcomes (revenue) and a daily per-account rollup (daily, fed by a
// materialized view). It creates and migrates its schema on start, in the
// dialect the server speaks (18.16 or current), over the native protocol.
//
// The sink buffers (it is an engine.Flusher): every Write copies its rows
// into the batch being filled and returns, and one INSERT per table stores
// the batch once it holds BatchRows rows, FlushInterval after its first
// rows, or when Flush asks — the engine flushes before each checkpoint, so
// offsets never pass rows held only here. ClickHouse wants few large
// INSERTs: on 18.16, 800 k rows cost the server 6.8 CPU seconds as 8 k-row
// INSERTs and 1.2 s as 100 k-row ones; and partitions never wait for an
// INSERT unless the sink is full. Score rows go sorted by the table's key,
// which spares the server a sort. A failing INSERT is retried with backoff
// and jitter while the next batch fills; once that one is full too, Write
// blocks (backpressure), so memory stays at about two batches, the
// consumer stops committing offsets past what ClickHouse holds, and
// everything catches up when it returns. Every failed attempt is reported
// (Config.Failed), so an outage shows in the metrics while the rows wait.
// Open does not need the server: when ClickHouse does not answer, the
// schema is created or migrated in the background once it does, and rows
// wait in the batches meanwhile, as during an outage. Close reports the
// rows it could not store. Tables are ReplacingMergeTree
// keyed by the outputs' stable ids, so re-sent rows (after a crash, or a
// replay) leave no visible duplicates with FINAL or argMax queries.
package clickhouse

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	ch "github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/ClickHouse/clickhouse-go/v2/lib/proto"

	"github.com/pulsehq/pulse/engine"
	"github.com/pulsehq/pulse/rules"
)

// Config configures the sink. DefaultConfig has the defaults; Open takes
// zero settings as their defaults (WithDefaults).
type Config struct {
	Addr          []string // host:port of the native protocol (9000)
	Database      string
	Username      string
	Password      string
	BatchRows     int           // store a batch at this many rows
	FlushInterval time.Duration // or this long after its first rows
	HistoryMonths int           // TTL of history on servers that have TTL; 0 keeps it forever
	TLS           *tls.Config   // nil: plain TCP
	Log           *slog.Logger
	// Inserted, if set, is told of every INSERT that succeeded: the rows
	// per INSERT are what ClickHouse's load depends on.
	Inserted func(table string, rows int)
	// Failed, if set, is told of every failed attempt to store a batch
	// (connecting, migrating the schema or an INSERT); each is retried.
	// It is called from the sink's own goroutine and must not block.
	Failed func(err error)
}

// Sink is the ClickHouse sink; it implements engine.Sink and
// engine.Flusher and is safe for concurrent use.
type Sink struct {
	cfg     Config
	conn    driver.Conn
	dialect dialect
	// ready says the schema is created and migrated; until then (the
	// server did not answer at Open) the flusher migrates before it
	// inserts.
	ready       atomic.Bool
	dialectName atomic.Value // string, once ready

	// The prepared INSERT of score rows, reused (see insertScores); only
	// the flusher touches it.
	scoreInsert       driver.Batch
	cancelScoreInsert context.CancelFunc

	mu       sync.Mutex
	filling  *batch
	spare    *batch // a stored batch, for reuse
	written  uint64 // sequence number of the last Write
	stored   uint64 // every Write up to this one is stored
	flushing bool   // a Flush waits: store the filling batch now
	closed   bool
	unstored rowCounts     // what the last store on Close failed to insert
	lastErr  error         // why
	changed  chan struct{} // closed (and replaced) when a batch is cut or stored
	arrived  chan struct{} // the filling batch got its first rows
	kick     chan struct{} // store the filling batch now
	stop     chan struct{}
	stopped  chan struct{}
}

// Open connects, creates or migrates the schema and starts the flusher.
// A server that does not answer (refused, unreachable, timed out) does not
// fail Open: the flusher migrates once it answers, retrying with backoff
// and reporting each failure to Config.Failed, while Writes buffer and
// then wait as during an outage. A server that answers with an error
// (wrong password, a migration it refuses) fails Open.
func Open(ctx context.Context, cfg Config) (*Sink, error) {
	cfg = cfg.WithDefaults()
	conn, err := ch.Open(&ch.Options{
		Addr:        cfg.Addr,
		Auth:        ch.Auth{Username: cfg.Username, Password: cfg.Password},
		TLS:         cfg.TLS,
		DialTimeout: 5 * time.Second,
	})
	if err != nil {
		return nil, err // the daemon names the sink (Output)
	}
	s := newSink(cfg, conn)
	if err := s.connect(ctx); err != nil {
		if answered(err) {
			conn.Close()
			return nil, err
		}
		cfg.Failed(err)
		cfg.Log.Warn("clickhouse does not answer; starting without it: rows wait in memory (then partitions wait) until it does, and the schema is created then", "addr", cfg.Addr, "err", err)
	}
	go s.flusher()
	return s, nil
}

func newSink(cfg Config, conn driver.Conn) *Sink {
	return &Sink{cfg: cfg, conn: conn, filling: &batch{}, changed: make(chan struct{}),
		arrived: make(chan struct{}, 1), kick: make(chan struct{}, 1), stop: make(chan struct{}), stopped: make(chan struct{})}
}

// answered reports whether err is the server's own answer (an exception,
// or a TLS certificate Pulse does not trust), not a failure to reach it:
// retrying would not help.
func answered(err error) bool {
	var e *proto.Exception
	var cert *tls.CertificateVerificationError
	return errors.As(err, &e) || errors.As(err, &cert)
}

// connect creates or migrates the schema unless that is done.
func (s *Sink) connect(ctx context.Context) error {
	if s.ready.Load() {
		return nil
	}
	if err := s.migrate(ctx, -1); err != nil {
		return err
	}
	s.dialectName.Store(s.dialect.name)
	s.ready.Store(true)
	s.cfg.Log.Info("clickhouse schema ready", "addr", s.cfg.Addr, "database", s.cfg.Database, "dialect", s.dialect.name)
	return nil
}

// Dialect names the schema dialect in use: "compat" (18.16) or "modern";
// "" until the server has answered.
func (s *Sink) Dialect() string {
	name, _ := s.dialectName.Load().(string)
	return name
}

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
	for i, m := range migrations(db, s.dialect) {
		version := uint32(i + 1)
		if version <= applied {
			continue
		}
		if limit >= 0 && i >= limit {
			break
		}
		if err := s.apply(ctx, m); err != nil {
			return fmt.Errorf("clickhouse: migration %d: %w", version, err)
		}
		if err := s.record(ctx, version); err != nil {
			return fmt.Errorf("clickhouse: recording migration %d: %w", version, err)
		}
		s.cfg.Log.Info("clickhouse schema migrated", "version", version, "dialect", s.dialect.name)
	}
	return nil
}

// apply runs a migration. Columns are added only where missing (see
// migration); if the ALTER fails, the columns may have come meanwhile from
// another process starting on the same database, which is as good.
func (s *Sink) apply(ctx context.Context, m migration) error {
	if m.table == "" {
		return s.conn.Exec(ctx, m.stmt)
	}
	missing, err := s.missingColumns(ctx, m)
	if err != nil {
		return err
	}
	return s.addMissing(ctx, m, missing)
}

// addMissing adds the columns of m found missing.
func (s *Sink) addMissing(ctx context.Context, m migration, missing []column) error {
	if len(missing) == 0 {
		return nil
	}
	err := s.conn.Exec(ctx, addColumns(m.table, missing))
	if err != nil {
		if still, err2 := s.missingColumns(ctx, m); err2 == nil && len(still) == 0 {
			return nil
		}
	}
	return err
}

// missingColumns returns the columns of m its table does not have.
func (s *Sink) missingColumns(ctx context.Context, m migration) ([]column, error) {
	db, table, _ := strings.Cut(m.table, ".")
	rows, err := s.conn.Query(ctx, "SELECT name FROM system.columns WHERE database = ? AND table = ?", db, table)
	if err != nil {
		return nil, fmt.Errorf("reading the columns of %s: %w", m.table, err)
	}
	defer rows.Close()
	have := map[string]bool{}
	for rows.Next() {
		var name string
		if err := rows.Scan(&name); err != nil {
			return nil, fmt.Errorf("reading the columns of %s: %w", m.table, err)
		}
		have[name] = true
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("reading the columns of %s: %w", m.table, err)
	}
	if len(have) == 0 {
		return nil, fmt.Errorf("table %s does not exist", m.table)
	}
	var missing []column
	for _, c := range m.columns {
		if !have[c.name] {
			missing = append(missing, c)
		}
	}
	return missing, nil
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

// ErrClosed is returned by Write and Flush after Close.
var ErrClosed = errors.New("clickhouse sink closed")

// Write implements engine.Sink: it copies the batch into the one being
// filled and returns — at once, unless that one is full while the one
// before is still being stored (backpressure), until ctx ends.
func (s *Sink) Write(ctx context.Context, b *engine.Batch) error {
	if len(b.Scores) == 0 && len(b.Transitions) == 0 && len(b.Revenue) == 0 {
		return nil
	}
	for i := range b.Revenue {
		// An INSERT with an outcome the table has not would fail on every
		// retry and hold everything back.
		if o := b.Revenue[i].Outcome; int(o) >= len(engine.OutcomeNames) || engine.OutcomeNames[o] == "" {
			panic(fmt.Sprintf("BUG: revenue row of %s with outcome %d", b.Revenue[i].AccountID, o))
		}
	}
	s.mu.Lock()
	for !s.closed && s.filling.rows >= s.cfg.BatchRows {
		if err := s.wait(ctx); err != nil {
			return err
		}
	}
	if s.closed {
		s.mu.Unlock()
		return ErrClosed
	}
	f := s.filling
	if f.rows == 0 {
		f.first = time.Now()
		signal(s.arrived)
	}
	f.scores.append(b.Scores)
	f.alerts = append(f.alerts, b.Transitions...)
	f.revenue = append(f.revenue, b.Revenue...)
	f.rows += len(b.Scores) + len(b.Transitions) + len(b.Revenue)
	s.written++
	f.seq = s.written
	if f.rows >= s.cfg.BatchRows {
		signal(s.kick)
	}
	s.mu.Unlock()
	return nil
}

// Flush implements engine.Flusher: it returns once every row written
// before it is stored, or ctx ends.
func (s *Sink) Flush(ctx context.Context) error {
	s.mu.Lock()
	target := s.written
	for s.stored < target {
		if s.closed {
			s.mu.Unlock()
			return ErrClosed
		}
		if s.filling.seq > 0 && !s.flushing {
			s.flushing = true
			signal(s.kick)
		}
		if err := s.wait(ctx); err != nil {
			return err
		}
	}
	s.mu.Unlock()
	return nil
}

// wait waits, with s.mu held, until a batch is cut or stored, the sink
// closes or ctx ends; it returns with s.mu held unless it fails.
func (s *Sink) wait(ctx context.Context) error {
	changed := s.changed
	s.mu.Unlock()
	select {
	case <-changed:
	case <-s.stopped:
	case <-ctx.Done():
		return ctx.Err()
	}
	s.mu.Lock()
	return nil
}

// broadcast wakes every wait. Called with s.mu held.
func (s *Sink) broadcast() {
	close(s.changed)
	s.changed = make(chan struct{})
}

// ErrNotStored is returned by Close when rows could not be stored.
var ErrNotStored = errors.New("not stored in ClickHouse")

// Close stores what is buffered (one attempt, within ctx) and closes the
// connection. It returns an ErrNotStored error that counts the rows left
// unstored, if any (they are re-read from the last checkpoints).
func (s *Sink) Close(ctx context.Context) error {
	s.mu.Lock()
	if !s.closed {
		s.closed = true
		close(s.stop)
	}
	s.mu.Unlock()
	var err error
	select {
	case <-s.stopped:
		s.mu.Lock()
		if s.unstored.rows() > 0 {
			err = fmt.Errorf("%s %w: %w", s.unstored, ErrNotStored, s.lastErr)
		}
		s.mu.Unlock()
	case <-ctx.Done():
		err = fmt.Errorf("rows buffered when closing timed out %w: %w", ErrNotStored, ctx.Err())
	}
	return errors.Join(err, s.conn.Close())
}

// rowCounts counts rows by table.
type rowCounts struct{ scores, alerts, revenue int }

func (r rowCounts) rows() int { return r.scores + r.alerts + r.revenue }

func (r rowCounts) String() string {
	return fmt.Sprintf("%d score rows, %d alert transitions and %d renewal outcomes", r.scores, r.alerts, r.revenue)
}

func signal(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// flusher cuts and stores batches: once rows have arrived, it waits until
// the batch is full, FlushInterval passed or a Flush asks.
func (s *Sink) flusher() {
	defer close(s.stopped)
	defer func() {
		if s.cancelScoreInsert != nil {
			s.cancelScoreInsert()
		}
	}()
	s.awaitServer()
	for {
		stopping := false
		select {
		case <-s.arrived:
		case <-s.stop:
			stopping = true
		}
		if !stopping {
			s.mu.Lock()
			due := s.cfg.FlushInterval - time.Since(s.filling.first) // it may have filled during the last INSERT
			s.mu.Unlock()
			deadline := time.NewTimer(max(due, 0))
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
		s.filling, s.spare = s.spare, nil
		if s.filling == nil {
			s.filling = &batch{}
		}
		s.flushing = false
		select {
		case <-s.kick: // a kick for the batch just cut must not cut the next one
		default:
		}
		s.broadcast() // room for Writes held back
		s.mu.Unlock()

		left, err := s.store(b, stopping)
		s.mu.Lock()
		if left.rows() == 0 && b.seq > s.stored {
			s.stored = b.seq
		}
		if left.rows() > 0 {
			s.unstored.scores += left.scores
			s.unstored.alerts += left.alerts
			s.unstored.revenue += left.revenue
			s.lastErr = err
		}
		b.reset()
		s.spare = b
		s.broadcast()
		more := s.filling.rows > 0 // cut while this one was retried
		s.mu.Unlock()
		if stopping && !more {
			return
		}
	}
}

// awaitServer creates or migrates the schema once the server answers (when
// it did not at Open), so the schema is there before the first rows are
// due. Rows written meanwhile wait in the batches.
func (s *Sink) awaitServer() {
	wait := 200 * time.Millisecond
	for attempt := 1; !s.ready.Load(); attempt++ {
		select {
		case <-time.After(time.Duration(rand.Int64N(int64(wait))) + wait/2):
		case <-s.stop:
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		err := s.connect(ctx)
		cancel()
		if err != nil {
			s.cfg.Failed(err)
			s.cfg.Log.Warn("clickhouse does not answer yet; retrying", "attempt", attempt, "err", err)
		}
		wait = min(wait*2, 5*time.Second)
	}
}

// store inserts a batch, retrying with capped exponential backoff and full
// jitter until it succeeds — or, once stopping, until one last try fails;
// it returns the rows it left unstored and why.
func (s *Sink) store(b *batch, stopping bool) (rowCounts, error) {
	if b.rows == 0 {
		return rowCounts{}, nil
	}
	wait := 200 * time.Millisecond
	for attempt := 1; ; attempt++ {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		err := s.connect(ctx)
		if err == nil {
			err = s.insert(ctx, b)
		}
		cancel()
		if err == nil {
			if attempt > 1 {
				s.cfg.Log.Info("clickhouse write recovered", "attempts", attempt, "rows", b.rows)
			}
			return rowCounts{}, nil
		}
		s.cfg.Failed(err)
		if stopping {
			left := rowCounts{b.scores.len(), len(b.alerts), len(b.revenue)}
			s.cfg.Log.Error("clickhouse sink closed with rows unstored; they are re-read from the last checkpoints",
				"score_rows", left.scores, "alert_transitions", left.alerts, "renewal_outcomes", left.revenue, "err", err)
			return left, err
		}
		s.cfg.Log.Warn("clickhouse write failed; retrying", "attempt", attempt, "rows", b.rows, "err", err)
		select {
		case <-time.After(time.Duration(rand.Int64N(int64(wait))) + wait/2):
		case <-s.stop:
			stopping = true
		}
		wait = min(wait*2, 30*time.Second)
	}
}

func (s *Sink) insert(ctx context.Context, b *batch) error {
	if n := b.scores.len(); n > 0 {
		if err := s.insertScores(ctx, &b.scores); err != nil {
			return err
		}
		s.cfg.Inserted("scores", n)
		b.scores.reset() // stored: a retry of the alerts must not insert them again
	}
	if len(b.alerts) > 0 {
		ib, err := s.conn.PrepareBatch(ctx, fmt.Sprintf("INSERT INTO %s.alerts (%s)", s.cfg.Database, alertColumnNames))
		if err != nil {
			return err
		}
		for i := range b.alerts {
			t := &b.alerts[i]
			names := make([]string, len(t.Values))
			values := make([]float64, len(t.Values))
			for j, v := range t.Values {
				names[j], values[j] = v.Name, v.Value // NaN stands for null
			}
			suppressed := uint8(0)
			if t.Suppressed {
				suppressed = 1
			}
			vals := []any{t.ID, t.State.String(), t.AccountID, t.Rule, t.Severity.String(), t.Kind.String(),
				time.Unix(0, t.Ts).UTC(), uint64(t.Ts), nullable(t.Score), t.Grade.String(), t.Depth.String(), names, values, t.Message,
				t.Scorecard, suppressed}
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
		s.cfg.Inserted("alerts", len(b.alerts))
		clear(b.alerts)
		b.alerts = b.alerts[:0] // stored: a retry of the revenue must not insert them again
	}
	if len(b.revenue) > 0 {
		ib, err := s.conn.PrepareBatch(ctx, fmt.Sprintf("INSERT INTO %s.revenue (%s)", s.cfg.Database, revenueColumnNames))
		if err != nil {
			return err
		}
		for i := range b.revenue {
			r := &b.revenue[i]
			if err := ib.Append(r.AccountID, time.Unix(0, r.Ts).UTC(), uint64(r.Ts), r.Outcome.String(),
				r.ArrBefore, r.ArrAfter, r.Segment, r.CSM); err != nil {
				ib.Abort()
				return err
			}
		}
		if err := ib.Send(); err != nil {
			return err
		}
		s.cfg.Inserted("revenue", len(b.revenue))
		clear(b.revenue)
		b.revenue = b.revenue[:0]
	}
	return nil
}

// insertScores stores score rows with one INSERT, sorted by the table's
// key.
//
// The INSERT is prepared once and sent again for every batch, its columns
// reset in between: the driver then keeps its column buffers, where a
// fresh batch grows new ones value by value into memory the kernel must
// fault in (in a catch-up, a tenth of Pulse's CPU; the sink benchmark
// stores 12% more rows a second this way). Sending a sent batch is the
// driver's retry path: it takes a connection and starts the INSERT again. The batch outlives any one
// call, so it has a context of its own, cancelled when ctx ends during
// the call; any error discards it, and the next call prepares a new one.
func (s *Sink) insertScores(ctx context.Context, c *scoreColumns) (err error) {
	if s.scoreInsert == nil {
		bctx, cancel := context.WithCancel(context.Background())
		ib, err := s.conn.PrepareBatch(bctx, fmt.Sprintf("INSERT INTO %s.scores (%s)", s.cfg.Database, scoreColumnNames))
		if err != nil {
			cancel()
			return err
		}
		s.scoreInsert, s.cancelScoreInsert = ib, cancel
	}
	stop := context.AfterFunc(ctx, s.cancelScoreInsert)
	defer func() {
		if !stop() || err != nil {
			s.scoreInsert.Abort() // releases its connection if it holds one
			s.cancelScoreInsert()
			s.scoreInsert, s.cancelScoreInsert = nil, nil
		}
	}()
	cols := s.scoreInsert.Columns()
	if len(cols) != numScoreColumns {
		return fmt.Errorf("the INSERT into scores has %d columns, want %d", len(cols), numScoreColumns)
	}
	c.sort()
	for i, col := range cols {
		col.Reset()
		if _, err := col.Append(c.column(i)); err != nil {
			return fmt.Errorf("column %s: %w", col.Name(), err)
		}
	}
	return s.scoreInsert.Send()
}

// nullable is v, or nil for null.
func nullable(v float64) *float64 {
	if isNull(v) {
		return nil
	}
	return &v
}

// isNull reports whether v is stored as NULL: the engine's null (NaN), and
// infinities, which SQL has not.
func isNull(v float64) bool { return rules.IsNull(v) || math.IsInf(v, 0) }
