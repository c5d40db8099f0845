// Package prom exports Pulse to Prometheus: the consumer's health through
// the stream.Hooks it implements, alert transitions through the
// engine.Sink it implements, and bounded aggregates of the account states
// (accounts per grade and depth, firing alerts per rule, a score histogram)
// computed at scrape time. No metric has a per-account label.
package prom

import (
	"context"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/pulsehq/pulse/engine"
)

// Metrics holds Pulse's collectors. Its methods are safe for concurrent use.
type Metrics struct {
	reg         *prometheus.Registry
	events      *prometheus.CounterVec
	lag         *prometheus.GaugeVec
	processing  prometheus.Histogram
	eventAge    *prometheus.GaugeVec
	checkpoints *prometheus.CounterVec
	ckptSeconds prometheus.Histogram
	ckptBytes   *prometheus.GaugeVec
	restores    *prometheus.CounterVec
	unusable    prometheus.Counter
	owned       *prometheus.GaugeVec
	sinkErrors  *prometheus.CounterVec
	sinkBatches *prometheus.CounterVec
	sinkSeconds *prometheus.HistogramVec
	sinkRetries prometheus.Counter
	deadLetters prometheus.Counter
	outliers    prometheus.Counter
	transitions *prometheus.CounterVec
	reloads     *prometheus.CounterVec
	notified    *prometheus.CounterVec
	insertRows  *prometheus.HistogramVec
	now         func() time.Time
}

// New registers Pulse's metrics, the Go runtime's and the process's.
func New() *Metrics {
	m := &Metrics{reg: prometheus.NewRegistry(), now: time.Now}
	f := func(c prometheus.Collector) { m.reg.MustRegister(c) }
	m.events = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "pulse_events_total", Help: "Events read, by result (ok, invalid, late, future) and, for invalid, reason."}, []string{"result", "reason"})
	m.lag = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "pulse_kafka_lag", Help: "Messages of a partition not yet applied."}, []string{"topic", "partition"})
	m.processing = prometheus.NewHistogram(prometheus.HistogramOpts{Name: "pulse_processing_seconds", Help: "Time to decode, apply and evaluate one fetched batch.", Buckets: prometheus.ExponentialBuckets(0.0001, 4, 10)})
	m.eventAge = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "pulse_event_age_seconds", Help: "Wall clock minus the event time of the newest event applied, per partition: how far behind real time the engine is."}, []string{"partition"})
	m.checkpoints = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "pulse_checkpoints_total", Help: "Partition checkpoints written, by result."}, []string{"result"})
	m.ckptSeconds = prometheus.NewHistogram(prometheus.HistogramOpts{Name: "pulse_checkpoint_seconds", Help: "Time to encode and durably write one partition checkpoint.", Buckets: prometheus.ExponentialBuckets(0.001, 4, 8)})
	m.ckptBytes = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "pulse_checkpoint_bytes", Help: "Size of the last checkpoint of a partition."}, []string{"partition"})
	m.restores = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "pulse_partition_restores_total", Help: "Partitions taken on, by where their state came from: checkpoint, or start (no usable checkpoint: rebuilt from kafka.start)."}, []string{"from"})
	m.unusable = prometheus.NewCounter(prometheus.CounterOpts{Name: "pulse_checkpoints_unusable_total", Help: "Checkpoints found damaged or refused when a partition was taken on (set aside; an older one or a rebuild was used)."})
	m.owned = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "pulse_partition_owned", Help: "1 while this instance owns the partition."}, []string{"partition"})
	m.sinkErrors = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "pulse_sink_errors_total", Help: "Failed sink writes, by sink (each is retried)."}, []string{"sink"})
	m.sinkBatches = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "pulse_sink_batches_total", Help: "Batches a sink accepted."}, []string{"sink"})
	m.sinkSeconds = prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "pulse_sink_write_seconds", Help: "Time a sink took to accept a batch.", Buckets: prometheus.ExponentialBuckets(0.0005, 4, 9)}, []string{"sink"})
	m.sinkRetries = prometheus.NewCounter(prometheus.CounterOpts{Name: "pulse_sink_retries_total", Help: "Batch writes retried after a sink failed."})
	m.deadLetters = prometheus.NewCounter(prometheus.CounterOpts{Name: "pulse_dead_letters_total", Help: "Rejected events written to the dead-letter topic."})
	m.outliers = prometheus.NewCounter(prometheus.CounterOpts{Name: "pulse_clock_outliers_total", Help: "Events held back for being more than max_skew ahead of their partition's clock (applied once confirmed or reached)."})
	m.transitions = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "pulse_alert_transitions_total", Help: "Alert transitions handed to the sinks, by rule and state."}, []string{"rule", "state"})
	m.notified = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "pulse_notifications_total", Help: "Webhook notifications by notifier and outcome (sent, failed, dropped_queue_full, dropped_notifier_gone, snoozed, duplicate, repeat, suppressed, too_old)."}, []string{"notifier", "outcome"})
	m.insertRows = prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "pulse_clickhouse_insert_rows", Help: "Rows per ClickHouse INSERT, by table: ClickHouse wants them large (tens of thousands and up).", Buckets: prometheus.ExponentialBuckets(10, 4, 9)}, []string{"table"})
	m.reloads = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "pulse_rules_reloads_total", Help: "Rules reloads, by result (ok, error)."}, []string{"result"})
	for _, c := range []prometheus.Collector{m.events, m.lag, m.processing, m.eventAge, m.checkpoints, m.ckptSeconds, m.ckptBytes, m.restores, m.unusable, m.owned, m.sinkErrors, m.sinkBatches, m.sinkSeconds, m.sinkRetries, m.deadLetters, m.outliers, m.transitions, m.reloads, m.notified, m.insertRows,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{})} {
		f(c)
	}
	m.restores.WithLabelValues("checkpoint") // export zeros, as for events
	m.restores.WithLabelValues("start")
	for r := range engine.NumReasons {
		reason := engine.Reason(r)
		m.events.WithLabelValues(reason.Result(), reasonLabel(reason)) // export zeros: rates work from the start
	}
	return m
}

func reasonLabel(r engine.Reason) string {
	if r.Result() == "invalid" {
		return r.String()
	}
	return ""
}

// Handler serves /metrics.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg})
}

// Registry is where extra collectors register.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// ClickHouseInserted records the rows of one ClickHouse INSERT.
func (m *Metrics) ClickHouseInserted(table string, rows int) {
	m.insertRows.WithLabelValues(table).Observe(float64(rows))
}

// Notified counts a webhook notification outcome.
func (m *Metrics) Notified(notifier, outcome string) {
	m.notified.WithLabelValues(notifier, outcome).Inc()
}

// RulesReloaded counts a reload attempt.
func (m *Metrics) RulesReloaded(err error) {
	if err != nil {
		m.reloads.WithLabelValues("error").Inc()
		return
	}
	m.reloads.WithLabelValues("ok").Inc()
}

// The stream.Hooks methods.

func (m *Metrics) Events(_ int32, r engine.Reason, n int) {
	m.events.WithLabelValues(r.Result(), reasonLabel(r)).Add(float64(n))
}

func (m *Metrics) Applied(p int32, events int, took time.Duration, newestNs int64) {
	if events == 0 {
		return
	}
	m.processing.Observe(took.Seconds())
	if newestNs > 0 {
		m.eventAge.WithLabelValues(strconv.Itoa(int(p))).Set(m.now().Sub(time.Unix(0, newestNs)).Seconds())
	}
}

func (m *Metrics) Lag(topic string, p int32, lag int64) {
	m.lag.WithLabelValues(topic, strconv.Itoa(int(p))).Set(float64(lag))
}

func (m *Metrics) Checkpointed(p int32, bytes int, took time.Duration, err error) {
	if err != nil {
		m.checkpoints.WithLabelValues("error").Inc()
		return
	}
	m.checkpoints.WithLabelValues("ok").Inc()
	m.ckptSeconds.Observe(took.Seconds())
	m.ckptBytes.WithLabelValues(strconv.Itoa(int(p))).Set(float64(bytes))
}

func (m *Metrics) Assigned(p int32, _ bool) { m.owned.WithLabelValues(strconv.Itoa(int(p))).Set(1) }

func (m *Metrics) Restored(_ int32, fromCheckpoint bool, _ int64, unusable int) {
	from := "start"
	if fromCheckpoint {
		from = "checkpoint"
	}
	m.restores.WithLabelValues(from).Inc()
	m.unusable.Add(float64(unusable))
}

// Revoked marks the partition not owned and deletes its lag and event age:
// another instance reports them now, and a stale copy here would add up
// with its in sums (and keep a lag alert firing after a handover).
func (m *Metrics) Revoked(p int32) {
	partition := strconv.Itoa(int(p))
	m.owned.WithLabelValues(partition).Set(0)
	m.lag.DeletePartialMatch(prometheus.Labels{"partition": partition})
	m.eventAge.DeleteLabelValues(partition)
}

func (m *Metrics) SinkFailed(error) { m.sinkRetries.Inc() }

// SinkRetried counts a failed attempt a sink retries on its own, after
// it accepted the batch (the ClickHouse sink's INSERTs): an error of that
// sink and a retry.
func (m *Metrics) SinkRetried(sink string) {
	m.sinkErrors.WithLabelValues(sink).Inc()
	m.sinkRetries.Inc()
}

// Wrap counts a sink's accepted batches, failures and write time under its
// name.
func (m *Metrics) Wrap(name string, s engine.Sink) engine.Sink {
	m.sinkErrors.WithLabelValues(name)
	m.sinkBatches.WithLabelValues(name)
	return &named{m: m, name: name, Sink: s}
}

type named struct {
	engine.Sink
	m    *Metrics
	name string
}

func (n *named) Write(ctx context.Context, b *engine.Batch) error {
	began := time.Now()
	err := n.Sink.Write(ctx, b)
	if err != nil {
		n.m.sinkErrors.WithLabelValues(n.name).Inc()
		return err
	}
	n.m.sinkBatches.WithLabelValues(n.name).Inc()
	n.m.sinkSeconds.WithLabelValues(n.name).Observe(time.Since(began).Seconds())
	return nil
}

// Flush passes a flush on to a sink that buffers.
func (n *named) Flush(ctx context.Context) error { return engine.Flush(ctx, n.Sink) }

func (m *Metrics) DeadLettered(n int) { m.deadLetters.Add(float64(n)) }

func (m *Metrics) ClockOutliers(_ int32, n int) { m.outliers.Add(float64(n)) }

// Sink counts the transitions it is given; put it last in engine.Sinks so
// only accepted batches count.
func (m *Metrics) Sink() engine.Sink { return transitionCounter{m} }

type transitionCounter struct{ m *Metrics }

func (t transitionCounter) Write(_ context.Context, b *engine.Batch) error {
	for i := range b.Transitions {
		tr := &b.Transitions[i]
		t.m.transitions.WithLabelValues(tr.Rule, tr.State.String()).Inc()
	}
	return nil
}

func (transitionCounter) Close(context.Context) error { return nil }
