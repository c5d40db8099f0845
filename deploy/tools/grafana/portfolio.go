package grafana

import (
	"github.com/grafana/grafana-foundation-sdk/go/bargauge"
	"github.com/grafana/grafana-foundation-sdk/go/common"
	"github.com/grafana/grafana-foundation-sdk/go/dashboard"
	"github.com/grafana/grafana-foundation-sdk/go/piechart"
	"github.com/grafana/grafana-foundation-sdk/go/prometheus"
	"github.com/grafana/grafana-foundation-sdk/go/table"
	"github.com/grafana/grafana-foundation-sdk/go/timeseries"
)

// portfolio is the customer-success lead's dashboard: how the accounts
// stand now and over time, who turned red, which alerts fire for whom,
// and which renewals come up.
//
// "Now" and the grade history come from Prometheus (bounded aggregates,
// no per-account label); the daily history, the lists of accounts and the
// alerts per CSM come from ClickHouse, which keeps every account's rows.
func portfolio() *dashboard.DashboardBuilder {
	b := dashboard.NewDashboardBuilder("Customer health portfolio").
		Uid("pulse-portfolio").
		Description("How the customer base stands: accounts per health grade now and over time, the red share, accounts that turned red this week, firing alerts by rule and CSM, usage depth, and the renewals of the next 90 days with their grade.").
		Tags([]string{"pulse"}).
		Refresh("5m").
		Time("now-30d", "now").
		Timezone(common.TimeZoneBrowser).
		Tooltip(dashboard.DashboardCursorSyncCrosshair).
		Link(dashboardLink("Account drill-down", "pulse-account")).
		Link(dashboardLink("Pulse operations", "pulse-operations"))

	grades := statPanel("Accounts by grade", "Accounts per health grade now (accounts still warming up have none yet).", promDS()).
		Height(5).Span(8).
		ColorMode(common.BigValueColorModeBackground).
		GraphMode(common.BigValueGraphModeNone).
		TextMode(common.BigValueTextModeValueAndName).
		ReduceOptions(common.NewReduceDataOptionsBuilder().Calcs([]string{"lastNotNull"})).
		WithTarget(promNow("A", `sum by (grade) (pulse_accounts)`, "{{grade}}"))
	for _, g := range gradeSeries {
		grades.OverrideByName(g.name, fixedColor(g.color))
	}

	b = b.WithRow(dashboard.NewRowBuilder("Now")).
		WithPanel(grades).
		WithPanel(statPanel("Red share", "Red accounts among the graded ones, now.", promDS()).
			Height(5).Span(4).
			Unit("percentunit").
			ColorMode(common.BigValueColorModeBackground).
			GraphMode(common.BigValueGraphModeArea).
			Thresholds(thresholds("green", at(0.1, "yellow"), at(0.2, "red"))).
			ReduceOptions(common.NewReduceDataOptionsBuilder().Calcs([]string{"lastNotNull"})).
			WithTarget(prom("A", redShare, "red share"))).
		WithPanel(piechart.NewPanelBuilder().
			Title("Usage depth").
			Description("Accounts by their deepest use in 30 days, from least to most sticky: record, process, integration (API calls), custom (custom modules); none without activity.").
			Datasource(promDS()).
			Height(10).Span(6).
			PieType(piechart.PieChartTypeDonut).
			ReduceOptions(common.NewReduceDataOptionsBuilder().Calcs([]string{"lastNotNull"})).
			Legend(piechart.NewPieChartLegendOptionsBuilder().DisplayMode(common.LegendDisplayModeTable).Placement(common.LegendPlacementRight).ShowLegend(true).Values([]piechart.PieChartLegendValues{piechart.PieChartLegendValuesValue, piechart.PieChartLegendValuesPercent})).
			WithTarget(promNow("A", `sum by (depth) (pulse_accounts_by_depth)`, "{{depth}}"))).
		WithPanel(bargauge.NewPanelBuilder().
			Title("Score distribution").
			Description("Accounts per score band now (pulse_score histogram; accounts without a score are not counted).").
			Datasource(promDS()).
			Height(10).Span(6).
			DisplayMode(common.BarGaugeDisplayModeGradient).
			Orientation(common.VizOrientationVertical).
			Thresholds(thresholds("red", at(40, "yellow"), at(70, "green"))).
			ColorScheme(dashboard.NewFieldColorBuilder().Mode(dashboard.FieldColorModeIdFixed).FixedColor("blue")).
			ReduceOptions(common.NewReduceDataOptionsBuilder().Calcs([]string{"lastNotNull"})).
			WithTarget(promNow("A", `sum by (le) (pulse_score_bucket)`, "{{le}}").Format(prometheus.PromQueryFormatHeatmap)))

	firing := bargauge.NewPanelBuilder().
		Title("Firing alerts by rule").
		Description("Alerts firing now per rule, silenced ones included (they fire). The table beside has them by CSM.").
		Datasource(promDS()).
		Height(10).Span(8).
		DisplayMode(common.BarGaugeDisplayModeBasic).
		Orientation(common.VizOrientationHorizontal).
		ColorScheme(dashboard.NewFieldColorBuilder().Mode(dashboard.FieldColorModeIdFixed).FixedColor("orange")).
		ReduceOptions(common.NewReduceDataOptionsBuilder().Calcs([]string{"lastNotNull"})).
		WithTarget(promNow("A", `sort_desc(sum by (rule) (pulse_alerts_firing))`, "{{rule}}"))
	b = b.WithPanel(firing).
		WithPanel(table.NewPanelBuilder().
			Title("Firing alerts by rule and CSM").
			Description("Alerts firing now (each alert's latest transition in ClickHouse is firing), per rule and account owner, with up to five of the accounts. Suppressed: silenced by an inhibiting alert, not notified.").
			Datasource(chDS()).
			Height(10).Span(16).
			WithTarget(chTable("A", firingByRuleAndCSM)))

	perGrade := chPanel("Accounts per grade (daily, ClickHouse)", "Accounts per grade at the end of each UTC day, from the daily rollup (each account's last score row of the day).", "short").
		Min(0).
		Stacking(common.NewStackingConfigBuilder().Mode(common.StackingModeNormal)).
		DrawStyle(common.GraphDrawStyleBars).
		FillOpacity(80).
		WithTarget(chSeries("A", gradesPerDay))
	promGrades := promPanel("Accounts per grade (Prometheus)", "Accounts per health grade, as Pulse exports them every metrics_interval.", "short").
		Min(0).
		Stacking(common.NewStackingConfigBuilder().Mode(common.StackingModeNormal)).
		FillOpacity(60).
		WithTarget(prom("A", `sum by (grade) (pulse_accounts)`, "{{grade}}"))
	for _, g := range gradeSeries {
		perGrade.OverrideByName(g.name, fixedColor(g.color))
		promGrades.OverrideByName(g.name, fixedColor(g.color))
	}
	b = b.WithRow(dashboard.NewRowBuilder("Over time")).
		WithPanel(promGrades).
		WithPanel(promPanel("Red share (Prometheus)", "Red accounts among the graded ones.", "percentunit").
			Min(0).Max(1).
			ColorScheme(dashboard.NewFieldColorBuilder().Mode(dashboard.FieldColorModeIdFixed).FixedColor("red")).
			WithTarget(prom("A", redShare, "red share"))).
		WithPanel(perGrade).
		WithPanel(chPanel("Red share (daily, ClickHouse)", "Red accounts among the graded ones at the end of each UTC day, from the daily rollup.", "percentunit").
			Min(0).Max(1).
			ColorScheme(dashboard.NewFieldColorBuilder().Mode(dashboard.FieldColorModeIdFixed).FixedColor("red")).
			WithTarget(chSeries("A", redSharePerDay))).
		WithPanel(chPanel("Alert transitions (ClickHouse)", "Alerts that started firing (risks and opportunities) and resolved, per interval.", "short").
			Min(0).
			Span(24).
			DrawStyle(common.GraphDrawStyleBars).
			FillOpacity(80).
			WithTarget(chSeries("A", transitionsOverTime)).
			OverrideByName("risks", fixedColor("red")).
			OverrideByName("opportunities", fixedColor("green")).
			OverrideByName("resolved", fixedColor("blue")))

	return b.WithRow(dashboard.NewRowBuilder("Follow up")).
		WithPanel(accountTable("Turned red this week", "Accounts red at the end of the time range that were not red 7 days before it (or not graded yet): when they first showed red in those 7 days, the grade and score a week before, and the owner.").
			WithTarget(chTable("A", turnedRed))).
		WithPanel(accountTable("Renewals in the next 90 days", "Accounts whose renewal date falls in the next 90 days, soonest first, with their grade, score and ARR now (from each account's latest score row).").
			WithTarget(chTable("A", renewals)))
}

// redShare is the red accounts among the graded ones.
const redShare = `sum(pulse_accounts{grade="red"}) / sum(pulse_accounts{grade!="none"})`

const gradesPerDay = `SELECT
    toDateTime(day, 'UTC') AS time,
    countIf(grade = 'green') AS green,
    countIf(grade = 'yellow') AS yellow,
    countIf(grade = 'red') AS red,
    countIf(grade = 'none') AS none
FROM daily FINAL
WHERE $__dateFilter(day)
GROUP BY time
ORDER BY time`

const redSharePerDay = `SELECT
    toDateTime(day, 'UTC') AS time,
    countIf(grade = 'red') / countIf(grade != 'none') AS red_share
FROM daily FINAL
WHERE $__dateFilter(day)
GROUP BY time
HAVING countIf(grade != 'none') > 0
ORDER BY time`

// transitionsOverTime cuts $__interval_s buckets with intDiv: the
// plugin's $__timeInterval expands to toStartOfInterval, which ClickHouse
// 18.16 lacks.
const transitionsOverTime = `SELECT
    toDateTime(intDiv(toUInt32(ts), $__interval_s) * $__interval_s) AS time,
    countIf(state = 'firing' AND kind = 'risk') AS risks,
    countIf(state = 'firing' AND kind = 'opportunity') AS opportunities,
    countIf(state = 'resolved') AS resolved
FROM alerts FINAL
WHERE $__timeFilter(ts)
GROUP BY time
ORDER BY time`

// firingByRuleAndCSM reads each alert's latest transition (rows re-sent
// after a restart are read once with FINAL). Aliases differ from column
// names: ClickHouse 18.16 refuses an alias that another expression of the
// query refers to by the column's name ("Cyclic aliases").
const firingByRuleAndCSM = `SELECT
    alert_rule AS rule,
    toString(any(alert_severity)) AS severity,
    toString(any(alert_kind)) AS kind,
    owner AS csm,
    count() AS firing,
    countIf(silenced = 1) AS suppressed,
    arrayStringConcat(groupArray(5)(account), ', ') AS accounts
FROM
(
    SELECT
        alert_id,
        argMax(state, ts_ns) AS last_state,
        any(rule) AS alert_rule,
        any(severity) AS alert_severity,
        any(kind) AS alert_kind,
        any(account_id) AS account,
        argMax(csm, ts_ns) AS owner,
        argMax(suppressed, ts_ns) AS silenced
    FROM alerts FINAL
    GROUP BY alert_id
)
WHERE last_state = 'firing'
GROUP BY rule, csm
ORDER BY firing DESC, rule, csm`

// turnedRed compares each account's latest row up to the end of the
// range with its latest row 7 days before (rows come at least hourly, so
// two weeks of rows are enough). The latest row is taken whole, as a
// tuple: argMax of a Nullable column alone would skip NULLs.
const turnedRed = `SELECT
    account_id,
    red_since,
    grade_week_ago,
    round(score_now, 1) AS score,
    round(score_week_ago, 1) AS score_week_ago,
    last_csm AS csm,
    last_segment AS segment
FROM
(
    SELECT
        account_id,
        argMax(tuple(grade, score, csm, segment), ts_ns) AS latest,
        toString(tupleElement(latest, 1)) AS grade_now,
        tupleElement(latest, 2) AS score_now,
        tupleElement(latest, 3) AS last_csm,
        tupleElement(latest, 4) AS last_segment,
        argMaxIf(tuple(grade, score), ts_ns, ts <= $__toTime - INTERVAL 7 DAY) AS week_ago,
        toString(tupleElement(week_ago, 1)) AS grade_week_ago,
        tupleElement(week_ago, 2) AS score_week_ago,
        minIf(ts, grade = 'red' AND ts > $__toTime - INTERVAL 7 DAY) AS red_since
    FROM scores FINAL
    WHERE ts > $__toTime - INTERVAL 14 DAY AND ts <= $__toTime
    GROUP BY account_id
)
WHERE grade_now = 'red' AND grade_week_ago != 'red'
ORDER BY red_since DESC, account_id`

// renewals dates each renewal from the latest score row: days_to_renewal
// counts from the row's time to the renewal date, 00:00 UTC. Rows of the
// last two days hold every live account (rows come at least hourly).
const renewals = `SELECT
    account_id,
    renewal,
    dateDiff('day', today(), renewal) AS days_left,
    last_grade AS grade,
    round(last_score, 1) AS score,
    last_arr AS arr,
    last_csm AS csm,
    last_segment AS segment
FROM
(
    SELECT
        account_id,
        argMax(tuple(ts, days_to_renewal, grade, score, arr, csm, segment), ts_ns) AS latest,
        tupleElement(latest, 2) AS to_renewal,
        toDate(addSeconds(tupleElement(latest, 1), toInt64(round(to_renewal * 86400)))) AS renewal,
        toString(tupleElement(latest, 3)) AS last_grade,
        tupleElement(latest, 4) AS last_score,
        tupleElement(latest, 5) AS last_arr,
        tupleElement(latest, 6) AS last_csm,
        tupleElement(latest, 7) AS last_segment
    FROM scores FINAL
    WHERE ts > now() - INTERVAL 2 DAY
    GROUP BY account_id
)
WHERE isNotNull(to_renewal) AND renewal >= today() AND renewal <= today() + 90
ORDER BY renewal, account_id`

func promPanel(title, description, unit string) *timeseries.PanelBuilder {
	return seriesPanel(title, description, unit).Datasource(promDS())
}

func chPanel(title, description, unit string) *timeseries.PanelBuilder {
	return seriesPanel(title, description, unit).Datasource(chDS())
}

func seriesPanel(title, description, unit string) *timeseries.PanelBuilder {
	return timeseries.NewPanelBuilder().
		Title(title).
		Description(description).
		Height(9).Span(12).
		Unit(unit).
		FillOpacity(10).
		Legend(common.NewVizLegendOptionsBuilder().DisplayMode(common.LegendDisplayModeList).Placement(common.LegendPlacementBottom).ShowLegend(true)).
		Tooltip(common.NewVizTooltipOptionsBuilder().Mode(common.TooltipDisplayModeMulti).Sort(common.SortOrderNone))
}

// accountTable is a ClickHouse table of accounts: the grade coloured, and
// each account linked to its drill-down over the same time range.
func accountTable(title, description string) *table.PanelBuilder {
	return table.NewPanelBuilder().
		Title(title).
		Description(description).
		Datasource(chDS()).
		Height(10).Span(12).
		OverrideByName("account_id", []dashboard.DynamicConfigValue{{Id: "links", Value: []map[string]any{{
			"title": "Account drill-down",
			"url":   "/d/pulse-account?var-account=${__value.raw}&${__url_time_range}",
		}}}}).
		OverrideByName("grade", gradeCells()).
		OverrideByName("grade_week_ago", gradeCells())
}

// gradeCells colours a grade column's cells by the grade.
func gradeCells() []dashboard.DynamicConfigValue {
	return []dashboard.DynamicConfigValue{
		{Id: "mappings", Value: gradeColors()},
		{Id: "custom.cellOptions", Value: map[string]any{"type": "color-text"}},
	}
}
