package grafana

import (
	"bytes"
	"encoding/json"
	"fmt"

	"github.com/grafana/grafana-foundation-sdk/go/cog"
	"github.com/grafana/grafana-foundation-sdk/go/cog/variants"
	"github.com/grafana/grafana-foundation-sdk/go/common"
	"github.com/grafana/grafana-foundation-sdk/go/dashboard"
	"github.com/grafana/grafana-foundation-sdk/go/prometheus"
	"github.com/grafana/grafana-foundation-sdk/go/stat"
)

// The datasources the dashboards read, by the uids and plugin types that
// deploy/grafana/provisioning/datasources/pulse.yaml provisions.
const (
	PrometheusUID  = "pulse-prometheus"
	PrometheusType = "prometheus"
	ClickHouseUID  = "pulse-clickhouse"
	ClickHouseType = "grafana-clickhouse-datasource"
)

// File is a dashboard and the name of its JSON file in
// deploy/grafana/dashboards/.
type File struct {
	Name      string
	Dashboard dashboard.Dashboard
}

// Dashboards builds every dashboard.
func Dashboards() ([]File, error) {
	var out []File
	for _, b := range []struct {
		name  string
		build func() *dashboard.DashboardBuilder
	}{
		{"pulse-operations.json", operations},
		{"pulse-portfolio.json", portfolio},
		{"pulse-account.json", account},
	} {
		d, err := b.build().Build()
		if err != nil {
			return nil, fmt.Errorf("%s: %w", b.name, err)
		}
		numberPanels(&d)
		out = append(out, File{Name: b.name, Dashboard: d})
	}
	return out, nil
}

// Files renders every dashboard: file name → JSON, as committed.
func Files() (map[string][]byte, error) {
	ds, err := Dashboards()
	if err != nil {
		return nil, err
	}
	out := map[string][]byte{}
	for _, f := range ds {
		var buf bytes.Buffer
		enc := json.NewEncoder(&buf)
		enc.SetIndent("", "  ")
		enc.SetEscapeHTML(false) // SQL's < and > stay readable
		if err := enc.Encode(f.Dashboard); err != nil {
			return nil, fmt.Errorf("%s: %w", f.Name, err)
		}
		out[f.Name] = buf.Bytes()
	}
	return out, nil
}

// numberPanels gives every panel and row a stable id, in layout order
// (Grafana would number them itself on load, differently on every save).
func numberPanels(d *dashboard.Dashboard) {
	for i, p := range d.Panels {
		id := uint32(i + 1)
		switch {
		case p.Panel != nil:
			p.Panel.Id = &id
		case p.RowPanel != nil:
			p.RowPanel.Id = id
		}
	}
}

func ref(typ, uid string) common.DataSourceRef {
	return common.DataSourceRef{Type: &typ, Uid: &uid}
}

func promDS() common.DataSourceRef { return ref(PrometheusType, PrometheusUID) }
func chDS() common.DataSourceRef   { return ref(ClickHouseType, ClickHouseUID) }

// prom is a PromQL range query.
func prom(refID, expr, legend string) *prometheus.DataqueryBuilder {
	return prometheus.NewDataqueryBuilder().Datasource(promDS()).RefId(refID).Expr(expr).LegendFormat(legend).Range()
}

// promNow is a PromQL instant query, for panels that show the present.
func promNow(refID, expr, legend string) *prometheus.DataqueryBuilder {
	return prometheus.NewDataqueryBuilder().Datasource(promDS()).RefId(refID).Expr(expr).LegendFormat(legend).Instant()
}

// The ClickHouse plugin's result formats (its "format" field).
const (
	formatTimeSeries = 0
	formatTable      = 1
)

// ClickHouseQuery is a raw-SQL query of the ClickHouse data source plugin
// (grafana-clickhouse-datasource, v4 and later): the SDK ships types for
// the core data sources only. The plugin expands its macros
// ($__timeFilter(col), $__fromTime, $__interval_s, …) in RawSQL after
// Grafana has substituted the dashboard's variables.
type ClickHouseQuery struct {
	RefID         string               `json:"refId"`
	Datasource    common.DataSourceRef `json:"datasource"`
	EditorType    string               `json:"editorType"`
	Format        int                  `json:"format"`
	QueryType     string               `json:"queryType"`
	RawSQL        string               `json:"rawSql"`
	PluginVersion string               `json:"pluginVersion"`
}

// ImplementsDataqueryVariant makes ClickHouseQuery a panel target.
func (ClickHouseQuery) ImplementsDataqueryVariant() {}

// DataqueryType is the plugin's id.
func (ClickHouseQuery) DataqueryType() string { return ClickHouseType }

// Validate implements variants.Dataquery.
func (q ClickHouseQuery) Validate() error {
	if q.RawSQL == "" {
		return fmt.Errorf("clickhouse query %s: no SQL", q.RefID)
	}
	return nil
}

// Equals implements variants.Dataquery.
func (q ClickHouseQuery) Equals(other variants.Dataquery) bool {
	o, ok := other.(ClickHouseQuery)
	return ok && q.RefID == o.RefID && q.RawSQL == o.RawSQL && q.Format == o.Format
}

type chBuilder struct{ q ClickHouseQuery }

var _ cog.Builder[variants.Dataquery] = chBuilder{}

func (b chBuilder) Build() (variants.Dataquery, error) {
	if err := b.q.Validate(); err != nil {
		return nil, cog.MakeBuildErrors("clickhouse", err)
	}
	return b.q, nil
}

// chQuery is a ClickHouse query in the plugin's SQL editor. The plugin
// version marks it as a v4 query, so the plugin does not migrate it.
func chQuery(refID string, format int, sql string) chBuilder {
	queryType := "table"
	if format == formatTimeSeries {
		queryType = "timeseries"
	}
	return chBuilder{ClickHouseQuery{RefID: refID, Datasource: chDS(), EditorType: "sql", Format: format,
		QueryType: queryType, RawSQL: sql, PluginVersion: "4.0.0"}}
}

// chSeries is a ClickHouse query whose result is a time series: a time
// column and value columns (or a label column, long format).
func chSeries(refID, sql string) chBuilder { return chQuery(refID, formatTimeSeries, sql) }

// chTable is a ClickHouse query whose result is a table.
func chTable(refID, sql string) chBuilder { return chQuery(refID, formatTable, sql) }

func ptr[T any](v T) *T { return &v }

// step is a threshold: from value at on, color.
type step struct {
	at    float64
	color string
}

func at(v float64, color string) step { return step{v, color} }

// thresholds are absolute: a base colour, then the steps.
func thresholds(base string, steps ...step) *dashboard.ThresholdsConfigBuilder {
	out := []dashboard.Threshold{{Color: base}}
	for _, s := range steps {
		out = append(out, dashboard.Threshold{Value: ptr(s.at), Color: s.color})
	}
	return dashboard.NewThresholdsConfigBuilder().Mode(dashboard.ThresholdsModeAbsolute).Steps(out)
}

// gradeColors are the status page's grade colours, for text values.
func gradeColors() []dashboard.ValueMapping {
	opt := func(text, color string) dashboard.ValueMappingResult {
		return dashboard.ValueMappingResult{Text: ptr(text), Color: ptr(color)}
	}
	return []dashboard.ValueMapping{{ValueMap: &dashboard.ValueMap{Type: dashboard.MappingTypeValueToText, Options: map[string]dashboard.ValueMappingResult{
		"green":  opt("green", "green"),
		"yellow": opt("yellow", "yellow"),
		"red":    opt("red", "red"),
		"none":   opt("none (warming up)", "text"),
	}}}}
}

// fixedColor colours one series.
func fixedColor(color string) []dashboard.DynamicConfigValue {
	return []dashboard.DynamicConfigValue{{Id: "color", Value: map[string]any{"mode": "fixed", "fixedColor": color}}}
}

// gradeSeries are the series named after the grades, with their colours.
var gradeSeries = []struct{ name, color string }{{"green", "green"}, {"yellow", "yellow"}, {"red", "red"}, {"none", "gray"}}

// statPanel is a stat panel laid out automatically.
func statPanel(title, description string, ds common.DataSourceRef) *stat.PanelBuilder {
	return stat.NewPanelBuilder().
		Title(title).
		Description(description).
		Datasource(ds).
		Orientation(common.VizOrientationAuto)
}
