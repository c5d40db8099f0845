package grafana

import (
	"github.com/grafana/grafana-foundation-sdk/go/common"
	"github.com/grafana/grafana-foundation-sdk/go/dashboard"
	"github.com/grafana/grafana-foundation-sdk/go/stat"
	"github.com/grafana/grafana-foundation-sdk/go/timeseries"
)

// operations is the dashboard of the engine itself, for whoever runs
// Pulse: is it keeping up, are its outputs stored, is anything dropped.
// Every panel reads sinks/prom's metrics (README "Metrics").
func operations() *dashboard.DashboardBuilder {
	return dashboard.NewDashboardBuilder("Pulse operations").
		Uid("pulse-operations").
		Description("The engine's health: events consumed and rejected, Kafka lag and event age per partition, processing time, checkpoints, sink errors and retries, webhook notifications and dead letters. From Prometheus scraping pulse /metrics.").
		Tags([]string{"pulse"}).
		Refresh("30s").
		Time("now-1h", "now").
		Timezone(common.TimeZoneBrowser).
		Tooltip(dashboard.DashboardCursorSyncCrosshair).
		Link(dashboardLink("Customer health portfolio", "pulse-portfolio")).
		WithRow(dashboard.NewRowBuilder("Now")).
		WithPanel(opsStat("Events applied /s", "Events applied per second (result ok), over the last rate window.",
			`sum(rate(pulse_events_total{result="ok"}[$__rate_interval]))`, "ops").
			Thresholds(thresholds("green"))).
		WithPanel(opsStat("Events rejected", "Share of the events read that were rejected (invalid, late or future).",
			`sum(rate(pulse_events_total{result!="ok"}[$__rate_interval])) / clamp_min(sum(rate(pulse_events_total[$__rate_interval])), 1e-9)`, "percentunit").
			Thresholds(thresholds("green", at(0.001, "yellow"), at(0.01, "red")))).
		WithPanel(opsStat("Kafka lag", "Messages waiting in the partitions this Pulse group owns.",
			`sum(pulse_kafka_lag)`, "short").
			Thresholds(thresholds("green", at(10000, "yellow"), at(100000, "red")))).
		WithPanel(opsStat("Event age (worst partition)", "How far behind real time the engine is: wall clock minus the newest applied event's time, on the partition furthest behind. High while history is replayed; a live stream stays at seconds.",
			`max(pulse_event_age_seconds)`, "s").
			Thresholds(thresholds("green", at(300, "yellow"), at(3600, "red")))).
		WithPanel(opsStat("Partitions owned", "Partitions assigned to the instances scraped.",
			`sum(pulse_partition_owned)`, "short").
			Thresholds(thresholds("blue"))).
		WithPanel(opsStat("Sink errors /s", "Failed sink writes and failed ClickHouse INSERTs, all sinks (each is retried).",
			`sum(rate(pulse_sink_errors_total[$__rate_interval]))`, "ops").
			Thresholds(thresholds("green", at(0.000001, "red")))).
		WithRow(dashboard.NewRowBuilder("Consumption")).
		WithPanel(opsSeries("Events /s by result", "Events read per second by result: ok (applied), invalid (malformed; see the reasons), late (older than the retention) and future (ahead of the wall clock).", "ops").
			WithTarget(prom("A", `sum by (result) (rate(pulse_events_total[$__rate_interval]))`, "{{result}}")).
			OverrideByName("ok", fixedColor("green")).
			OverrideByName("invalid", fixedColor("red")).
			OverrideByName("late", fixedColor("orange")).
			OverrideByName("future", fixedColor("purple"))).
		WithPanel(opsSeries("Rejected events /s by reason", "Invalid events per second by reason (README \"Engine semantics\" lists them). Rejected events go to the dead-letter topic when one is set.", "ops").
			WithTarget(prom("A", `sum by (reason) (rate(pulse_events_total{result="invalid"}[$__rate_interval]))`, "{{reason}}"))).
		WithPanel(opsSeries("Kafka lag per partition", "Messages not yet applied, per partition, from the brokers' high watermarks. A lag that keeps growing needs instances (up to one per partition) or a look at the sinks.", "short").
			WithTarget(prom("A", `sum by (topic, partition) (pulse_kafka_lag)`, "{{topic}}/{{partition}}"))).
		WithPanel(opsSeries("Event age per partition", "Wall clock minus the event time of the newest event applied, per partition.", "s").
			WithTarget(prom("A", `max by (partition) (pulse_event_age_seconds)`, "partition {{partition}}"))).
		WithPanel(opsSeries("Processing time per fetched batch", "Time to decode, apply and evaluate one fetched batch: median and 99th percentile.", "s").
			WithTarget(prom("A", `histogram_quantile(0.5, sum by (le) (rate(pulse_processing_seconds_bucket[$__rate_interval])))`, "p50")).
			WithTarget(prom("B", `histogram_quantile(0.99, sum by (le) (rate(pulse_processing_seconds_bucket[$__rate_interval])))`, "p99"))).
		WithPanel(opsSeries("Clock outliers /s", "Events held back for being more than max_skew ahead of their partition's clock (a clock-skewed producer, a live event in a backfill).", "ops").
			WithTarget(prom("A", `sum(rate(pulse_clock_outliers_total[$__rate_interval]))`, "held back"))).
		WithRow(dashboard.NewRowBuilder("Checkpoints")).
		WithPanel(opsSeries("Checkpoints /s by result", "Partition checkpoints written per second. Errors mean offsets are not committed: check the checkpoint store: the disk of checkpoint.dir, or the brokers of checkpoint.topic.", "ops").
			WithTarget(prom("A", `sum by (result) (rate(pulse_checkpoints_total[$__rate_interval]))`, "{{result}}")).
			OverrideByName("ok", fixedColor("green")).
			OverrideByName("error", fixedColor("red"))).
		WithPanel(opsSeries("Checkpoint write time", "Time to encode and durably write one partition checkpoint (99th percentile).", "s").
			WithTarget(prom("A", `histogram_quantile(0.99, sum by (le) (rate(pulse_checkpoint_seconds_bucket[$__rate_interval])))`, "p99"))).
		WithPanel(opsSeries("Checkpoint size", "Size of the last checkpoint, all partitions together: the state Pulse holds.", "bytes").
			WithTarget(prom("A", `sum(pulse_checkpoint_bytes)`, "all partitions"))).
		WithRow(dashboard.NewRowBuilder("Outputs")).
		WithPanel(opsSeries("Sink errors and retries /s", "Failed writes per sink (ClickHouse counts each failed INSERT) and batch writes retried. Partitions wait for a failing sink, so nothing is lost, but outputs stall.", "ops").
			WithTarget(prom("A", `sum by (sink) (rate(pulse_sink_errors_total[$__rate_interval]))`, "errors {{sink}}")).
			WithTarget(prom("B", `sum(rate(pulse_sink_retries_total[$__rate_interval]))`, "retries"))).
		WithPanel(opsSeries("Sink batches /s", "Batches each sink accepted per second.", "ops").
			WithTarget(prom("A", `sum by (sink) (rate(pulse_sink_batches_total[$__rate_interval]))`, "{{sink}}"))).
		WithPanel(opsSeries("Sink write time", "Time a sink took to accept a batch (99th percentile).", "s").
			WithTarget(prom("A", `histogram_quantile(0.99, sum by (le, sink) (rate(pulse_sink_write_seconds_bucket[$__rate_interval])))`, "{{sink}}"))).
		WithPanel(opsSeries("Notifications /s by outcome", "Webhook notifications per notifier and outcome: sent, failed, dropped (queue full, notifier gone), and the ones not sent on purpose (snoozed, duplicate, suppressed, too_old: history older than webhooks.max_age).", "ops").
			WithTarget(prom("A", `sum by (notifier, outcome) (rate(pulse_notifications_total[$__rate_interval]))`, "{{notifier}} {{outcome}}"))).
		WithPanel(opsSeries("Dead letters /s", "Rejected events written to the dead-letter topic.", "ops").
			WithTarget(prom("A", `sum(rate(pulse_dead_letters_total[$__rate_interval]))`, "dead letters"))).
		WithPanel(opsSeries("Alert transitions /s", "Alert transitions handed to the sinks, by state.", "ops").
			WithTarget(prom("A", `sum by (state) (rate(pulse_alert_transitions_total[$__rate_interval]))`, "{{state}}")))
}

func opsStat(title, description, expr, unit string) *stat.PanelBuilder {
	return statPanel(title, description, promDS()).
		Height(4).Span(4).
		Unit(unit).
		ColorMode(common.BigValueColorModeBackground).
		GraphMode(common.BigValueGraphModeArea).
		ReduceOptions(common.NewReduceDataOptionsBuilder().Calcs([]string{"lastNotNull"})).
		WithTarget(prom("A", expr, ""))
}

func opsSeries(title, description, unit string) *timeseries.PanelBuilder {
	return timeseries.NewPanelBuilder().
		Title(title).
		Description(description).
		Datasource(promDS()).
		Height(8).Span(12).
		Unit(unit).
		Min(0).
		FillOpacity(10).
		Legend(common.NewVizLegendOptionsBuilder().DisplayMode(common.LegendDisplayModeList).Placement(common.LegendPlacementBottom).ShowLegend(true)).
		Tooltip(common.NewVizTooltipOptionsBuilder().Mode(common.TooltipDisplayModeMulti).Sort(common.SortOrderDescending))
}

func dashboardLink(title, uid string) *dashboard.DashboardLinkBuilder {
	return dashboard.NewDashboardLinkBuilder(title).
		Type(dashboard.DashboardLinkTypeLink).
		Url("/d/" + uid).
		KeepTime(true)
}
