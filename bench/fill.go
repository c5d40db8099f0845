package bench

import (
	"bytes"
	"context"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/pulsehq/pulse/engine"
	"github.com/pulsehq/pulse/engine/stream"
	"github.com/pulsehq/pulse/engine/synth"
)

// StreamEnd ends the generated streams of the harnesses on a Friday, so
// that a few days back are working days only, and the same on every run.
var StreamEnd = time.Date(2026, 11, 20, 0, 0, 0, 0, time.UTC)

// Fill produces the stream `pulse gen --accounts A --days D --end
// 2026-11-20T00:00:00Z` writes (seed 1) to topic events at addr, keyed
// and partitioned by account id as `pulse gen --kafka` does, and returns
// the number of events. each, when not nil, sees every event decoded; it
// must not keep ev after it returns.
func Fill(addr string, accounts, days int, each func(ev *engine.Event)) (int, error) {
	g := synth.New(synth.Options{Accounts: accounts, Days: days, Seed: 1, End: StreamEnd})
	w := &kafka.Writer{Addr: kafka.TCP(addr), Topic: "events", Balancer: stream.AccountBalancer{}, BatchSize: 5000, BatchTimeout: 5 * time.Millisecond, RequiredAcks: kafka.RequireOne}
	defer w.Close()
	var dec engine.Decoder
	var ev engine.Event
	var msgs []kafka.Message
	n := 0
	flush := func() error {
		if len(msgs) == 0 {
			return nil
		}
		err := w.WriteMessages(context.Background(), msgs...)
		msgs = msgs[:0]
		return err
	}
	var err error
	for d := range g.Days() {
		dayErr := g.Day(d, func(l []byte) {
			if err != nil {
				return
			}
			dec.Decode(l, &ev)
			if each != nil {
				each(&ev)
			}
			msgs = append(msgs, kafka.Message{Key: bytes.Clone(ev.Account), Value: bytes.Clone(l)})
			n++
			if len(msgs) == 50000 {
				err = flush()
			}
		})
		if err == nil {
			err = dayErr
		}
		if err != nil {
			return n, err
		}
	}
	return n, flush()
}
