package synth

import (
	"bufio"
	"cmp"
	"container/heap"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/bits"
	"os"
	"slices"
)

// A day in bounded memory. Events must come out in time order, but they
// are generated account by account, each account's spread over the day.
// So OpenDay generates the accounts in index order into a chunk until the
// chunk holds ChunkBytes of lines, sorts the chunk by (ts, position) and,
// if accounts remain, spills it as a sorted run to a temporary file; the
// last chunk stays in memory. DayReader then merges the runs with a heap
// keyed by (ts, run index). Runs are in account order and each run keeps
// generation order among equal ts, so the result is the whole day sorted
// stably by ts — the same whatever the chunk size. A day that fits in one
// chunk never touches the disk.

// chunk holds generated lines: their bytes, and for each its ts and place.
type chunk struct {
	buf   []byte
	lines []line
}

type line struct {
	ts         int64
	start, end uint32 // in buf
}

func (c *chunk) reset() {
	c.buf = c.buf[:0]
	c.lines = c.lines[:0]
}

// sort orders the lines by ts; equal ts keep generation order, which is
// the order of their bytes in buf.
func (c *chunk) sort() {
	slices.SortFunc(c.lines, func(x, y line) int {
		if x.ts != y.ts {
			return cmp.Compare(x.ts, y.ts)
		}
		return cmp.Compare(x.start, y.start)
	})
}

// A run file is a sequence of records: ts (8 bytes, little endian), the
// line's length (4 bytes) and the line.
const recordHeader = 12

// Buffer sizes of run files: writes go through one buffer of
// spillBufSize; each run is read back through its own buffer, of
// ChunkBytes/2 shared among the runs but no less than minRunBufSize and
// no more than maxRunBufSize, rounded down to a power of two.
const (
	spillBufSize  = 256 << 10
	minRunBufSize = 4 << 10
	maxRunBufSize = 256 << 10
)

// DayReader reads one generated day in time order:
//
//	r, err := g.OpenDay(d)
//	if err != nil { … }
//	defer r.Close()
//	for r.Next() { use(r.Time(), r.Line()) }
//	if err := r.Err(); err != nil { … }
//
// It holds at most one chunk (Options.ChunkBytes of lines) and a read
// buffer per spilled run. A DayReader is not safe for concurrent use.
type DayReader struct {
	g       *Generator
	mem     *chunk // the last chunk, merged with the spilled runs
	runs    []*run // every run, spilled and in memory
	h       runHeap
	top     *run // the run the current line comes from; nil before the first Next
	err     error
	closed  bool
	spilled int // runs spilled to temporary files
}

// OpenDay generates day d (0 = the first day) and returns a reader of its
// events in time order; the caller must Close it. Days larger than
// Options.ChunkBytes are spilled to temporary files in Options.TempDir,
// about the size of the day's JSONL; they are unlinked as soon as they are
// created where the system allows it (a killed process leaves nothing
// behind), else removed by Close. An error is from creating or writing
// a temporary file; then nothing is left open or on disk.
func (g *Generator) OpenDay(d int) (*DayReader, error) {
	g.startDay(d)
	r := &DayReader{g: g, mem: g.spare}
	g.spare = nil
	if r.mem == nil {
		// Room for the budget and the account that crosses it, so the
		// buffer does not grow (and leave garbage) in steady state.
		// Lines average about 140 bytes.
		size := min(g.opts.ChunkBytes+g.opts.ChunkBytes/4+64<<10, g.opts.Accounts*16<<10)
		r.mem = &chunk{buf: make([]byte, 0, size), lines: make([]line, 0, size/128)}
	}
	r.mem.reset()
	g.c = r.mem
	for i := range g.opts.Accounts {
		g.accountDay(i, d)
		if len(r.mem.buf) >= g.opts.ChunkBytes && i < g.opts.Accounts-1 {
			if g.spillW == nil {
				g.spillW = bufio.NewWriterSize(nil, spillBufSize)
			}
			if err := r.spill(g.spillW); err != nil {
				return nil, errors.Join(err, r.Close())
			}
		}
	}
	g.c = nil
	r.mem.sort()
	r.runs = append(r.runs, &run{index: len(r.runs), mem: r.mem})
	// A power of two, so that the next day, with about as many runs,
	// reuses these buffers.
	share := min(max(g.opts.ChunkBytes/2/max(r.spilled, 1), minRunBufSize), maxRunBufSize)
	bufSize := 1 << (bits.Len(uint(share)) - 1)
	for _, run := range r.runs {
		if run.f != nil {
			if _, err := run.f.Seek(0, io.SeekStart); err != nil {
				return nil, errors.Join(fmt.Errorf("synth: rewinding %s: %w", run.f.Name(), err), r.Close())
			}
			run.r = g.reader(run.f, bufSize)
		}
		ok, err := run.next()
		if err != nil {
			return nil, errors.Join(err, r.Close())
		}
		if ok {
			r.h = append(r.h, run)
		}
	}
	heap.Init(&r.h)
	return r, nil
}

// startDay prepares the writers for day d.
func (g *Generator) startDay(d int) {
	day := g.start.AddDate(0, 0, d)
	g.dayNs = day.UnixNano()
	g.dayPrefix = day.AppendFormat(g.dayPrefix[:0], "2006-01-02T")
}

// reader returns a reader of f with a buffer of size bytes, reusing one
// of the previous day's.
func (g *Generator) reader(f *os.File, size int) *bufio.Reader {
	for len(g.readers) > 0 {
		r := g.readers[len(g.readers)-1]
		g.readers = g.readers[:len(g.readers)-1]
		if r.Size() == size {
			r.Reset(f)
			return r
		}
	}
	return bufio.NewReaderSize(f, size)
}

// spill sorts the chunk in memory, writes it to a new temporary file and
// empties it.
func (r *DayReader) spill(w *bufio.Writer) error {
	c := r.mem
	c.sort()
	f, err := os.CreateTemp(r.g.opts.TempDir, "pulse-gen-*.run")
	if err != nil {
		return fmt.Errorf("synth: spilling a chunk of the day (set TMPDIR to a directory with room): %w", err)
	}
	run := &run{index: len(r.runs), f: f}
	r.runs = append(r.runs, run)
	r.spilled++
	// Unlinked while open, the file lives until it is closed, even if the
	// process is killed. Where that is not allowed, Close removes it.
	run.removed = os.Remove(f.Name()) == nil
	w.Reset(f)
	var hdr [recordHeader]byte
	for _, l := range c.lines {
		binary.LittleEndian.PutUint64(hdr[:8], uint64(l.ts))
		binary.LittleEndian.PutUint32(hdr[8:], l.end-l.start)
		w.Write(hdr[:])
		w.Write(c.buf[l.start:l.end])
	}
	if err := w.Flush(); err != nil {
		return fmt.Errorf("synth: spilling a chunk of the day to %s (set TMPDIR to a directory with room): %w", f.Name(), err)
	}
	w.Reset(nil)
	c.reset()
	return nil
}

// Next advances to the next event and reports whether there is one; it
// returns false at the end of the day or on an error (see Err).
func (r *DayReader) Next() bool {
	if r.err != nil || r.closed {
		return false
	}
	if r.top != nil {
		ok, err := r.top.next()
		switch {
		case err != nil:
			r.err = err
			return false
		case ok:
			heap.Fix(&r.h, 0)
		default:
			heap.Pop(&r.h)
		}
	}
	if len(r.h) == 0 {
		r.top = nil
		return false
	}
	r.top = r.h[0]
	return true
}

// Time returns the current event's ts in Unix nanoseconds.
func (r *DayReader) Time() int64 { return r.top.ts }

// Line returns the current event's JSON line; it is valid until the next
// call to Next or Close.
func (r *DayReader) Line() []byte { return r.top.line }

// Err returns the error that ended Next early, if any.
func (r *DayReader) Err() error { return r.err }

// Close releases the day's temporary files and hands its chunk to the
// next day. It may be called more than once, and before the end of the
// day.
func (r *DayReader) Close() error {
	if r.closed {
		return nil
	}
	r.closed = true
	var errs []error
	for _, run := range r.runs {
		if run.f == nil {
			continue
		}
		errs = append(errs, run.f.Close())
		if run.r != nil {
			run.r.Reset(nil)
			r.g.readers = append(r.g.readers, run.r)
		}
		if !run.removed {
			errs = append(errs, os.Remove(run.f.Name()))
		}
	}
	r.runs, r.h, r.top = nil, nil, nil
	if r.g.spare == nil {
		r.g.spare = r.mem
	}
	r.mem = nil
	return errors.Join(errs...)
}

// run is a sorted run of lines: a spilled file or the chunk in memory.
type run struct {
	index int // the run's place in account order: ties in ts go to the lower
	ts    int64
	line  []byte

	f       *os.File
	removed bool // unlinked already
	r       *bufio.Reader
	used    int    // bytes of r's buffer the current line occupies
	long    []byte // a line longer than r's buffer

	mem *chunk
	pos int
}

// next moves to the run's next line and reports whether there is one.
func (run *run) next() (bool, error) {
	if run.mem != nil {
		if run.pos == len(run.mem.lines) {
			return false, nil
		}
		l := run.mem.lines[run.pos]
		run.pos++
		run.ts, run.line = l.ts, run.mem.buf[l.start:l.end]
		return true, nil
	}
	// The current line is peeked, not copied: it stays in r's buffer until
	// it is discarded here.
	if _, err := run.r.Discard(run.used); err != nil {
		return false, run.readErr(err)
	}
	run.used = 0
	hdr, err := run.r.Peek(recordHeader)
	if err == io.EOF && len(hdr) == 0 {
		return false, nil
	}
	if err != nil {
		return false, run.readErr(err)
	}
	run.ts = int64(binary.LittleEndian.Uint64(hdr[:8]))
	n := recordHeader + int(binary.LittleEndian.Uint32(hdr[8:]))
	rec, err := run.r.Peek(n)
	if errors.Is(err, bufio.ErrBufferFull) {
		run.long = slices.Grow(run.long[:0], n)[:n]
		if _, err := io.ReadFull(run.r, run.long); err != nil {
			return false, run.readErr(err)
		}
		run.line = run.long[recordHeader:]
		return true, nil
	}
	if err != nil {
		return false, run.readErr(err)
	}
	run.used = n
	run.line = rec[recordHeader:]
	return true, nil
}

func (run *run) readErr(err error) error {
	if err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return fmt.Errorf("synth: reading back spilled run %s: %w", run.f.Name(), err)
}

// runHeap orders runs by their current line: ts, then run index.
type runHeap []*run

func (h runHeap) Len() int { return len(h) }
func (h runHeap) Less(i, j int) bool {
	if h[i].ts != h[j].ts {
		return h[i].ts < h[j].ts
	}
	return h[i].index < h[j].index
}
func (h runHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *runHeap) Push(x any)   { *h = append(*h, x.(*run)) }
func (h *runHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}
