package grafana

import (
	"github.com/grafana/grafana-foundation-sdk/go/common"
	"github.com/grafana/grafana-foundation-sdk/go/dashboard"
	"github.com/grafana/grafana-foundation-sdk/go/statetimeline"
	"github.com/grafana/grafana-foundation-sdk/go/table"
	"github.com/grafana/grafana-foundation-sdk/go/timeseries"
)

// account is the drill-down of one account, picked with $account: its
// score, grade and metrics over time, and its alerts, from ClickHouse's
// score history and alert transitions.
func account() *dashboard.DashboardBuilder {
	return dashboard.NewDashboardBuilder("Account drill-down").
		Uid("pulse-account").
		Description("One account over time: score and grade, the metrics behind them, and its alert transitions, from ClickHouse. The account list puts the riskiest (lowest score) first.").
		Tags([]string{"pulse"}).
		Refresh("5m").
		Time("now-30d", "now").
		Timezone(common.TimeZoneBrowser).
		Tooltip(dashboard.DashboardCursorSyncCrosshair).
		Link(dashboardLink("Customer health portfolio", "pulse-portfolio")).
		WithVariable(dashboard.NewQueryVariableBuilder("account").
			Label("Account").
			Description("Accounts scored in the time range, lowest latest score first.").
			Datasource(chDS()).
			Query(dashboard.StringOrMap{String: ptr(accountsRiskiestFirst)}).
			Definition(accountsRiskiestFirst).
			Refresh(dashboard.VariableRefreshOnTimeRangeChanged).
			Sort(dashboard.VariableSortDisabled)).
		WithRow(dashboard.NewRowBuilder("Now")).
		WithPanel(statPanel("Score", "The latest score in the time range, and its course.", chDS()).
			Height(5).Span(6).
			Min(0).Max(100).
			Decimals(1).
			Thresholds(thresholds("red", at(40, "yellow"), at(70, "green"))).
			ColorMode(common.BigValueColorModeBackground).
			GraphMode(common.BigValueGraphModeArea).
			ReduceOptions(common.NewReduceDataOptionsBuilder().Calcs([]string{"lastNotNull"})).
			WithTarget(chSeries("A", history("score")))).
		WithPanel(statPanel("Account", "Grade, usage depth, scorecard, owner, segment and stage, as of the latest score row in the time range.", chDS()).
			Height(5).Span(12).
			ColorMode(common.BigValueColorModeValue).
			GraphMode(common.BigValueGraphModeNone).
			TextMode(common.BigValueTextModeValueAndName).
			ReduceOptions(common.NewReduceDataOptionsBuilder().Values(true).Fields("/.*/")).
			Thresholds(thresholds("text")).
			Mappings(gradeColors()).
			WithTarget(chTable("A", latestAttributes))).
		WithPanel(statPanel("Renewal and ARR", "Days to the renewal date and the annual recurring revenue, as of the latest score row in the time range.", chDS()).
			Height(5).Span(6).
			ColorMode(common.BigValueColorModeNone).
			GraphMode(common.BigValueGraphModeNone).
			TextMode(common.BigValueTextModeValueAndName).
			ReduceOptions(common.NewReduceDataOptionsBuilder().Values(true).Fields("/.*/")).
			Unit("short").
			OverrideByName("days_to_renewal", []dashboard.DynamicConfigValue{{Id: "unit", Value: "d"}, {Id: "decimals", Value: 0}}).
			WithTarget(chTable("A", `SELECT days_to_renewal, arr
FROM scores FINAL
WHERE account_id = ${account:sqlstring} AND $__timeFilter(ts)
ORDER BY ts_ns DESC
LIMIT 1`))).
		WithRow(dashboard.NewRowBuilder("Score and grade")).
		WithPanel(accountSeries("Score", "The account's score (0–100) at each score row: when it moves by a point or more, its grade or depth changes, and at least hourly. The bands are the default scorecard's grade lines (yellow from 40, green from 70).", "none").
			Min(0).Max(100).
			Thresholds(thresholds("red", at(40, "yellow"), at(70, "green"))).
			ThresholdsStyle(common.NewGraphThresholdsStyleConfigBuilder().Mode(common.GraphThresholdsStyleModeArea)).
			ColorScheme(dashboard.NewFieldColorBuilder().Mode(dashboard.FieldColorModeIdFixed).FixedColor("text")).
			WithTarget(chSeries("A", history("score")))).
		WithPanel(statetimeline.NewPanelBuilder().
			Title("Grade").
			Description("The account's grade over time; none while it warms up.").
			Datasource(chDS()).
			Height(4).Span(24).
			ShowValue(common.VisibilityModeAuto).
			MergeValues(true).
			Mappings(gradeColors()).
			Legend(common.NewVizLegendOptionsBuilder().ShowLegend(false).DisplayMode(common.LegendDisplayModeList).Placement(common.LegendPlacementBottom)).
			// A table: as a time series, the plugin would take the grade
			// (a string) for a label.
			WithTarget(chTable("A", history("toString(grade) AS grade")))).
		WithRow(dashboard.NewRowBuilder("Metrics")).
		WithPanel(accountSeries("Users and seats", "Distinct active users in 1, 7 and 30 days, and the seats bought.", "short").
			WithTarget(chSeries("A", history("dau, wau, mau, seats")))).
		WithPanel(accountSeries("Activation, engagement and momentum", "Activated users per seat, the share of activated users active on a typical day of the week, and usage this week against the week before.", "percentunit").
			WithTarget(chSeries("A", history("activation_rate, login_ratio_7d, usage_change_7d")))).
		WithPanel(accountSeries("Usage", "User-activity events and API calls in the last 7 days.", "short").
			WithTarget(chSeries("A", history("events_7d, api_calls_7d")))).
		WithPanel(accountSeries("Support, sentiment and recency", "Open tickets, NPS over 90 days (−100…100), days since the last user activity, and days to the renewal date.", "short").
			WithTarget(chSeries("A", history("open_tickets, nps_90d, days_since_active, days_to_renewal")))).
		WithRow(dashboard.NewRowBuilder("Alerts")).
		WithPanel(statetimeline.NewPanelBuilder().
			Title("Alert timeline").
			Description("Each alert rule's episodes: firing from its firing transition to its resolved one (transitions before the time range count, so an alert that fires since earlier shows from the start).").
			Datasource(chDS()).
			Height(8).Span(24).
			ShowValue(common.VisibilityModeNever).
			MergeValues(true).
			Mappings([]dashboard.ValueMapping{{ValueMap: &dashboard.ValueMap{Type: dashboard.MappingTypeValueToText, Options: map[string]dashboard.ValueMappingResult{
				"1": {Text: ptr("firing"), Color: ptr("red")},
				"0": {Text: ptr("resolved"), Color: ptr("transparent")},
			}}}}).
			WithTarget(chSeries("A", `SELECT ts AS time, rule, if(state = 'firing', 1, 0) AS firing
FROM alerts FINAL
WHERE account_id = ${account:sqlstring} AND ts <= $__toTime
ORDER BY ts, rule`))).
		WithPanel(table.NewPanelBuilder().
			Title("Alert transitions").
			Description("The account's alert transitions in the time range, newest first, with the score and grade then and the message. Silenced: suppressed by an inhibiting alert, stored but not notified.").
			Datasource(chDS()).
			Height(10).Span(24).
			OverrideByName("grade", gradeCells()).
			WithTarget(chTable("A", alertTransitions)))
}

// accountsRiskiestFirst lists the accounts scored in the time range,
// lowest latest score first (unscored ones last), like the status page.
const accountsRiskiestFirst = `SELECT account_id
FROM scores FINAL
WHERE $__timeFilter(ts)
GROUP BY account_id
ORDER BY argMax(ifNull(score, 1000), ts_ns), account_id`

// history is the account's score rows in the time range: time and
// columns. The value of $account goes in with Grafana's sqlstring format,
// quoted and its quotes doubled, so an account id cannot end the string.
func history(columns string) string {
	return `SELECT ts AS time, ` + columns + `
FROM scores FINAL
WHERE account_id = ${account:sqlstring} AND $__timeFilter(ts)
ORDER BY ts`
}

const latestAttributes = `SELECT
    toString(grade) AS grade,
    toString(depth) AS depth,
    scorecard,
    csm,
    segment,
    stage
FROM scores FINAL
WHERE account_id = ${account:sqlstring} AND $__timeFilter(ts)
ORDER BY ts_ns DESC
LIMIT 1`

const alertTransitions = `SELECT
    ts AS time,
    rule,
    toString(state) AS state,
    toString(severity) AS severity,
    toString(kind) AS kind,
    if(suppressed = 1, 'yes', '') AS silenced,
    round(score, 1) AS score_then,
    toString(grade) AS grade,
    message
FROM alerts FINAL
WHERE account_id = ${account:sqlstring} AND $__timeFilter(ts)
ORDER BY ts_ns DESC, rule`

func accountSeries(title, description, unit string) *timeseries.PanelBuilder {
	return chPanel(title, description, unit).Height(8).
		SpanNulls(common.BoolOrFloat64{Bool: ptr(true)})
}
