package prom

import (
	"cmp"
	"context"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/pulsehq/pulse/config"
	"github.com/pulsehq/pulse/engine"
	"github.com/pulsehq/pulse/rules"
)

var (
	accountsDesc = prometheus.NewDesc("pulse_accounts", "Accounts by health grade.", []string{"grade"}, nil)
	depthDesc    = prometheus.NewDesc("pulse_accounts_by_depth", "Accounts by usage depth.", []string{"depth"}, nil)
	firingDesc   = prometheus.NewDesc("pulse_alerts_firing", "Firing alerts by rule, severity and kind.", []string{"rule", "severity", "kind"}, nil)
	scoreDesc    = prometheus.NewDesc("pulse_score", "Health scores of the accounts that have one.", nil, nil)
	scrapeDesc   = prometheus.NewDesc("pulse_aggregate_seconds", "Time the last refresh of the account aggregates took.", nil, nil)
	splitDesc    = prometheus.NewDesc("pulse_accounts_split", "Accounts held by more than one partition: their events were produced to several partitions (key every event by account_id, with one partitioner). Each is counted once in the other aggregates.", nil, nil)
	scoreBuckets = []float64{10, 20, 30, 40, 50, 60, 70, 80, 90, 100}
)

// Config is the exporter's settings.
type Config struct {
	// AggregateInterval is how often the account aggregates are
	// recomputed (the config file's output.metrics_interval).
	AggregateInterval time.Duration
}

// DefaultConfig returns the defaults.
func DefaultConfig() Config { return Config{AggregateInterval: 5 * time.Second} }

// Validate reports every setting out of range, each a *config.Error
// keyed as the setting's name in the output section, joined.
func (c Config) Validate() error {
	if c.AggregateInterval <= 0 {
		return config.Errorf("metrics_interval", "%s must be positive", rules.FormatDuration(c.AggregateInterval))
	}
	return nil
}

func (a *Aggregates) interval() time.Duration {
	return cmp.Or(a.Interval, DefaultConfig().AggregateInterval)
}

// snapshotWait bounds how long a refresh waits for fresh snapshots.
const snapshotWait = time.Second

// Aggregates exports the account aggregates. They are computed in the
// background every Interval from the snapshots the partitions publish
// (engine.View), as the HTTP API reads them: no partition is entered, a
// partition held back by a sink counts with its last snapshot, and an
// account held by several partitions counts once. A scrape serves the
// last result at once: it never waits for busy partitions.
type Aggregates struct {
	View     engine.View
	Interval time.Duration // zero: DefaultConfig's

	mu   sync.Mutex
	last []prometheus.Metric
}

// Run refreshes the snapshot until ctx ends.
func (a *Aggregates) Run(ctx context.Context) {
	t := time.NewTicker(a.interval())
	defer t.Stop()
	for {
		a.refresh(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Describe implements prometheus.Collector.
func (a *Aggregates) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{accountsDesc, depthDesc, firingDesc, scoreDesc, scrapeDesc, splitDesc} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (a *Aggregates) Collect(ch chan<- prometheus.Metric) {
	a.mu.Lock()
	last := a.last
	a.mu.Unlock()
	for _, m := range last {
		ch <- m
	}
}

func (a *Aggregates) refresh(ctx context.Context) {
	began := time.Now()
	var grades [4]float64
	var depths [5]float64
	firing := map[string]float64{}
	buckets := make([]uint64, len(scoreBuckets))
	var count uint64
	var sum float64
	var split float64
	add := func(s *engine.AccountState) {
		grades[s.Grade]++
		depths[s.Depth]++
		for _, name := range s.Alerts {
			firing[name]++
		}
		for _, name := range s.Suppressed { // firing, though silenced
			firing[name]++
		}
		if !rules.IsNull(s.Score) {
			count++
			sum += s.Score
			for i, b := range scoreBuckets {
				if s.Score <= b {
					buckets[i]++
				}
			}
		}
	}
	wait, cancel := context.WithTimeout(ctx, snapshotWait)
	merged := engine.Merge(a.View.Snapshots(wait, a.interval()))
	cancel()
	for i := range merged {
		add(&merged[i].State)
		if merged[i].Split != nil {
			split++
		}
	}
	var out []prometheus.Metric
	for g, n := range grades {
		out = append(out, prometheus.MustNewConstMetric(accountsDesc, prometheus.GaugeValue, n, rules.Grade(g).String()))
	}
	for d, n := range depths {
		out = append(out, prometheus.MustNewConstMetric(depthDesc, prometheus.GaugeValue, n, rules.Depth(d).String()))
	}
	// Every rule is exported, firing or not, so its series never vanish.
	for _, al := range a.View.Rules().Alerts {
		out = append(out, prometheus.MustNewConstMetric(firingDesc, prometheus.GaugeValue, firing[al.Name], al.Name, al.Severity.String(), al.Kind.String()))
	}
	cum := map[float64]uint64{}
	for i, b := range scoreBuckets {
		cum[b] = buckets[i]
	}
	out = append(out, prometheus.MustNewConstHistogram(scoreDesc, count, sum, cum))
	out = append(out, prometheus.MustNewConstMetric(splitDesc, prometheus.GaugeValue, split))
	out = append(out, prometheus.MustNewConstMetric(scrapeDesc, prometheus.GaugeValue, time.Since(began).Seconds()))
	a.mu.Lock()
	a.last = out
	a.mu.Unlock()
}
