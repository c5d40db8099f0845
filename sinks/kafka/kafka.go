package kafka

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	kafkago "github.com/segmentio/kafka-go"

	"github.com/pulsehq/pulse/engine"
	"github.com/pulsehq/pulse/rules"
)

// IDHeader is the header that carries a message's stable id.
const IDHeader = "pulse-id"

// Sink is the Kafka output; it implements engine.Sink and engine.Flusher
// and is safe for concurrent use.
type Sink struct {
	cfg Config
	w   *kafkago.Writer

	mu      sync.Mutex
	pending []kafkago.Message // accepted, not yet taken by the writer
	taken   int               // messages the writer is producing
	written uint64            // sequence number of the last Write that added messages
	acked   uint64            // every Write up to this one is acknowledged
	lastErr error             // why the writer is retrying; nil when it is not
	closed  bool
	changed chan struct{} // closed (and replaced) when acked or lastErr change
	wake    chan struct{} // capacity 1: pending has messages
	stop    chan struct{} // closed by Close once it stops waiting
	stopped chan struct{} // closed when the writer has returned
	lost    int           // messages the writer gave up on at Close
}

// Open starts the sink. It connects to nothing yet: the first produce
// does, and a broker that does not answer is retried as any failure.
func Open(cfg Config) (*Sink, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	d := cfg.Dialer
	s := &Sink{
		cfg: cfg,
		w: &kafkago.Writer{
			Addr:                   kafkago.TCP(cfg.Brokers...),
			Balancer:               &kafkago.Murmur2Balancer{}, // as Kafka's Java client: by key
			RequiredAcks:           kafkago.RequireAll,
			AllowAutoTopicCreation: true,
			MaxAttempts:            1, // the sink retries, and counts each failure
			BatchSize:              cfg.BufferMessages,
			BatchTimeout:           time.Millisecond, // the sink's own buffer gathers the batch
			Transport:              &kafkago.Transport{Dial: d.DialFunc, TLS: d.TLS, SASL: d.SASLMechanism},
		},
		changed: make(chan struct{}),
		wake:    make(chan struct{}, 1),
		stop:    make(chan struct{}),
		stopped: make(chan struct{}),
	}
	go s.run()
	return s, nil
}

// Write implements engine.Sink: it encodes the batch's transitions and
// score rows (those of the topics configured) and returns once they are
// buffered. It waits while BufferMessages are already waiting — until the
// writer catches up, or ctx ends.
func (s *Sink) Write(ctx context.Context, b *engine.Batch) error {
	msgs := s.encode(b)
	if len(msgs) == 0 {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for !s.closed && len(s.pending)+s.taken > 0 && len(s.pending)+s.taken+len(msgs) > s.cfg.BufferMessages {
		changed := s.changed
		s.mu.Unlock()
		select {
		case <-changed:
		case <-ctx.Done():
			s.mu.Lock()
			return fmt.Errorf("kafka: %d messages wait for the brokers: %w", len(s.pending)+s.taken, cmpErr(s.lastErr, ctx.Err()))
		}
		s.mu.Lock()
	}
	if s.closed {
		return errors.New("kafka: the sink is closed")
	}
	s.pending = append(s.pending, msgs...)
	s.written++
	select {
	case s.wake <- struct{}{}:
	default:
	}
	return nil
}

// encode returns the messages of a batch. They copy what they hold: the
// batch is the caller's again once Write returns.
func (s *Sink) encode(b *engine.Batch) []kafkago.Message {
	var msgs []kafkago.Message
	if s.cfg.TransitionsTopic != "" {
		for i := range b.Transitions {
			t := &b.Transitions[i]
			id := TransitionID(t)
			msgs = append(msgs, kafkago.Message{Topic: s.cfg.TransitionsTopic, Key: []byte(t.AccountID),
				Value: AppendTransitionJSON(nil, t), Headers: []kafkago.Header{{Key: IDHeader, Value: []byte(id)}}})
		}
	}
	if s.cfg.ScoresTopic != "" {
		for i := range b.Scores {
			r := &b.Scores[i]
			msgs = append(msgs, kafkago.Message{Topic: s.cfg.ScoresTopic, Key: []byte(r.AccountID),
				Value:   engine.AppendScoreRowJSON(nil, r),
				Headers: []kafkago.Header{{Key: IDHeader, Value: []byte(engine.ScoreRowID(r.AccountID, r.Ts))}}})
		}
	}
	return msgs
}

// TransitionID is a transition's stable id: its alert_id (one per alert
// episode) and its state.
func TransitionID(t *rules.Transition) string { return t.ID + ":" + t.State.String() }

// AppendTransitionJSON appends a transition as one JSON object: its id
// (TransitionID) first, then the fields the transitions file has (SPEC
// §5, engine.AppendTransitionJSON).
func AppendTransitionJSON(b []byte, t *rules.Transition) []byte {
	b = append(b, `{"id":"`...)
	b = append(b, TransitionID(t)...)
	b = append(b, `",`...)
	start := len(b)
	b = engine.AppendTransitionJSON(b, t)
	return append(b[:start], b[start+1:]...) // its own '{' goes
}

// run is the writer: it produces what the Writes buffered, all that has
// gathered at once, retrying until the brokers acknowledge it.
func (s *Sink) run() {
	defer close(s.stopped)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		<-s.stop
		cancel()
	}()
	for {
		select {
		case <-s.wake:
		case <-s.stop:
			return
		}
		s.mu.Lock()
		msgs, seq := s.pending, s.written
		s.pending, s.taken = nil, len(msgs)
		s.mu.Unlock()
		if len(msgs) == 0 {
			continue
		}
		if !s.produce(ctx, msgs) {
			return // stopped by Close: it reports what is left
		}
		s.mu.Lock()
		s.acked, s.taken, s.lastErr = seq, 0, nil
		s.notify()
		s.mu.Unlock()
	}
}

// produce writes msgs until every one is acknowledged (true), or ctx ends
// (false, with s.lost set).
func (s *Sink) produce(ctx context.Context, msgs []kafkago.Message) bool {
	wait := s.cfg.RetryWait
	for {
		err := s.w.WriteMessages(ctx, msgs...)
		if err == nil {
			return true
		}
		if ctx.Err() != nil {
			s.mu.Lock()
			s.lost = len(msgs)
			s.mu.Unlock()
			return false
		}
		var tooLarge kafkago.MessageTooLargeError
		if errors.As(err, &tooLarge) {
			// No retry can store it: say so, and go on without it.
			s.cfg.Log.Error("kafka output: a message is larger than a produce request may be; it is dropped",
				"topic", tooLarge.Message.Topic, "key", string(tooLarge.Message.Key), "bytes", len(tooLarge.Message.Value))
			msgs = tooLarge.Remaining
			continue
		}
		// Retry only what failed: what the brokers hold stays there.
		var failed kafkago.WriteErrors
		if errors.As(err, &failed) && len(failed) == len(msgs) {
			again := msgs[:0:0]
			for i, e := range failed {
				if e != nil {
					again = append(again, msgs[i])
				}
			}
			msgs = again
		}
		s.cfg.Failed(err)
		s.cfg.Log.Warn("kafka output: producing failed; retrying", "messages", len(msgs), "in", wait, "err", err)
		s.mu.Lock()
		s.lastErr = err
		s.notify()
		s.mu.Unlock()
		select {
		case <-time.After(wait + time.Duration(rand.Int64N(int64(wait)/2+1))):
		case <-ctx.Done():
		}
		wait = min(2*wait, s.cfg.MaxRetryWait)
	}
}

// notify wakes the Writes and Flushes waiting for a change. s.mu is held.
func (s *Sink) notify() {
	close(s.changed)
	s.changed = make(chan struct{})
}

// Flush implements engine.Flusher: it returns once every message written
// before the call is acknowledged, or ctx ends (with the error the
// brokers last gave, if any).
func (s *Sink) Flush(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	target := s.written
	for s.acked < target {
		if s.closed {
			return errors.New("kafka: the sink is closed")
		}
		changed := s.changed
		s.mu.Unlock()
		select {
		case <-changed:
		case <-ctx.Done():
			s.mu.Lock()
			return fmt.Errorf("kafka: %d messages not acknowledged: %w", len(s.pending)+s.taken, cmpErr(s.lastErr, ctx.Err()))
		}
		s.mu.Lock()
	}
	return nil
}

// Close implements engine.Sink: it flushes (until ctx ends), stops the
// writer and closes the connections. It reports the messages it could not
// store.
func (s *Sink) Close(ctx context.Context) error {
	err := s.Flush(ctx)
	s.mu.Lock()
	s.closed = true
	s.notify()
	s.mu.Unlock()
	close(s.stop)
	<-s.stopped
	s.mu.Lock()
	left := len(s.pending) + s.lost
	s.mu.Unlock()
	if cerr := s.w.Close(); err == nil {
		err = cerr
	}
	if err != nil && left > 0 {
		return fmt.Errorf("kafka: %d messages not stored: %w", left, err)
	}
	return err
}

// cmpErr is the first non-nil error.
func cmpErr(errs ...error) error {
	for _, e := range errs {
		if e != nil {
			return e
		}
	}
	return nil
}

var _ engine.Flusher = (*Sink)(nil)
