package rules

import (
	"fmt"
	"slices"
	"text/template"
	"time"
)

// Ruleset is a validated, compiled rules file. It is immutable and safe for
// concurrent use; per-goroutine scratch space lives in an Evaluator.
type Ruleset struct {
	Modules ModuleSets
	// Scorecards are the segment- or stage-specific scorecards, in file
	// order; Default (named "default") scores every account none matches.
	Scorecards []*Scorecard
	Default    *Scorecard
	Alerts     []*Alert
	Notify     []Notifier
	// Source names the file; Version is a hash of its bytes.
	Source, Version string
}

// ModuleSets are the module lists of the rules file's modules block.
type ModuleSets struct {
	All, Core, Process, Custom []string
}

// DefaultScorecard names the top-level score block's scorecard.
const DefaultScorecard = "default"

// Scorecard is one way of scoring accounts: its factors and grade lines.
type Scorecard struct {
	Name    string
	Match   []Match // attribute filter; the default scorecard has none
	Factors []Factor
	Grades  Grades
	Caps    []Cap
	// Warmup leaves accounts younger than this (tenure_days) unscored,
	// grade none: their windows do not hold enough history to judge.
	Warmup time.Duration
}

// Cap bounds the score while its condition holds: a sign that outweighs
// every factor (no user active for two weeks) keeps the score at most Max
// however good the rest looks.
type Cap struct {
	Name        string
	Max         float64
	when, clear *condition // clear nil: the cap lifts when `when` no longer holds
}

// maxCaps bounds the caps of one scorecard: State keeps which hold in a
// bit set.
const maxCaps = 32

// ScorecardFor returns the first scorecard whose match fits the
// attributes, or the default one.
func (rs *Ruleset) ScorecardFor(attrs *[NumAttrs]string) *Scorecard {
	for _, c := range rs.Scorecards {
		if matchAttrs(c.Match, attrs) {
			return c
		}
	}
	return rs.Default
}

// Factor is one weighted input of the health score.
type Factor struct {
	Name   string
	Metric Metric
	Weight float64
	Points []Point
}

// Point is one knot of a factor's piecewise-linear curve: metric value X
// scores Y points.
type Point struct{ X, Y float64 }

// Grades holds the grade thresholds and the hysteresis margin.
type Grades struct {
	Green, Yellow, Hysteresis float64
}

// Grade is an account's health grade, ordered worst to best after None.
type Grade uint8

// The grades.
const (
	GradeNone Grade = iota
	GradeRed
	GradeYellow
	GradeGreen

	// NumGrades is the number of grades, GradeNone included.
	NumGrades int = iota
)

var gradeNames = [NumGrades]string{"none", "red", "yellow", "green"}

func (g Grade) String() string { return gradeNames[g] }

// GradeByName returns the grade called name.
func GradeByName(name string) (Grade, bool) { return byName[Grade](gradeNames[:], name) }

// Severity of an alert rule.
type Severity uint8

// The severities.
const (
	SeverityLow Severity = iota
	SeverityMedium
	SeverityHigh

	// NumSeverities is the number of severities.
	NumSeverities int = iota
)

var severityNames = [NumSeverities]string{"low", "medium", "high"}

func (s Severity) String() string { return severityNames[s] }

func parseSeverity(s string) (Severity, error) {
	if s == "" {
		return SeverityMedium, nil
	}
	for i, n := range severityNames {
		if n == s {
			return Severity(i), nil
		}
	}
	return 0, fmt.Errorf("%w: severity %q must be high, medium or low", ErrBadValue, s)
}

// Kind tells a risk (churn) alert from an opportunity (expansion) alert.
type Kind uint8

// The kinds.
const (
	KindRisk Kind = iota
	KindOpportunity

	// NumKinds is the number of kinds.
	NumKinds int = iota
)

var kindNames = [NumKinds]string{"risk", "opportunity"}

func (k Kind) String() string { return kindNames[k] }

func parseKind(s string) (Kind, error) {
	switch s {
	case "", "risk":
		return KindRisk, nil
	case "opportunity":
		return KindOpportunity, nil
	}
	return 0, fmt.Errorf("%w: kind %q must be risk or opportunity", ErrBadValue, s)
}

// Match is one key of a match block: the value of Key must be one of Values.
type Match struct {
	Key    string
	Values []string
	attr   Attr // Key's attribute, for alert and scorecard matches
}

// Alert is a compiled alert rule.
type Alert struct {
	Name     string
	For      time.Duration
	Severity Severity
	Kind     Kind
	Match    []Match
	// Reads lists the metric names (and "score") the conditions read,
	// sorted: transitions carry their values.
	Reads []string
	// Inhibits names the alerts of the same account this one silences
	// while it fires.
	Inhibits []string

	when, clear *condition
	message     *template.Template
}

// Notifier is a chat/webhook destination of the notify block. The rules
// package only validates it; delivery belongs to the webhook sink.
type Notifier struct {
	Name           string
	Type           string // slack | teams | webhook
	URL            string
	Secret         string // HMAC-SHA256 key; "" signs nothing
	Match          []Match
	SendResolved   bool
	RepeatInterval time.Duration
}

// matches reports whether attrs satisfy every key of m.
func matchAttrs(m []Match, attrs *[NumAttrs]string) bool {
	for _, k := range m {
		if !slices.Contains(k.Values, attrs[k.attr]) {
			return false
		}
	}
	return true
}
