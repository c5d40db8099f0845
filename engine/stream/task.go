package stream

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/pulsehq/pulse/engine"
	"github.com/pulsehq/pulse/internal/backoff"
	"github.com/pulsehq/pulse/rules"
)

// finalSaveTimeout bounds the checkpoint and commit on shutdown or
// revocation, when sinks may be failing.
var finalSaveTimeout = 15 * time.Second

// maxSaveBackoff bounds the time between checkpoint attempts while they
// fail (unless checkpoint_interval is longer).
const maxSaveBackoff = 30 * time.Second

// task owns one partition for one generation: it alone touches the
// engine.Partition, so nothing on the hot path is locked.
type task struct {
	c         *Consumer
	gen       *kafka.Generation
	partition int32
	committed int64 // the group's committed offset, or FirstOffset
	queries   chan query

	part       *engine.Partition
	dec        engine.Decoder
	ev         engine.Event
	next       int64        // offset of the next event to apply
	applied    atomic.Int64 // next, for the lag watcher
	checkpoint int64        // next offset as of the last checkpoint
	counts     [engine.NumReasons]int
	pending    []rules.Transition  // taken from the partition, not yet handed to the sink
	scores     []engine.ScoreRow   // likewise
	revenue    []engine.RevenueRow // likewise
	writing    chan error          // the result of the sink write in flight; nil when none
	written    *engine.Batch       // the batch of that write
	writeCtx   context.Context     // outlives the task's ctx until its final save is done
	broken     bool                // a write was abandoned: never checkpoint again
	dead       []kafka.Message     // rejected events not yet in the dead-letter topic
	deadKeyed  bool                // their original keys are read back
	buf        []byte              // checkpoint encoding, reused
	lastEvent  time.Time
	// For the caught-up report, read by the lag watcher: the event time
	// of the newest event applied (or the restored clock), and when an
	// event was last applied (or the task started), Unix nanoseconds.
	newest      atomic.Int64
	lastApplied atomic.Int64
	snap        snapshots // what readers see (snapshot.go)
}

type query struct {
	fn   func(*engine.Partition)
	done chan struct{}
}

// run restores the partition, then applies fetched batches until ctx ends;
// it leaves with a checkpoint and a commit of what it applied — or, when
// that final save fails, an error that says what was not checkpointed and
// which outputs no sink stored.
func (t *task) run(ctx context.Context, restored func()) (finalErr error) {
	cfg := &t.c.cfg
	log := cfg.Log.With("partition", t.partition)
	start, err := t.restore(ctx, log)
	if err != nil {
		restored()
		return nil // ctx ended before the partition was restored: nothing to save
	}
	t.startSnapshots()
	t.applied.Store(t.next)
	restored()
	writeCtx, cancelWrites := context.WithCancel(context.WithoutCancel(ctx))
	t.writeCtx = writeCtx
	t.c.register(t)
	cfg.Hooks.Assigned(t.partition, t.part.Len() > 0 || t.checkpoint >= 0)
	defer func() {
		t.c.unregister(t)
		// Shutdown and revocation end here: the state is checkpointed and
		// the offset committed before the partition is let go.
		final, cancel := context.WithTimeout(context.WithoutCancel(ctx), finalSaveTimeout)
		defer cancel()
		if err := t.save(final); err != nil {
			finalErr = t.notSaved(log, err)
		}
		cancelWrites()
		cfg.Hooks.Revoked(t.partition)
	}()

	fetchCtx, stopFetch := context.WithCancel(ctx)
	defer stopFetch()
	// One batch fetched ahead: enough to keep the task busy, and memory
	// stays at two batches per partition while a sink holds it back.
	f := newFetcher(cfg, int(t.partition), log)
	go f.run(fetchCtx, start)

	ticker := time.NewTicker(min(cfg.CheckpointInterval, time.Second))
	defer ticker.Stop()
	lastSave := cfg.Now()
	saveEvery := cfg.CheckpointInterval
	saveWait := min(max(cfg.CheckpointInterval, 2*time.Second), 10*time.Second)
	t.lastEvent = cfg.Now()
	t.lastApplied.Store(t.lastEvent.UnixNano())
	t.newest.Store(t.part.Clock())
	for {
		select {
		case c, ok := <-f.out:
			if !ok {
				return
			}
			if err := t.apply(ctx, c); err != nil {
				return // ctx ended while a sink kept failing
			}
			t.applied.Store(t.next)
			cfg.Hooks.Lag(cfg.Topic, t.partition, max(c.hwm-t.next, 0))
			f.recycle(c) // applied, and its dead letters written
		case q := <-t.queries:
			q.fn(t.part)
			close(q.done)
		case <-t.snap.want:
			t.publish()
		case now := <-ticker.C:
			if cfg.IdleAdvance > 0 && now.Sub(t.lastEvent) >= cfg.IdleAdvance {
				t.part.AdvanceTo(now.UnixNano())
				t.snap.dirty = true
				if err := t.flush(ctx); err != nil {
					return
				}
			}
			if now.Sub(lastSave) >= saveEvery {
				// A sink that cannot store (ClickHouse down) must not stop
				// the partition here: the save gives up after saveWait,
				// nothing is checkpointed or committed, and the partition
				// scores on until the sink's buffer is full (then its
				// Write holds the partition back). Saves are retried less
				// and less often meanwhile.
				sctx, cancel := context.WithTimeout(ctx, saveWait)
				err := t.save(sctx)
				cancel()
				switch {
				case err == nil:
					saveEvery = cfg.CheckpointInterval
				case ctx.Err() == nil: // else the final save follows
					saveEvery = min(saveEvery*2, max(cfg.CheckpointInterval, maxSaveBackoff))
					log.Error("checkpoint or commit failed; the committed offset stays where it was", "next_attempt_in", saveEvery, "err", err)
				}
				lastSave = cfg.Now()
			}
		case <-ctx.Done():
			return
		}
	}
}

// notSaved logs and returns what a failed final save leaves behind: the
// events applied since the last checkpoint (the next owner re-reads them)
// and the outputs no sink has accepted yet. Rows a buffering sink accepted
// but could not store, that sink reports itself when it closes.
func (t *task) notSaved(log *slog.Logger, err error) error {
	transitions := len(t.pending) + len(t.part.TakeTransitions())
	scores := len(t.scores) + len(t.part.TakeScores())
	revenue := len(t.revenue) + len(t.part.TakeRevenue())
	if b := t.written; t.writing != nil && b != nil { // a write still in flight: not accepted
		transitions, scores, revenue = transitions+len(b.Transitions), scores+len(b.Scores), revenue+len(b.Revenue)
	}
	what := fmt.Sprintf("no checkpoint yet: the events applied up to offset %d are re-read from the configured start", t.next)
	if t.checkpoint >= 0 {
		what = fmt.Sprintf("%d events (offsets %d to %d) not checkpointed: re-read from offset %d", max(t.next-t.checkpoint, 0), t.checkpoint, t.next-1, t.checkpoint)
	}
	log.Error("final checkpoint failed: what follows the last one is re-read by the next owner",
		"not_checkpointed", what, "transitions_not_stored", transitions,
		"score_rows_not_stored", scores, "renewal_outcomes_not_stored", revenue, "err", err)
	return fmt.Errorf("partition %d: %s; %d alert transitions, %d score rows and %d renewal outcomes not accepted by every sink: %w",
		t.partition, what, transitions, scores, revenue, err)
}

// restore loads the partition's newest usable checkpoint, or starts it
// empty. It returns the offset to fetch from (negative:
// kafka.FirstOffset/LastOffset), or an error when ctx ends while the
// checkpoint store cannot be read: then the partition is not started at
// all, since starting it afresh would rebuild it from the start of the
// topic.
func (t *task) restore(ctx context.Context, log *slog.Logger) (int64, error) {
	cfg := &t.c.cfg
	rs := t.c.rules.Load()
	t.checkpoint = -1
	retry := backoff.New(200*time.Millisecond, 10*time.Second)
	for {
		var cp engine.Checkpoint
		unusable, err := cfg.Checkpoints.Load(ctx, t.partition, func(data []byte) error {
			p, c, err := engine.RestorePartition(data, rs, cfg.Engine)
			if err == nil && c.Partition != t.partition {
				err = fmt.Errorf("%w: it holds partition %d", engine.ErrCorruptCheckpoint, c.Partition)
			}
			if err == nil {
				t.part, cp = p, c
			}
			return err
		})
		for _, u := range unusable {
			log.Error("checkpoint unusable; set aside", "err", u)
		}
		if err == nil {
			t.next, t.checkpoint = cp.NextOffset, cp.NextOffset
			log.Info("restored from checkpoint", "accounts", t.part.Len(), "offset", cp.NextOffset, "unusable", len(unusable))
			cfg.Hooks.Restored(t.partition, true, cp.NextOffset, len(unusable))
			return cp.NextOffset, nil
		}
		if errors.Is(err, engine.ErrNoCheckpoint) {
			cfg.Hooks.Restored(t.partition, false, -1, len(unusable))
			break
		}
		if ctx.Err() != nil {
			return 0, ctx.Err()
		}
		log.Warn("checkpoint store unreadable; retrying", "err", err)
		retry.Wait(ctx)
	}
	t.part = engine.NewPartition(t.partition, rs, cfg.Engine)
	start := int64(kafka.FirstOffset)
	switch cfg.Start {
	case StartLatest:
		start = kafka.LastOffset
	case StartCommitted:
		if t.committed >= 0 {
			start = t.committed
		}
	}
	t.next = start
	log.Info("no checkpoint; starting fresh", "start", cfg.Start)
	return start, nil
}

// maxPendingScores bounds the score rows a partition holds before handing
// them to the sinks, even mid-batch. A catch-up emits a row per account
// per hour of event time, and a 16 MiB fetch holds hours: unbounded, the
// rows of one batch would take tens of megabytes per partition. It is
// checked after every event: a few hundred events of a quiet night can
// pass several hourly sweeps, and score buffers that outgrow their
// recycled memory cost page faults and copies.
const maxPendingScores = 8192

// apply decodes and applies one fetched batch, then hands its outputs to
// the sink (retrying until it accepts: backpressure).
func (t *task) apply(ctx context.Context, c *chunk) error {
	cfg := &t.c.cfg
	t.snap.dirty = true
	if c.reset {
		t.part = engine.NewPartition(t.partition, t.c.rules.Load(), cfg.Engine)
		t.pending, t.scores, t.revenue = nil, nil, nil
		t.next, t.checkpoint = c.next, -1
		return nil
	}
	if rs := t.c.rules.Load(); rs != nil && rs != t.part.Rules() {
		t.part.SetRules(rs)
	}
	began := time.Now()
	wall := cfg.Now().UnixNano()
	var newest int64
	var err error
	applied := len(c.values)
	for i, v := range c.values {
		reason := t.dec.Decode(v, &t.ev)
		if reason == engine.ReasonOK {
			reason = t.part.Apply(&t.ev, wall)
			newest = max(newest, t.ev.Ts)
		}
		t.counts[reason]++
		if reason != engine.ReasonOK && t.c.dlq != nil {
			t.dead = append(t.dead, kafka.Message{Offset: c.offsets[i], Value: v, Headers: []kafka.Header{
				{Key: "pulse-reason", Value: []byte(reason.String())},
				{Key: "pulse-source", Value: fmt.Appendf(nil, "%s/%d/%d", cfg.Topic, t.partition, c.offsets[i])},
			}})
		}
		if t.part.PendingScores() >= maxPendingScores {
			if err = t.flush(ctx); err != nil {
				// ctx ended while a sink held the flush back. The events up
				// to here are in the state, so the final checkpoint must
				// place the offset after them, or the next owner would
				// apply them twice.
				applied = i + 1
				break
			}
		}
	}
	switch {
	case applied < len(c.values):
		t.next = c.offsets[applied-1] + 1
	case applied > 0:
		t.lastEvent = cfg.Now()
		t.lastApplied.Store(t.lastEvent.UnixNano())
		t.next = c.next
	case c.next > t.next:
		t.next = c.next // the position an empty fetch resolved, or the log start after retention
	}
	for r, n := range t.counts {
		if n > 0 {
			cfg.Hooks.Events(t.partition, engine.Reason(r), n)
			t.counts[r] = 0
		}
	}
	cfg.Hooks.Applied(t.partition, applied, time.Since(began), newest)
	if newest > t.newest.Load() {
		t.newest.Store(newest)
	}
	if n := t.part.TakeOutliers(); n > 0 {
		cfg.Hooks.ClockOutliers(t.partition, int(n))
	}
	if err != nil {
		return err
	}
	return t.flush(ctx)
}

// flush hands the outputs produced since the last flush to the sink. The
// write runs in the background, so the partition applies its next batch
// meanwhile; but only one write is ever in flight: flush first waits for
// the previous one, which is how a slow or failing sink holds the
// partition back. Dead letters are written before it returns.
func (t *task) flush(ctx context.Context) error {
	cfg := &t.c.cfg
	if err := t.awaitWrite(ctx); err != nil {
		return err
	}
	t.pending = appendOrTake(t.pending, t.part.TakeTransitions())
	t.scores = appendOrTake(t.scores, t.part.TakeScores())
	t.revenue = appendOrTake(t.revenue, t.part.TakeRevenue())
	if len(t.pending) > 0 || len(t.scores) > 0 || len(t.revenue) > 0 {
		b := &engine.Batch{Partition: t.partition, Transitions: t.pending, Scores: t.scores, Revenue: t.revenue}
		t.pending, t.scores, t.revenue = nil, nil, nil // the write owns them now
		done := make(chan error, 1)
		t.writing, t.written = done, b
		go func() { done <- t.write(b) }()
	}
	retry := backoff.New(100*time.Millisecond, 10*time.Second)
	for len(t.dead) > 0 {
		err := t.keyDeadLetters(ctx)
		if err == nil {
			err = t.c.dlq.WriteMessages(ctx, t.dead...)
		}
		if err == nil {
			cfg.Hooks.DeadLettered(len(t.dead))
			clear(t.dead)
			t.dead, t.deadKeyed = t.dead[:0], false
			break
		}
		cfg.Log.Warn("dead-letter write failed; retrying", "partition", t.partition, "err", err)
		if err := retry.Wait(ctx); err != nil {
			return err
		}
	}
	return nil
}

// keyDeadLetters reads back the original keys of the dead letters. The
// fetcher reads values only (keys would cost an allocation per message on
// the hot path, and Pulse reads none), so the few rejected messages are
// fetched again, once per run of them within one broker answer.
func (t *task) keyDeadLetters(ctx context.Context) error {
	if t.deadKeyed {
		return nil
	}
	cfg := &t.c.cfg
	f := fetcher{cfg: cfg, partition: int(t.partition)}
	conn, err := f.dial(ctx)
	if err != nil {
		return fmt.Errorf("reading the keys of dead letters: %w", err)
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Now()) })
	defer stop()
	for i := 0; i < len(t.dead); {
		if _, err := conn.Seek(t.dead[i].Offset, kafka.SeekAbsolute); err != nil {
			return fmt.Errorf("reading the keys of dead letters: %w", err)
		}
		conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		batch := conn.ReadBatchWith(kafka.ReadBatchConfig{MinBytes: 1, MaxBytes: 1 << 20, MaxWait: cfg.FetchMaxWait})
		start := i
		for i < len(t.dead) {
			m, err := batch.ReadMessage()
			if err != nil {
				break
			}
			for i < len(t.dead) && t.dead[i].Offset <= m.Offset {
				if t.dead[i].Offset == m.Offset {
					t.dead[i].Key = m.Key
				}
				i++
			}
		}
		err := batch.Close()
		if i == start { // not one message read
			return fmt.Errorf("reading the keys of dead letters at offset %d: %w", t.dead[i].Offset, err)
		}
	}
	t.deadKeyed = true
	return nil
}

// appendOrTake appends more to s, or takes more whole when s is empty: a
// catch-up produces millions of score rows, each too big to copy twice.
func appendOrTake[T any](s, more []T) []T {
	if len(s) == 0 {
		return more
	}
	return append(s, more...)
}

// write retries a batch with backoff until the sink accepts it, or the
// task's writes are cancelled after its final save.
func (t *task) write(b *engine.Batch) error {
	cfg := &t.c.cfg
	retry := backoff.New(100*time.Millisecond, 10*time.Second)
	for {
		err := t.c.sink.Write(t.writeCtx, b)
		if err == nil {
			return nil
		}
		cfg.Hooks.SinkFailed(err)
		cfg.Log.Warn("sink write failed; retrying", "partition", t.partition, "err", err)
		if retry.Wait(t.writeCtx) != nil {
			return err
		}
	}
}

// awaitWrite waits for the write in flight. An error means its batch was
// never accepted: nothing after it may be checkpointed.
func (t *task) awaitWrite(ctx context.Context) error {
	if t.writing == nil {
		return nil
	}
	// Readers are answered while a sink holds the partition back.
wait:
	select {
	case <-t.snap.want:
		t.publish()
		goto wait
	case err := <-t.writing:
		b := t.written
		t.writing, t.written = nil, nil
		if err == nil {
			t.part.RecycleScores(b.Scores) // the sink is done with them
		} else {
			// The batch is gone from memory; only a re-read from the last
			// checkpoint can produce it again, so never checkpoint past it.
			t.broken = true
		}
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// save checkpoints the partition and commits its offset, in that order:
// the commit waits until the store holds the checkpoint durably, and a
// crash between the two leaves a checkpoint ahead of the commit, which is
// safe (the next owner resumes from the checkpoint).
func (t *task) save(ctx context.Context) error {
	cfg := &t.c.cfg
	if t.broken {
		return errors.New("a sink write was abandoned; the next owner re-reads from the last checkpoint")
	}
	if t.next < 0 || t.next == t.checkpoint {
		return nil
	}
	if err := t.flush(ctx); err != nil {
		return err
	}
	if err := t.awaitWrite(ctx); err != nil {
		return err
	}
	// Sinks that buffer (ClickHouse groups many partitions' rows into one
	// INSERT) store what they hold before the offset moves past it.
	t.publishIfDirty() // a flush may wait for long, and answers no reader
	if err := engine.Flush(ctx, t.c.sink); err != nil {
		return fmt.Errorf("flushing the sinks: %w", err)
	}
	began := time.Now()
	t.buf = t.part.AppendCheckpoint(t.buf[:0], t.next)
	err := cfg.Checkpoints.Save(ctx, t.partition, t.buf)
	cfg.Hooks.Checkpointed(t.partition, len(t.buf), time.Since(began), err)
	if err != nil {
		return err
	}
	t.checkpoint = t.next
	return t.c.commit(t.gen, t.partition, t.next)
}

// do runs fn on the partition's goroutine.
func (t *task) do(ctx context.Context, fn func(*engine.Partition)) error {
	q := query{fn: fn, done: make(chan struct{})}
	select {
	case t.queries <- q:
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(5 * time.Second):
		return ErrNotOwned
	}
	select {
	case <-q.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
