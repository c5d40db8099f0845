package main

import (
	"bytes"
	"context"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/pulsehq/pulse/engine"
	"github.com/pulsehq/pulse/engine/stream"
)

// producer writes JSONL events to a topic, keyed and partitioned by
// account id exactly as a replay's virtual partitions.
type producer struct {
	w    *kafka.Writer
	tr   *kafka.Transport // the writer's own: Close ends its connections
	dec  engine.Decoder
	ev   engine.Event
	msgs []kafka.Message
}

func newProducer(brokers []string, topic string) *producer {
	tr := &kafka.Transport{}
	return &producer{tr: tr, w: &kafka.Writer{
		Addr: kafka.TCP(brokers...), Topic: topic, Balancer: stream.AccountBalancer{},
		BatchSize: 5000, BatchTimeout: 10 * time.Millisecond,
		RequiredAcks: kafka.RequireAll, AllowAutoTopicCreation: true, Transport: tr,
	}}
}

// write sends lines and returns once the broker has them. A line that is
// not a valid event is sent too, unkeyed: the consumer counts and
// dead-letters it.
func (p *producer) write(ctx context.Context, lines [][]byte) error {
	p.msgs = p.msgs[:0]
	for _, l := range lines {
		var key []byte
		if p.dec.Decode(l, &p.ev) == engine.ReasonOK {
			key = bytes.Clone(p.ev.Account)
		}
		p.msgs = append(p.msgs, kafka.Message{Key: key, Value: bytes.Clone(l)})
	}
	return p.w.WriteMessages(ctx, p.msgs...)
}

// Close flushes what is buffered and closes the connections.
func (p *producer) Close() error {
	err := p.w.Close()
	p.tr.CloseIdleConnections()
	return err
}
