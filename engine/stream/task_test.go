package stream

import (
	"context"
	"slices"
	"testing"

	"github.com/pulsehq/pulse/engine"
)

// gatedSink holds its first Write until released.
type gatedSink struct {
	entered chan struct{}
	release chan struct{}
}

func (g *gatedSink) Write(context.Context, *engine.Batch) error {
	select {
	case g.entered <- struct{}{}:
		<-g.release
	default:
	}
	return nil
}

func (g *gatedSink) Close(context.Context) error { return nil }

// A task stopped while a sink holds back a flush in the middle of a chunk
// keeps the offset after the last event it applied: its final checkpoint
// holds those events, and the next owner must not apply them again.
func TestStopInsideAChunkKeepsTheOffsetOfWhatWasApplied(t *testing.T) {
	rs := exampleRules(t)
	lines := generate(40, 35)
	sink := &gatedSink{entered: make(chan struct{}), release: make(chan struct{})}
	defer close(sink.release)
	cfg := Config{Topic: topic, CheckpointDir: t.TempDir(), Engine: engine.Config{ScoreRows: true}, Log: testLog()}
	c := New(cfg, rs, sink)
	tk := &task{c: c, part: engine.NewPartition(0, rs, c.cfg.Engine), writeCtx: context.Background()}

	// Every account in one partition: the chunk emits score rows for
	// several flushes.
	ch := &chunk{next: int64(len(lines))}
	for i, l := range lines {
		ch.values = append(ch.values, l)
		ch.offsets = append(ch.offsets, int64(i))
	}
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		<-sink.entered // the first flush is being written, and stays so
		cancel()       // the next flush waits for it until ctx ends
	}()
	if err := tk.apply(ctx, ch); err == nil {
		t.Fatal("apply returned nil while its flush was held back past ctx")
	}
	if tk.next <= 0 || tk.next >= int64(len(lines)) {
		t.Fatalf("next offset %d after a stop inside a chunk of %d events", tk.next, len(lines))
	}

	want := engine.NewPartition(0, rs, c.cfg.Engine)
	var d engine.Decoder
	var ev engine.Event
	for _, l := range lines[:tk.next] {
		if d.Decode(l, &ev) == engine.ReasonOK {
			want.Apply(&ev, 0)
		}
	}
	if got, want := stateLines(tk.part), stateLines(want); !slices.Equal(got, want) {
		t.Fatalf("the state holds other events than the %d before its next offset", tk.next)
	}
}

// stateLines returns the partition's account states as JSON lines, sorted.
func stateLines(p *engine.Partition) []string {
	var out []string
	p.States(func(s *engine.AccountState) { out = append(out, string(s.AppendJSON(nil))) })
	slices.Sort(out)
	return out
}
