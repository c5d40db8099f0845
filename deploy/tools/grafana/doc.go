// Package grafana builds Pulse's Grafana dashboards as code, with the
// Grafana Foundation SDK: Pulse operations (the engine's health, from
// Prometheus), the customer-health portfolio (Prometheus and ClickHouse)
// and the account drill-down (ClickHouse, with an $account variable).
//
// Files renders each dashboard to the JSON that Grafana provisions from
// deploy/grafana/dashboards/; `go run ./grafana/gen` (from deploy/tools)
// writes them there, and this package's test fails when the committed
// files differ from what the code builds, so nobody edits them by hand.
//
// The panels read only what Pulse writes: the metrics of sinks/prom
// (pulse_*) and the ClickHouse tables of sinks/clickhouse (scores,
// alerts, daily). The SQL works on ClickHouse 18.16 as well as current
// releases: buckets of $__interval_s are cut with intDiv, because the
// plugin's $__timeInterval expands to toStartOfInterval, which 18.16
// lacks. The main module's cmd/pulse test TestDashboardQueries runs every
// query of these files against a real Prometheus scraping `pulse run` and
// a real ClickHouse that Pulse filled.
package grafana
