package stream

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/segmentio/kafka-go"
)

// chunk is one fetched batch of a partition's messages.
type chunk struct {
	values  [][]byte
	offsets []int64
	next    int64 // offset after the last message (or where the fetch stood)
	hwm     int64 // high-water mark: next offset the broker will write
	// reset says the partition's log restarted below the state's offset
	// (the topic was recreated): the state must be rebuilt from scratch.
	reset bool
}

// fetcher reads one partition with a plain connection to its leader and
// hands whole batches to the task, so the task never waits per message.
type fetcher struct {
	cfg       *Config
	partition int
	log       *slog.Logger
	out       chan *chunk
}

// run fetches from offset until ctx ends, reconnecting with backoff. A
// negative offset means kafka.FirstOffset or kafka.LastOffset.
func (f *fetcher) run(ctx context.Context, offset int64) {
	defer close(f.out)
	backoff := newBackoff(100*time.Millisecond, 5*time.Second)
	for ctx.Err() == nil {
		conn, err := f.dial(ctx)
		if err != nil {
			f.log.Warn("cannot reach the partition leader", "partition", f.partition, "err", err)
			backoff.wait(ctx)
			continue
		}
		offset, err = f.read(ctx, conn, offset)
		conn.Close()
		if ctx.Err() != nil {
			return
		}
		f.log.Warn("fetch failed; reconnecting", "partition", f.partition, "offset", offset, "err", err)
		backoff.wait(ctx)
	}
}

func (f *fetcher) dial(ctx context.Context) (*kafka.Conn, error) {
	var errs []error
	for _, b := range f.cfg.Brokers {
		dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		conn, err := f.cfg.Dialer.DialLeader(dctx, "tcp", b, f.cfg.Topic, f.partition)
		cancel()
		if err == nil {
			return conn, nil
		}
		errs = append(errs, err)
	}
	return nil, errors.Join(errs...)
}

// read fetches batches until an error; it returns the offset to resume at.
func (f *fetcher) read(ctx context.Context, conn *kafka.Conn, offset int64) (int64, error) {
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Now()) })
	defer stop()
	if offset < 0 {
		first, last, err := conn.ReadOffsets()
		if err != nil {
			return offset, err
		}
		if offset == kafka.FirstOffset {
			offset = first
		} else {
			offset = last
		}
	}
	if _, err := conn.Seek(offset, kafka.SeekAbsolute); err != nil {
		return offset, err
	}
	for {
		conn.SetReadDeadline(time.Now().Add(f.cfg.FetchMaxWait + 10*time.Second))
		batch := conn.ReadBatchWith(kafka.ReadBatchConfig{MinBytes: 1, MaxBytes: f.cfg.FetchMaxBytes, MaxWait: f.cfg.FetchMaxWait})
		c := &chunk{}
		for {
			m, err := batch.ReadMessage()
			if err != nil {
				break
			}
			c.values = append(c.values, m.Value)
			c.offsets = append(c.offsets, m.Offset)
			offset = m.Offset + 1
		}
		c.next, c.hwm = offset, batch.HighWaterMark()
		err := batch.Close()
		if errors.Is(err, kafka.OffsetOutOfRange) {
			return f.outOfRange(ctx, conn, offset)
		}
		if len(c.values) > 0 || err == nil || isTimeout(err) { // an empty fetch still reports the position and lag
			select {
			case f.out <- c:
			case <-ctx.Done():
				return offset, ctx.Err()
			}
		}
		if err != nil && !isTimeout(err) {
			return offset, err
		}
	}
}

// outOfRange handles an offset the broker does not have. Below the log
// start, retention deleted events the state never saw: resume at the log
// start (those events are gone). Above the log end, the topic restarted
// (recreated, or an in-memory broker restarted): the state describes
// another log, so the task must rebuild it from the start.
func (f *fetcher) outOfRange(ctx context.Context, conn *kafka.Conn, offset int64) (int64, error) {
	first, last, err := conn.ReadOffsets()
	if err != nil {
		return offset, err
	}
	reset := offset > last
	if reset {
		f.log.Error("partition log restarted below the checkpoint; rebuilding its state from the start", "partition", f.partition, "offset", offset, "log_end", last)
	} else {
		f.log.Error("events deleted by retention before they were applied; resuming at the log start", "partition", f.partition, "offset", offset, "log_start", first)
	}
	select {
	case f.out <- &chunk{next: first, hwm: last, reset: reset}:
	case <-ctx.Done():
		return offset, ctx.Err()
	}
	return first, kafka.OffsetOutOfRange
}

func isTimeout(err error) bool {
	var t interface{ Timeout() bool }
	return errors.As(err, &t) && t.Timeout()
}

// backoff is capped exponential backoff with full jitter.
type backoff struct {
	base, max, cur time.Duration
}

func newBackoff(base, max time.Duration) *backoff { return &backoff{base: base, max: max, cur: base} }

func (b *backoff) wait(ctx context.Context) {
	d := time.Duration(float64(b.cur) * (0.5 + jitter()))
	b.cur = min(b.cur*2, b.max)
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

func (b *backoff) reset() { b.cur = b.base }
