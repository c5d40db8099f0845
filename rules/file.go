package rules

import (
	"errors"
	"fmt"
	"math"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/cespare/xxhash/v2"
	"go.yaml.in/yaml/v3"
)

// The YAML shape of a rules file (SPEC §4). Decoding is strict: unknown keys
// are refused.
type fileSpec struct {
	Modules    modulesSpec     `yaml:"modules"`
	Scorecards []scorecardSpec `yaml:"scorecards"`
	Score      scoreSpec       `yaml:"score"`
	Alerts     []alertSpec     `yaml:"alerts"`
	Notify     []notifySpec    `yaml:"notify"`
	// Top-level keys starting with "x-" are free for YAML anchors that the
	// rest of the file refers to (as in Compose files); others are refused.
	Extensions map[string]yaml.Node `yaml:",inline"`
}

type scorecardSpec struct {
	Name    string              `yaml:"name"`
	Match   map[string][]string `yaml:"match"`
	Factors []factorSpec        `yaml:"factors"`
	Grades  *gradesSpec         `yaml:"grades"`
	Caps    []capSpec           `yaml:"caps"`
	Warmup  string              `yaml:"warmup"`
}

type capSpec struct {
	Name  string   `yaml:"name"`
	When  string   `yaml:"when"`
	Clear string   `yaml:"clear"`
	Max   *float64 `yaml:"max"`
}

type modulesSpec struct {
	All     []string `yaml:"all"`
	Core    []string `yaml:"core"`
	Process []string `yaml:"process"`
	Custom  []string `yaml:"custom"`
}

type scoreSpec struct {
	Factors []factorSpec `yaml:"factors"`
	Grades  *gradesSpec  `yaml:"grades"`
	Caps    []capSpec    `yaml:"caps"`
	Warmup  string       `yaml:"warmup"`
}

type factorSpec struct {
	Name   string      `yaml:"name"`
	Metric string      `yaml:"metric"`
	Weight float64     `yaml:"weight"`
	Points [][]float64 `yaml:"points"`
}

type gradesSpec struct {
	Green      *float64 `yaml:"green"`
	Yellow     *float64 `yaml:"yellow"`
	Hysteresis float64  `yaml:"hysteresis"`
}

type alertSpec struct {
	Name     string              `yaml:"name"`
	When     string              `yaml:"when"`
	For      string              `yaml:"for"`
	Clear    string              `yaml:"clear"`
	Severity string              `yaml:"severity"`
	Kind     string              `yaml:"kind"`
	Match    map[string][]string `yaml:"match"`
	Message  string              `yaml:"message"`
	Inhibits []string            `yaml:"inhibits"`
}

type notifySpec struct {
	Name           string              `yaml:"name"`
	Type           string              `yaml:"type"`
	URL            string              `yaml:"url"`
	Secret         string              `yaml:"secret"`
	Match          map[string][]string `yaml:"match"`
	SendResolved   bool                `yaml:"send_resolved"`
	RepeatInterval string              `yaml:"repeat_interval"`
}

// Default grade thresholds, used when the rules file has no score.grades.
const (
	DefaultGreen  = 70
	DefaultYellow = 40
)

var ruleNameRe = regexp.MustCompile(`^[a-z0-9_]+$`)

// MaxFileBytes bounds a rules file: a real one is a few kilobytes.
const MaxFileBytes = 1 << 20

// LoadOptions carries what loading needs from outside the package.
type LoadOptions struct {
	// LookupEnv expands ${VAR} in notify urls and secrets; nil expands none
	// (a ${VAR} then is an error).
	LookupEnv func(string) (string, bool)
}

// Load parses and validates a rules file. name is used in error messages
// only. All problems found are returned together, each an *Error.
func Load(name string, data []byte, opts LoadOptions) (*Ruleset, error) {
	if len(data) > MaxFileBytes {
		return nil, &Error{File: name, Err: fmt.Errorf("%w: %d bytes, at most %d", ErrTooLarge, len(data), MaxFileBytes)}
	}
	var spec fileSpec
	doc, err := DecodeStrict(name, data, &spec)
	if err != nil {
		return nil, err
	}
	c := compiler{file: name, doc: doc, opts: opts}
	for k := range spec.Extensions {
		if !strings.HasPrefix(k, "x-") {
			c.fail(fmt.Errorf("%w %q (top-level keys of your own start with x-)", ErrUnknownKey, k), k)
		}
	}
	rs := c.build(&spec)
	if len(c.errs) > 0 {
		return nil, errors.Join(c.errs...)
	}
	sum := xxhash.Sum64(data)
	rs.Version = strconv.FormatUint(sum, 16)
	rs.Source = name
	return rs, nil
}

type compiler struct {
	file string
	doc  *yaml.Node
	opts LoadOptions
	errs []error
}

func (c *compiler) fail(err error, path ...any) {
	c.errs = append(c.errs, &Error{File: c.file, Line: position(c.doc, path...), Key: keyPath(path...), Err: err})
}

func (c *compiler) build(spec *fileSpec) *Ruleset {
	rs := &Ruleset{
		Modules: ModuleSets{
			All:     c.moduleList(spec.Modules.All, "all"),
			Core:    c.moduleList(spec.Modules.Core, "core"),
			Process: c.moduleList(spec.Modules.Process, "process"),
			Custom:  c.moduleList(spec.Modules.Custom, "custom"),
		},
	}
	defaults := Grades{Green: DefaultGreen, Yellow: DefaultYellow}
	rs.Default = &Scorecard{
		Name:    DefaultScorecard,
		Factors: c.factors(spec.Score.Factors, "score"),
		Grades:  c.grades(spec.Score.Grades, defaults, "score"),
		Caps:    c.caps(spec.Score.Caps, "score"),
		Warmup:  c.warmup(spec.Score.Warmup, "score"),
	}
	names := map[string]bool{DefaultScorecard: true}
	for i, sc := range spec.Scorecards {
		at := func(k string) []any { return []any{"scorecards", i, k} }
		switch {
		case sc.Name == "":
			c.fail(ErrMissing, at("name")...)
		case !ruleNameRe.MatchString(sc.Name):
			c.fail(fmt.Errorf("%w: name %q must match [a-z0-9_]+", ErrBadValue, sc.Name), at("name")...)
		case names[sc.Name]:
			c.fail(fmt.Errorf("%w: scorecard %q (default is the score block's)", ErrDuplicateName, sc.Name), at("name")...)
		}
		names[sc.Name] = true
		card := &Scorecard{
			Name:    sc.Name,
			Match:   c.attrMatch(sc.Match, false, "scorecards", i, "match"),
			Factors: c.factors(sc.Factors, "scorecards", i),
			Grades:  c.grades(sc.Grades, rs.Default.Grades, "scorecards", i),
			Caps:    c.caps(sc.Caps, "scorecards", i),
			Warmup:  rs.Default.Warmup,
		}
		if sc.Warmup != "" {
			card.Warmup = c.warmup(sc.Warmup, "scorecards", i)
		}
		if len(sc.Match) == 0 {
			c.fail(fmt.Errorf("%w: a scorecard needs a match (the score block scores everyone else)", ErrMissing), at("match")...)
		}
		if len(sc.Factors) == 0 {
			c.fail(fmt.Errorf("%w: a scorecard needs at least one factor", ErrMissing), at("factors")...)
		}
		rs.Scorecards = append(rs.Scorecards, card)
	}
	c.buildAlerts(rs, spec.Alerts)
	c.buildNotify(rs, spec.Notify)
	return rs
}

// caps validates the caps of a scorecard at path. A cap is computed
// before the score exists, so it may not read the score or what derives
// from it.
func (c *compiler) caps(specs []capSpec, path ...any) []Cap {
	var out []Cap
	names := map[string]bool{}
	if len(specs) > maxCaps {
		c.fail(fmt.Errorf("%w: at most %d caps", ErrBadValue, maxCaps), append(path, "caps")...)
	}
	for i, cs := range specs {
		at := func(k string) []any { return append(path[:len(path):len(path)], "caps", i, k) }
		switch {
		case cs.Name == "":
			c.fail(ErrMissing, at("name")...)
		case !ruleNameRe.MatchString(cs.Name):
			c.fail(fmt.Errorf("%w: name %q must match [a-z0-9_]+", ErrBadValue, cs.Name), at("name")...)
		case names[cs.Name]:
			c.fail(fmt.Errorf("%w: cap %q", ErrDuplicateName, cs.Name), at("name")...)
		}
		names[cs.Name] = true
		cp := Cap{Name: cs.Name}
		if cs.Max == nil {
			c.fail(ErrMissing, at("max")...)
		} else if cp.Max = *cs.Max; cp.Max < 0 || cp.Max > 100 {
			c.fail(fmt.Errorf("%w: max must be within 0…100, got %g", ErrBadValue, cp.Max), at("max")...)
		}
		if cs.When == "" {
			c.fail(ErrMissing, at("when")...)
		} else {
			cp.when = c.capCondition(cs.When, at("when"))
		}
		if cs.Clear != "" {
			cp.clear = c.capCondition(cs.Clear, at("clear"))
		}
		out = append(out, cp)
	}
	return out
}

// capCondition compiles a cap's when or clear: it may not read the score,
// what derives from it, or the grade.
func (c *compiler) capCondition(src string, at []any) *condition {
	cond, err := compileCondition(src)
	if err != nil {
		c.fail(err, at...)
		return nil
	}
	for _, r := range cond.reads {
		if m, ok := MetricByName(r); r == nameScore || ok && m.ScoreBased() {
			c.fail(fmt.Errorf("%w: a cap cannot read %s: it bounds the score it derives from", ErrBadExpression, r), at...)
		}
	}
	if cond.readsGrade {
		c.fail(fmt.Errorf("%w: a cap cannot read grade: it bounds the score the grade derives from", ErrBadExpression), at...)
	}
	return cond
}

// warmup parses a scorecard's warm-up duration ("" is none).
func (c *compiler) warmup(s string, path ...any) time.Duration {
	if s == "" {
		return 0
	}
	d, err := ParseDuration(s)
	if err != nil || d < 0 {
		c.fail(fmt.Errorf("%w: warmup %q is not a duration (e.g. 7d)", ErrBadValue, s), append(path, "warmup")...)
	}
	return d
}

// grades validates a grades block; a missing block or key takes def's.
func (c *compiler) grades(g *gradesSpec, def Grades, path ...any) Grades {
	out := def
	if g == nil {
		return out
	}
	at := func(k string) []any { return append(path[:len(path):len(path)], "grades", k) }
	if g.Green != nil {
		out.Green = *g.Green
	}
	if g.Yellow != nil {
		out.Yellow = *g.Yellow
	}
	out.Hysteresis = g.Hysteresis
	switch {
	case out.Yellow >= out.Green:
		c.fail(fmt.Errorf("%w: yellow (%g) must be below green (%g)", ErrBadValue, out.Yellow, out.Green), at("yellow")...)
	case g.Hysteresis < 0:
		c.fail(fmt.Errorf("%w: hysteresis %g must be ≥ 0", ErrBadValue, g.Hysteresis), at("hysteresis")...)
	}
	return out
}

func (c *compiler) moduleList(mods []string, key string) []string {
	seen := map[string]bool{}
	for i, m := range mods {
		if m == "" {
			c.fail(fmt.Errorf("%w: empty module name", ErrBadValue), "modules", key, i)
		}
		if seen[m] {
			c.fail(fmt.Errorf("%w: module %q listed twice", ErrDuplicateName, m), "modules", key, i)
		}
		seen[m] = true
	}
	return mods
}

// factors validates the factors of a scorecard at path.
func (c *compiler) factors(specs []factorSpec, path ...any) []Factor {
	var out []Factor
	names := map[string]bool{}
	for i, f := range specs {
		base := append(path[:len(path):len(path)], "factors", i)
		at := func(k ...any) []any { return append(base[:len(base):len(base)], k...) }
		if f.Name == "" {
			c.fail(ErrMissing, at("name")...)
		} else if names[f.Name] {
			c.fail(fmt.Errorf("%w: factor %q", ErrDuplicateName, f.Name), at("name")...)
		}
		names[f.Name] = true
		m, ok := MetricByName(f.Metric)
		switch {
		case !ok:
			c.fail(fmt.Errorf("%w %q", ErrUnknownMetric, f.Metric), at("metric")...)
		case m.ScoreBased():
			c.fail(fmt.Errorf("%w: %s is derived from the score itself; alerts may read it, factors may not", ErrBadValue, f.Metric), at("metric")...)
		}
		if !(f.Weight > 0) {
			c.fail(fmt.Errorf("%w: weight must be > 0, got %g", ErrBadValue, f.Weight), at("weight")...)
		}
		var pts []Point
		for j, p := range f.Points {
			if len(p) != 2 {
				c.fail(fmt.Errorf("%w: a point is [x, points], got %d numbers", ErrBadValue, len(p)), at("points", j)...)
				continue
			}
			if j > 0 && len(f.Points[j-1]) == 2 && !(p[0] > f.Points[j-1][0]) {
				c.fail(fmt.Errorf("%w: x must be strictly increasing (%g after %g)", ErrBadValue, p[0], f.Points[j-1][0]), at("points", j)...)
			}
			if p[1] < 0 || p[1] > 100 {
				c.fail(fmt.Errorf("%w: points must be within 0…100, got %g", ErrBadValue, p[1]), at("points", j)...)
			}
			pts = append(pts, Point{X: p[0], Y: p[1]})
		}
		if len(f.Points) == 0 {
			c.fail(fmt.Errorf("%w: at least one point", ErrMissing), at("points")...)
		}
		out = append(out, Factor{Name: f.Name, Metric: m, Weight: f.Weight, Points: pts})
	}
	return out
}

func (c *compiler) buildAlerts(rs *Ruleset, specs []alertSpec) {
	names := map[string]bool{}
	for i, a := range specs {
		at := func(k string) []any { return []any{"alerts", i, k} }
		switch {
		case a.Name == "":
			c.fail(ErrMissing, at("name")...)
		case !ruleNameRe.MatchString(a.Name):
			c.fail(fmt.Errorf("%w: name %q must match [a-z0-9_]+", ErrBadValue, a.Name), at("name")...)
		case names[a.Name]:
			c.fail(fmt.Errorf("%w: alert %q", ErrDuplicateName, a.Name), at("name")...)
		}
		names[a.Name] = true
		al := &Alert{Name: a.Name}
		var err error
		if a.When == "" {
			c.fail(ErrMissing, at("when")...)
		} else if al.when, err = compileCondition(a.When); err != nil {
			c.fail(err, at("when")...)
		}
		if a.Clear != "" {
			if al.clear, err = compileCondition(a.Clear); err != nil {
				c.fail(err, at("clear")...)
			}
		}
		if a.For != "" {
			if al.For, err = ParseDuration(a.For); err != nil || al.For < 0 {
				c.fail(fmt.Errorf("%w: for %q is not a duration (e.g. 30m, 24h, 7d)", ErrBadValue, a.For), at("for")...)
			}
		}
		if al.Severity, err = parseSeverity(a.Severity); err != nil {
			c.fail(err, at("severity")...)
		}
		if al.Kind, err = parseKind(a.Kind); err != nil {
			c.fail(err, at("kind")...)
		}
		al.Match = c.attrMatch(a.Match, false, "alerts", i, "match")
		if al.message, err = compileMessage(a.Name, a.Message); err != nil {
			c.fail(err, at("message")...)
		}
		al.Reads = readsOf(al.when, al.clear)
		al.Inhibits = a.Inhibits
		rs.Alerts = append(rs.Alerts, al)
	}
	c.checkInhibits(rs, specs)
}

// checkInhibits refuses inhibits lists that name unknown rules, the rule
// itself, or close a cycle (two alerts silencing each other would both
// stay silent).
func (c *compiler) checkInhibits(rs *Ruleset, specs []alertSpec) {
	for i, a := range specs {
		for j, name := range a.Inhibits {
			at := []any{"alerts", i, "inhibits", j}
			switch {
			case name == a.Name:
				c.fail(fmt.Errorf("%w: an alert cannot inhibit itself", ErrBadValue), at...)
			case rs.alert(name) == nil:
				c.fail(fmt.Errorf("%w: no alert %q to inhibit", ErrBadValue, name), at...)
			}
		}
	}
	// Depth-first search for a cycle through each alert.
	state := map[string]int{} // 0 new, 1 on the path, 2 done
	var visit func(name string, path []string) []string
	visit = func(name string, path []string) []string {
		switch state[name] {
		case 1:
			return append(path, name)
		case 2:
			return nil
		}
		state[name] = 1
		if a := rs.alert(name); a != nil {
			for _, n := range a.Inhibits {
				if n == name {
					continue // reported above
				}
				if cyc := visit(n, append(path, name)); cyc != nil {
					return cyc
				}
			}
		}
		state[name] = 2
		return nil
	}
	for i, a := range rs.Alerts {
		if cyc := visit(a.Name, nil); cyc != nil {
			cyc = cyc[slices.Index(cyc, cyc[len(cyc)-1]):]
			c.fail(fmt.Errorf("%w: inhibition cycle %s", ErrBadValue, strings.Join(cyc, " → ")), "alerts", i, "inhibits")
			return
		}
	}
}

func (c *compiler) buildNotify(rs *Ruleset, specs []notifySpec) {
	names := map[string]bool{}
	for i, n := range specs {
		at := func(k string) []any { return []any{"notify", i, k} }
		if n.Name == "" {
			c.fail(ErrMissing, at("name")...)
		} else if names[n.Name] {
			c.fail(fmt.Errorf("%w: notifier %q", ErrDuplicateName, n.Name), at("name")...)
		}
		names[n.Name] = true
		nt := Notifier{Name: n.Name, SendResolved: n.SendResolved}
		switch n.Type {
		case "slack", "teams", "webhook":
			nt.Type = n.Type
		default:
			c.fail(fmt.Errorf("%w: type %q must be slack, teams or webhook", ErrBadValue, n.Type), at("type")...)
		}
		var err error
		if nt.URL, err = c.expand(n.URL); err != nil {
			c.fail(err, at("url")...)
		} else if err := checkNotifyURL(n.URL, nt.URL); err != nil {
			c.fail(err, at("url")...)
		}
		if nt.Secret, err = c.expand(n.Secret); err != nil {
			c.fail(err, at("secret")...)
		}
		if n.RepeatInterval != "" {
			if nt.RepeatInterval, err = ParseDuration(n.RepeatInterval); err != nil || nt.RepeatInterval <= 0 {
				c.fail(fmt.Errorf("%w: repeat_interval %q is not a positive duration", ErrBadValue, n.RepeatInterval), at("repeat_interval")...)
			}
		}
		nt.Match = c.attrMatch(n.Match, true, "notify", i, "match")
		rs.Notify = append(rs.Notify, nt)
	}
}

// attrMatch validates a match block; notify rules may also match on the
// alert's rule, severity and kind.
func (c *compiler) attrMatch(m map[string][]string, notify bool, path ...any) []Match {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var out []Match
	for _, k := range keys {
		kp := append(path[:len(path):len(path)], k)
		if _, ok := AttrByName(k); !ok && !(notify && (k == "rule" || k == "severity" || k == "kind")) {
			c.fail(fmt.Errorf("%w: cannot match on %q", ErrUnknownKey, k), kp...)
			continue
		}
		if len(m[k]) == 0 {
			c.fail(fmt.Errorf("%w: an empty list matches nothing", ErrBadValue), kp...)
		}
		a, _ := AttrByName(k)
		out = append(out, Match{Key: k, Values: m[k], attr: a})
	}
	return out
}

var envRe = regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)\}`)

func (c *compiler) expand(s string) (string, error) {
	var err error
	out := envRe.ReplaceAllStringFunc(s, func(ref string) string {
		name := ref[2 : len(ref)-1]
		if c.opts.LookupEnv != nil {
			if v, ok := c.opts.LookupEnv(name); ok {
				return v
			}
		}
		err = fmt.Errorf("%w %s", ErrUndefinedEnvVar, name)
		return ""
	})
	return out, err
}

// checkNotifyURL checks a notifier's url after expansion. The url is a
// secret (a Slack webhook's path is its credential) and the error goes to
// the reload answer and `pulse rules check`, so it never shows the value:
// only the variables the url was built from, which say what to fix.
func checkNotifyURL(raw, expanded string) error {
	from := ""
	if vars := envRe.FindAllString(raw, -1); len(vars) > 0 {
		from = " (from " + strings.Join(vars, ", ") + ")"
	}
	u, err := url.Parse(expanded)
	switch {
	case err != nil:
		return fmt.Errorf("%w: url%s is not a URL", ErrBadValue, from)
	case u.Scheme != "http" && u.Scheme != "https":
		return fmt.Errorf("%w: url%s must be http:// or https://", ErrBadValue, from)
	case u.Host == "":
		return fmt.Errorf("%w: url%s has no host", ErrBadValue, from)
	}
	return nil
}

// maxDays bounds the days of a duration: time.Duration holds about 292 years.
const maxDays = 100_000

// ParseDuration parses a Go duration ("90s", "24h", "1h30m"), optionally led
// by whole days of 24 hours: "7d", "1d12h", "-2d". Every duration of a rules
// file, of the daemon config and of the command line's flags is read by it.
func ParseDuration(s string) (time.Duration, error) {
	bad := func() (time.Duration, error) {
		return 0, fmt.Errorf("bad duration %q: a number and a unit (ms, s, m, h, d), e.g. 90s, 5m, 7d, 1d12h", s)
	}
	rest, neg := s, false
	if r, ok := strings.CutPrefix(rest, "-"); ok {
		rest, neg = r, true
	} else if r, ok := strings.CutPrefix(rest, "+"); ok {
		rest = r
	}
	i := 0
	for i < len(rest) && rest[i] >= '0' && rest[i] <= '9' {
		i++
	}
	if i == 0 || i == len(rest) || rest[i] != 'd' {
		d, err := time.ParseDuration(s)
		if err != nil {
			return bad()
		}
		return d, nil
	}
	days, err := strconv.ParseInt(rest[:i], 10, 64)
	if err != nil || days > maxDays {
		return bad()
	}
	d := time.Duration(days) * 24 * time.Hour
	if tail := rest[i+1:]; tail != "" {
		// The part after the days is a plain Go duration, unsigned.
		if tail[0] < '0' || tail[0] > '9' {
			return bad()
		}
		t, err := time.ParseDuration(tail)
		if err != nil || t >= 24*time.Hour*maxDays {
			return bad()
		}
		d += t
	}
	if neg {
		d = -d
	}
	return d, nil
}

// FormatDuration writes d the way ParseDuration reads it, with days for
// 24 hours and more: 90d, 1d12h, 1h30m, 250ms.
func FormatDuration(d time.Duration) string {
	if d == 0 {
		return "0s"
	}
	if d < 0 {
		if d == math.MinInt64 {
			return d.String()
		}
		return "-" + FormatDuration(-d)
	}
	const day = 24 * time.Hour
	var b strings.Builder
	if days := d / day; days > 0 {
		b.WriteString(strconv.FormatInt(int64(days), 10))
		b.WriteByte('d')
	}
	if rest := d % day; rest > 0 {
		r := rest.String()
		if strings.HasSuffix(r, "m0s") {
			r = r[:len(r)-2]
		}
		if strings.HasSuffix(r, "h0m") {
			r = r[:len(r)-2]
		}
		b.WriteString(r)
	}
	return b.String()
}
