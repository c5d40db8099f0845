package rules

import (
	"math"
	"slices"
)

// Metric names a per-account metric of SPEC §3. The engine computes every
// metric into a Values array indexed by Metric; rules read it by name.
type Metric uint8

// The metrics, in the order of the SPEC §3 table (outputs keep this order).
const (
	DAU Metric = iota
	WAU
	MAU
	WAUPrev
	Seats
	Seats30dAgo
	ActivatedUsers
	ActivationRate
	Utilization
	LoginRatio7d
	Stickiness
	OnlineMinutes7d
	MobileShare30d
	Modules30d
	ModuleBreadth30d
	CoreAdoption30d
	APICalls7d
	APICalls30d
	Events7d
	EventsPrev7d
	UsageChange7d
	OpenTickets
	OldestOpenTicketDays
	DaysSinceTicket
	DaysSinceActive
	NPS90d
	DaysToRenewal
	TenureDays
	Seats90dAgo
	SeatLoginRatio7d
	UsageVsBaseline
	ScoreChange7d
	ScoreChange30d
	GradeDays
	ARR
	DaysSinceTouch
	Touches30d
	StakeholderChanges90d
	ChampionLeft90d
	DaysSinceRenewalEvent

	NumMetrics int = iota
)

var metricNames = [NumMetrics]string{
	"dau", "wau", "mau", "wau_prev", "seats", "seats_30d_ago",
	"activated_users", "activation_rate", "utilization", "login_ratio_7d",
	"stickiness", "online_minutes_7d", "mobile_share_30d", "modules_30d",
	"module_breadth_30d", "core_adoption_30d", "api_calls_7d", "api_calls_30d",
	"events_7d", "events_prev_7d", "usage_change_7d", "open_tickets",
	"oldest_open_ticket_days", "days_since_ticket", "days_since_active",
	"nps_90d", "days_to_renewal", "tenure_days",
	"seats_90d_ago", "seat_login_ratio_7d", "usage_vs_baseline",
	"score_change_7d", "score_change_30d", "grade_days", "arr",
	"days_since_touch", "touches_30d", "stakeholder_changes_90d",
	"champion_left_90d", "days_since_renewal_event",
}

// ScoreBased reports whether the metric is derived from the score itself
// (its history or grade): alerts may read it, score factors may not.
func (m Metric) ScoreBased() bool { return m == ScoreChange7d || m == ScoreChange30d || m == GradeDays }

// String returns the metric's name as rules and outputs spell it.
func (m Metric) String() string { return metricNames[m] }

// MetricByName returns the metric called name.
func MetricByName(name string) (Metric, bool) { return byName[Metric](metricNames[:], name) }

// byName finds name in a list of names and returns its index as a T.
func byName[T ~uint8](names []string, name string) (T, bool) {
	i := slices.Index(names, name)
	return T(max(i, 0)), i >= 0
}

// Attr names an account attribute (a string, "" when unknown).
type Attr uint8

// The attributes of SPEC §3.
const (
	Segment Attr = iota
	Stage
	CSM
	Plan
	Region
	Industry

	NumAttrs int = iota
)

var attrNames = [NumAttrs]string{"segment", "stage", "csm", "plan", "region", "industry"}

// String returns the attribute's name.
func (a Attr) String() string { return attrNames[a] }

// AttrByName returns the attribute called name.
func AttrByName(name string) (Attr, bool) { return byName[Attr](attrNames[:], name) }

// Null is the value of a metric that cannot be computed. Metrics are never
// legitimately NaN, so NaN stands for JSON null without a separate flag.
var Null = math.NaN()

// IsNull reports whether v is the null metric value.
func IsNull(v float64) bool { return v != v }

// IsFinite reports whether v is written as a number: it is neither Null
// nor an infinity, which JSON and SQL cannot hold. Every output writes the
// other values as null (JSON null, SQL NULL, "—" on a page), so a value
// that overflowed cannot break what reads it.
func IsFinite(v float64) bool { return !math.IsNaN(v) && !math.IsInf(v, 0) }

// Values holds one account's metrics at one time, indexed by Metric.
type Values [NumMetrics]float64

// Depth is the usage-depth level of SPEC §3, least to most sticky.
type Depth uint8

// The depth levels.
const (
	DepthNone Depth = iota
	DepthRecord
	DepthProcess
	DepthIntegration
	DepthCustom

	// NumDepths is the number of depth levels, DepthNone included.
	NumDepths int = iota
)

var depthNames = [NumDepths]string{"none", "record", "process", "integration", "custom"}

func (d Depth) String() string { return depthNames[d] }

// DepthByName returns the depth level called name.
func DepthByName(name string) (Depth, bool) { return byName[Depth](depthNames[:], name) }

// Input is everything the rules read about one account at one time.
type Input struct {
	AccountID string
	Metrics   *Values
	Attrs     *[NumAttrs]string
	Depth     Depth
}
