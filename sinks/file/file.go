// Package file is the local output sink: alert transitions as JSON lines,
// to a file or standard output.
package file

import (
	"bufio"
	"context"
	"io"
	"os"
	"sync"

	"github.com/pulsehq/pulse/engine"
)

// Sink appends each transition as one JSON line (SPEC §5). It is safe for
// concurrent use. A write reaches the file (readers see it) before it
// returns, and Flush fsyncs it — the engine flushes before every
// checkpoint, so what the offsets passed survives a power loss, at one
// fsync per checkpoint rather than per batch. A batch re-sent after a
// restart appears again with the same alert_id.
type Sink struct {
	mu  sync.Mutex
	w   *bufio.Writer
	f   *os.File // nil for a plain writer
	buf []byte
}

// Open appends to path, creating it; "-" writes to standard output.
func Open(path string) (*Sink, error) {
	if path == "-" {
		return New(os.Stdout), nil
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	s := New(f)
	s.f = f
	return s, nil
}

// New writes to w.
func New(w io.Writer) *Sink { return &Sink{w: bufio.NewWriterSize(w, 1<<16)} }

// Write implements engine.Sink.
func (s *Sink) Write(_ context.Context, b *engine.Batch) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := range b.Transitions {
		s.buf = engine.AppendTransitionJSON(s.buf[:0], &b.Transitions[i])
		s.buf = append(s.buf, '\n')
		if _, err := s.w.Write(s.buf); err != nil {
			return err
		}
	}
	return s.w.Flush()
}

// Flush implements engine.Flusher: it fsyncs a file.
func (s *Sink) Flush(context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.w.Flush(); err != nil {
		return err
	}
	if s.f != nil && s.f != os.Stdout {
		return s.f.Sync()
	}
	return nil
}

// Close implements engine.Sink.
func (s *Sink) Close(context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	err := s.w.Flush()
	if s.f != nil {
		if cerr := s.f.Close(); err == nil {
			err = cerr
		}
	}
	return err
}
