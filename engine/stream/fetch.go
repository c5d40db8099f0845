package stream

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/pulsehq/pulse/internal/backoff"
)

// chunk is a run of a partition's fetched messages, at most chunkBytes of
// values (bar one longer message). Its values live in slabs the chunk owns
// and reuses once the task hands it back: a catch-up reads millions of
// messages, and a fresh allocation for each (as kafka-go's ReadMessage
// makes) costs the garbage collector dearly.
type chunk struct {
	values  [][]byte
	offsets []int64
	next    int64 // offset after the last message (or where the fetch stood)
	hwm     int64 // high-water mark: next offset the broker will write
	// reset says the partition's log restarted below the state's offset
	// (the topic was recreated): the state must be rebuilt from scratch.
	reset bool

	slabs [][]byte
	slab  int // the slab being filled
}

const (
	// chunkBytes cuts a fetch into chunks the task applies while the rest
	// of the fetch is still being read. Large fetches keep the broker's
	// cost per message low; chunks keep what a partition holds small: a
	// whole 16 MiB fetch per chunk, three chunks per partition, made a
	// catch-up of eight partitions hold 384 MiB of fetched events, memory
	// the kernel had to fault in and the garbage collector doubled.
	chunkBytes = 2 << 20
	slabSize   = 1 << 20
	// slabMinFree starts a new slab below this much room: a message longer
	// than the room left ends the fetch early (kafka-go's Batch.Read cannot
	// resume after a short buffer), so keep that for the rare large one.
	slabMinFree = 64 << 10
	// A new chunk's index is sized for a full chunk of messages this long:
	// grown message by message through a catch-up's first fetches, it was
	// copied a dozen times, each time into fresh memory the kernel had to
	// fault in.
	indexedBytes = 128
)

// room returns the free space where the next value is read.
func (c *chunk) room() []byte {
	for ; c.slab < len(c.slabs); c.slab++ {
		if s := c.slabs[c.slab]; cap(s)-len(s) >= slabMinFree {
			return s[len(s):cap(s)]
		}
	}
	c.slabs = append(c.slabs, make([]byte, 0, slabSize))
	return c.slabs[c.slab][:slabSize]
}

// add records a message whose n value bytes were read into room().
func (c *chunk) add(n int, offset int64) {
	s := c.slabs[c.slab]
	end := len(s) + n
	c.values = append(c.values, s[len(s):end:end])
	c.slabs[c.slab] = s[:end]
	c.offsets = append(c.offsets, offset)
}

// full reports whether the chunk has filled its chunkBytes of slabs (as
// far as room would go).
func (c *chunk) full() bool {
	s := c.slabs[c.slab]
	return c.slab+1 >= chunkBytes/slabSize && cap(s)-len(s) < slabMinFree
}

// clear empties the chunk for reuse, keeping its memory.
func (c *chunk) clear() {
	clear(c.values) // unpin values that came from ReadMessage
	c.values, c.offsets = c.values[:0], c.offsets[:0]
	for i := range c.slabs {
		c.slabs[i] = c.slabs[i][:0]
	}
	c.slab, c.next, c.hwm, c.reset = 0, 0, 0, false
}

// fetcher reads one partition with a plain connection to its leader and
// hands whole batches to the task, so the task never waits per message.
type fetcher struct {
	cfg       *Config
	partition int
	log       *slog.Logger
	out       chan *chunk
	free      chan *chunk // chunks the task is done with
	// large says the last fetch ended at a message too long for a slab:
	// the next reads that one message on its own.
	large bool
}

func newFetcher(cfg *Config, partition int, log *slog.Logger) *fetcher {
	// Two chunks in flight (one applied, one queued) and one being filled.
	return &fetcher{cfg: cfg, partition: partition, log: log, out: make(chan *chunk, 1), free: make(chan *chunk, 3)}
}

// recycle hands a chunk back once nothing refers to its values.
func (f *fetcher) recycle(c *chunk) {
	c.clear()
	select {
	case f.free <- c:
	default:
	}
}

func (f *fetcher) chunk() *chunk {
	select {
	case c := <-f.free:
		return c
	default:
		n := min(f.cfg.FetchMaxBytes, chunkBytes) / indexedBytes
		return &chunk{values: make([][]byte, 0, n), offsets: make([]int64, 0, n)}
	}
}

// run fetches from offset until ctx ends, reconnecting with backoff. A
// negative offset means kafka.FirstOffset or kafka.LastOffset.
func (f *fetcher) run(ctx context.Context, offset int64) {
	defer close(f.out)
	retry := backoff.New(100*time.Millisecond, 5*time.Second)
	for ctx.Err() == nil {
		conn, err := f.dial(ctx)
		if err != nil {
			f.log.Warn("cannot reach the partition leader", "partition", f.partition, "err", err)
			retry.Wait(ctx)
			continue
		}
		offset, err = f.read(ctx, conn, offset)
		conn.Close()
		if ctx.Err() != nil {
			return
		}
		f.log.Warn("fetch failed; reconnecting", "partition", f.partition, "offset", offset, "err", err)
		retry.Wait(ctx)
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
		// The broker answers with whole record batches, so a fetch from the
		// middle of one starts with messages already applied. Checkpoints
		// land there when a fetch is cut short (a revocation ends its read)
		// or between two chunks of one record batch. Batch.Read does not
		// skip them as ReadMessage does.
		from := offset
		c := f.chunk()
		if f.large {
			if m, err := batch.ReadMessage(); err == nil {
				if m.Offset >= from {
					c.values = append(c.values, m.Value)
					c.offsets = append(c.offsets, m.Offset)
					offset = m.Offset + 1
				}
				f.large = false
			}
		}
		for {
			n, err := batch.Read(c.room())
			if errors.Is(err, io.ErrShortBuffer) {
				f.large = true // the batch is spent; the next fetch resumes at offset
				break
			}
			if err != nil {
				break
			}
			offset = batch.Offset() // past the message read
			if offset <= from {
				offset = from
				continue
			}
			c.add(n, offset-1)
			if c.full() {
				c.next, c.hwm = offset, batch.HighWaterMark()
				if !f.send(ctx, c) {
					batch.Close()
					return offset, ctx.Err()
				}
				c = f.chunk()
				// The task may have taken its time (a sink holding it
				// back): the rest of the fetch gets a fresh deadline.
				conn.SetReadDeadline(time.Now().Add(f.cfg.FetchMaxWait + 10*time.Second))
			}
		}
		c.next, c.hwm = offset, batch.HighWaterMark()
		err := batch.Close()
		if errors.Is(err, kafka.OffsetOutOfRange) {
			return f.outOfRange(ctx, conn, offset)
		}
		if errors.Is(err, io.ErrShortBuffer) {
			err = nil // the connection is fine
		}
		if len(c.values) > 0 || err == nil || isTimeout(err) { // an empty fetch still reports the position and lag
			if !f.send(ctx, c) {
				return offset, ctx.Err()
			}
		}
		if err != nil && !isTimeout(err) {
			return offset, err
		}
	}
}

// send hands a chunk to the task; false means ctx ended first.
func (f *fetcher) send(ctx context.Context, c *chunk) bool {
	select {
	case f.out <- c:
		return true
	case <-ctx.Done():
		return false
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
