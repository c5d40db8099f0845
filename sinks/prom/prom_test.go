package prom

import (
	"context"
	"errors"
	"io"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/pulsehq/pulse/engine"
	"github.com/pulsehq/pulse/rules"
)

// partitions is an engine.View of partitions the test no longer changes:
// each call snapshots them afresh.
type partitions struct {
	parts []*engine.Partition
	rs    *rules.Ruleset
}

func (p *partitions) Snapshots(context.Context, time.Duration) []*engine.Snapshot {
	var out []*engine.Snapshot
	for _, part := range p.parts {
		out = append(out, part.Snapshot(time.Now().UnixNano()))
	}
	return out
}
func (p *partitions) Rules() *rules.Ruleset { return p.rs }
func (p *partitions) Ready() bool           { return true }

func scrape(t *testing.T, m *Metrics) string {
	srv := httptest.NewServer(m.Handler())
	defer srv.Close()
	resp, err := srv.Client().Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// populated returns metrics fed by every hook, a sink and the aggregates
// of a real partition.
func populated(t *testing.T) (*Metrics, *engine.Partition) {
	data, _ := os.ReadFile("testdata/rules.yaml") // a fixed model: these tests count what it grades
	rs, err := rules.Load("example.yaml", data, rules.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	p := engine.NewPartition(0, rs, engine.Config{})
	var d engine.Decoder
	var ev engine.Event
	for _, l := range []string{
		`{"ts":"2026-11-01T09:00:00Z","account_id":"acct-secret-name","type":"login","user_id":"a"}`,
		`{"ts":"2026-11-19T09:00:00Z","account_id":"other","type":"login","user_id":"a"}`,
	} {
		d.Decode([]byte(l), &ev)
		p.Apply(&ev, 0)
	}
	// The second event is 18 days ahead: the clock gets there at the end of
	// the stream, as a replay's would (one event alone does not move it).
	p.AdvanceTo(time.Date(2026, 11, 19, 9, 0, 0, 0, time.UTC).UnixNano())
	m := New()
	failing := m.Wrap("clickhouse", failingSink{})
	failing.Write(context.Background(), &engine.Batch{})
	agg := &Aggregates{View: &partitions{parts: []*engine.Partition{p}, rs: rs}, Interval: time.Hour}
	m.Registry().MustRegister(agg)
	agg.refresh(context.Background())

	m.Events(0, engine.ReasonOK, 5)
	m.Events(0, engine.ReasonUser, 2)
	m.Events(0, engine.ReasonLate, 1)
	m.Lag("events", 3, 42)
	m.Applied(3, 10, time.Millisecond, time.Now().Add(-2*time.Second).UnixNano())
	m.Checkpointed(3, 1234, time.Millisecond, nil)
	m.Checkpointed(3, 0, 0, errors.New("disk full"))
	m.SinkFailed(errors.New("down"))
	m.DeadLettered(3)
	m.ClockOutliers(3, 2)
	m.RulesReloaded(nil)
	m.Sink().Write(context.Background(), &engine.Batch{Transitions: p.TakeTransitions()})
	return m, p
}

func TestMetricsFromHooksSinkAndAggregates(t *testing.T) {
	m, _ := populated(t)
	out := scrape(t, m)
	for _, want := range []string{
		`pulse_events_total{reason="",result="ok"} 5`,
		`pulse_events_total{reason="bad_user_id",result="invalid"} 2`,
		`pulse_events_total{reason="",result="late"} 1`,
		`pulse_events_total{reason="bad_json",result="invalid"} 0`,
		`pulse_kafka_lag{partition="3",topic="events"} 42`,
		`pulse_checkpoints_total{result="error"} 1`,
		`pulse_checkpoint_bytes{partition="3"} 1234`,
		`pulse_sink_errors_total{sink="clickhouse"} 1`,
		`pulse_sink_retries_total 1`,
		`pulse_dead_letters_total 3`,
		`pulse_clock_outliers_total 2`,
		`pulse_rules_reloads_total{result="ok"} 1`,
		`pulse_accounts{grade="red"} 1`,
		`pulse_alerts_firing{kind="risk",rule="gone_dark",severity="high"} 1`,
		`pulse_alerts_firing{kind="opportunity",rule="expansion",severity="medium"} 0`,
		`pulse_alert_transitions_total{rule="gone_dark",state="firing"} 1`,
		`pulse_score_count 2`,
		`pulse_accounts_by_depth{depth="record"} 2`,
	} {
		if !strings.Contains(out, want+"\n") {
			t.Errorf("missing %s", want)
		}
	}
	if strings.Contains(out, "acct-secret-name") {
		t.Error("an account id leaked into a label")
	}
}

type failingSink struct{}

func (failingSink) Write(context.Context, *engine.Batch) error { return errors.New("down") }
func (failingSink) Close(context.Context) error                { return nil }

// A revoked partition's lag and event age are deleted, not left at their
// last value: the new owner reports them, and sums over instances would
// count the stale copy too.
func TestRevokedPartitionsLeaveNoLag(t *testing.T) {
	m := New()
	m.Assigned(3, false)
	m.Assigned(4, false)
	m.Lag("events", 3, 42)
	m.Lag("events", 4, 7)
	m.Applied(3, 10, time.Millisecond, time.Now().Add(-2*time.Second).UnixNano())
	m.Revoked(3)
	out := scrape(t, m)
	for _, gone := range []string{`pulse_kafka_lag{partition="3"`, `pulse_event_age_seconds{partition="3"}`} {
		if strings.Contains(out, gone) {
			t.Errorf("%s… is still exported after the partition was revoked", gone)
		}
	}
	for _, kept := range []string{`pulse_kafka_lag{partition="4",topic="events"} 7`, `pulse_partition_owned{partition="3"} 0`} {
		if !strings.Contains(out, kept+"\n") {
			t.Errorf("missing %s", kept)
		}
	}
}

// Failed attempts a sink retries on its own (ClickHouse INSERTs, after
// Write accepted the rows) count as that sink's errors and as retries.
func TestSinkRetriedCountsErrorsAndRetries(t *testing.T) {
	m := New()
	m.Wrap("clickhouse", failingSink{})
	m.SinkRetried("clickhouse")
	m.SinkRetried("clickhouse")
	out := scrape(t, m)
	for _, want := range []string{`pulse_sink_errors_total{sink="clickhouse"} 2`, `pulse_sink_retries_total 2`} {
		if !strings.Contains(out, want+"\n") {
			t.Errorf("missing %s", want)
		}
	}
}
