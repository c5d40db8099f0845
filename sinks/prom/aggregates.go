package prom

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/pulsehq/pulse/engine"
	"github.com/pulsehq/pulse/rules"
)

var (
	accountsDesc   = prometheus.NewDesc("pulse_accounts", "Accounts by health grade.", []string{"grade"}, nil)
	depthDesc      = prometheus.NewDesc("pulse_accounts_by_depth", "Accounts by usage depth.", []string{"depth"}, nil)
	firingDesc     = prometheus.NewDesc("pulse_alerts_firing", "Firing alerts by rule, severity and kind.", []string{"rule", "severity", "kind"}, nil)
	scoreDesc      = prometheus.NewDesc("pulse_score", "Health scores of the accounts that have one.", nil, nil)
	scrapeDesc     = prometheus.NewDesc("pulse_aggregate_scrape_seconds", "Time to gather the account aggregates for this scrape.", nil, nil)
	scoreBuckets   = []float64{10, 20, 30, 40, 50, 60, 70, 80, 90, 100}
	aggregateLimit = 10 * time.Second
)

// Aggregates computes the account aggregates at scrape time by visiting
// every owned partition (in its own goroutine, so the hot path takes no
// lock). Cost: one state per account per scrape.
type Aggregates struct{ Source Source }

// Describe implements prometheus.Collector.
func (a Aggregates) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{accountsDesc, depthDesc, firingDesc, scoreDesc, scrapeDesc} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (a Aggregates) Collect(ch chan<- prometheus.Metric) {
	began := time.Now()
	var grades [4]float64
	var depths [5]float64
	firing := map[string]float64{}
	var buckets = make([]uint64, len(scoreBuckets))
	var count uint64
	var sum float64
	ctx, cancel := context.WithTimeout(context.Background(), aggregateLimit)
	defer cancel()
	a.Source.Do(ctx, func(p *engine.Partition) {
		p.States(func(s *engine.AccountState) {
			grades[s.Grade]++
			depths[s.Depth]++
			for _, name := range s.Alerts {
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
		})
	})
	for g, n := range grades {
		ch <- prometheus.MustNewConstMetric(accountsDesc, prometheus.GaugeValue, n, rules.Grade(g).String())
	}
	for d, n := range depths {
		ch <- prometheus.MustNewConstMetric(depthDesc, prometheus.GaugeValue, n, rules.Depth(d).String())
	}
	// Every rule is exported, firing or not, so the series never vanish.
	for _, al := range a.Source.Rules().Alerts {
		ch <- prometheus.MustNewConstMetric(firingDesc, prometheus.GaugeValue, firing[al.Name], al.Name, al.Severity.String(), al.Kind.String())
	}
	cum := map[float64]uint64{}
	for i, b := range scoreBuckets {
		cum[b] = buckets[i]
	}
	ch <- prometheus.MustNewConstHistogram(scoreDesc, count, sum, cum)
	ch <- prometheus.MustNewConstMetric(scrapeDesc, prometheus.GaugeValue, time.Since(began).Seconds())
}
