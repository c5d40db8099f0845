// Package web serves Pulse over HTTP: the JSON API (/api/accounts,
// /api/accounts/{id}, /api/accounts/{id}/history, /api/alerts,
// /api/portfolio), the status page for CSMs (/) with an HTML view per
// account (/accounts/{id}) and the portfolio (/portfolio), health and
// readiness probes, /metrics, POST /-/reload and POST /api/rules/preview.
//
// It never waits for the partitions: every answer is read from the
// snapshots the partitions the instance owns publish (engine.View),
// so it comes within a second whatever the sinks do, and says how stale it
// may be (X-Pulse-Snapshot-Age, and per account "snapshot_age_seconds").
// An account held by several partitions (its events were produced to more
// than one) is answered once, flagged with "split_partitions". Besides,
// the server keeps Recent, an engine.Sink that remembers each account's
// latest alert transitions in memory for the account view. The rules
// preview alone enters the partitions (Previewer), within a deadline.
package web

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"net/http/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/pulsehq/pulse/engine"
	"github.com/pulsehq/pulse/rules"
)

// Server is the HTTP front of one Pulse instance.
type Server struct {
	// View is what the server reads: the accounts of the partitions this
	// instance owns, as snapshots.
	View    engine.View
	Metrics http.Handler
	// Reload reloads the rules file; it returns why a bad file was refused
	// (the old rules stay). Nil disables POST /-/reload.
	Reload func() error
	// Snoozer silences an account's notifications; nil disables
	// /api/accounts/{id}/snooze.
	Snoozer Snoozer
	// MaxSnooze bounds a snooze, MaxSnoozes the accounts snoozed at once
	// (DefaultConfig's where 0).
	MaxSnooze  time.Duration
	MaxSnoozes int
	// Auth guards the routes; the zero value lets everyone in.
	Auth Auth
	// Pprof serves Go's profiler under /debug/pprof/ (to readers).
	Pprof bool
	// PreviewTimeout bounds POST /api/rules/preview (PreviewTimeout
	// where 0); the preview is served when Source is a Previewer.
	PreviewTimeout time.Duration
	// Recent holds the latest alert transitions for the account view; nil
	// leaves them out.
	Recent *Recent
	// Now is the wall clock the pages compare the partitions' clocks with;
	// nil means time.Now.
	Now func() time.Time
	Log *slog.Logger

	viewMu   sync.Mutex
	lastView *view
}

// Snoozer is the webhook sink's per-account snooze.
type Snoozer interface {
	Snooze(account string, until time.Time) error
	Snoozed(account string) time.Time
	// Snoozes returns the number of accounts snoozed now.
	Snoozes() int
}

// Handler returns the routes. Changes (POST, DELETE) are accepted only
// as Server.writing says; every other route but the probes needs the
// read credentials.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	if s.Metrics != nil {
		mux.Handle("GET /metrics", s.reading(s.Metrics.ServeHTTP))
	}
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	mux.HandleFunc("GET /readyz", s.readyz)
	mux.HandleFunc("GET /api/accounts", s.reading(s.accounts))
	mux.HandleFunc("GET /api/accounts/{id}", s.reading(s.account))
	mux.HandleFunc("GET /api/accounts/{id}/history", s.reading(s.history))
	mux.HandleFunc("GET /api/alerts", s.reading(s.alerts))
	mux.HandleFunc("GET /api/accounts/{id}/snooze", s.reading(s.snooze))
	mux.HandleFunc("POST /api/accounts/{id}/snooze", s.writing(s.snooze))
	mux.HandleFunc("DELETE /api/accounts/{id}/snooze", s.writing(s.snooze))
	mux.HandleFunc("POST /-/reload", s.writing(s.reload))
	mux.HandleFunc("POST /api/rules/preview", s.writingYAML(s.preview))
	mux.HandleFunc("GET /api/portfolio", s.reading(s.portfolioAPI))
	mux.HandleFunc("GET /portfolio", s.reading(s.portfolioPage))
	mux.HandleFunc("GET /{$}", s.reading(s.page))
	mux.HandleFunc("GET /accounts/{id}", s.reading(s.accountPage))
	if s.Pprof {
		// Go's profiler, for readers only when asked for: a profile
		// costs CPU, and a heap profile shows account ids.
		mux.HandleFunc("GET /debug/pprof/", s.reading(pprof.Index))
		mux.HandleFunc("GET /debug/pprof/profile", s.reading(pprof.Profile))
		mux.HandleFunc("GET /debug/pprof/trace", s.reading(pprof.Trace))
	}
	return mux
}

// snoozeRequest is the body of POST /api/accounts/{id}/snooze as JSON;
// a form or the query give the same fields.
type snoozeRequest struct {
	For   string `json:"for"`
	Until string `json:"until"`
}

// snooze reads (GET), sets (POST for=24h or until=RFC3339, in the query,
// a form or a JSON body) or clears (DELETE) an account's notification
// snooze. Only accounts the instance holds may be snoozed, for at most
// MaxSnooze, and at most MaxSnoozes at once.
func (s *Server) snooze(w http.ResponseWriter, r *http.Request) {
	if s.Snoozer == nil {
		http.Error(w, "no notifiers are configured", http.StatusNotFound)
		return
	}
	id := r.PathValue("id")
	var until time.Time
	switch r.Method {
	case http.MethodPost:
		if s.view(r.Context()).account(id) == nil {
			http.Error(w, fmt.Sprintf("no account %q on this instance", id), http.StatusNotFound)
			return
		}
		var req snoozeRequest
		if t, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); t == "application/json" {
			if err := json.NewDecoder(io.LimitReader(r.Body, 4096)).Decode(&req); err != nil && !errors.Is(err, io.EOF) {
				http.Error(w, "body: want {\"for\":\"24h\"} or {\"until\":\"RFC 3339 time\"}: "+err.Error(), http.StatusBadRequest)
				return
			}
		}
		if req.For == "" && req.Until == "" {
			req.For, req.Until = r.FormValue("for"), r.FormValue("until")
		}
		now := time.Now()
		if v := req.Until; v != "" {
			t, err := time.Parse(time.RFC3339, v)
			if err != nil || !t.After(now) {
				http.Error(w, fmt.Sprintf("until %q: want an RFC 3339 time in the future", v), http.StatusBadRequest)
				return
			}
			until = t
		} else {
			d, err := rules.ParseDuration(req.For)
			if err != nil || d <= 0 {
				http.Error(w, fmt.Sprintf("for %q: want a positive duration such as 24h or 7d (or until=RFC3339)", req.For), http.StatusBadRequest)
				return
			}
			until = now.Add(d)
		}
		limit := cmp.Or(s.MaxSnooze, DefaultConfig().MaxSnooze)
		if until.Sub(now) > limit {
			http.Error(w, fmt.Sprintf("a snooze lasts at most %s (http.max_snooze)", days(limit)), http.StatusBadRequest)
			return
		}
		if s.Snoozer.Snoozed(id).IsZero() && s.Snoozer.Snoozes() >= cmp.Or(s.MaxSnoozes, DefaultConfig().MaxSnoozes) {
			http.Error(w, fmt.Sprintf("%d accounts are snoozed already, the most there may be (http.max_snoozes)", s.Snoozer.Snoozes()), http.StatusTooManyRequests)
			return
		}
		if err := s.Snoozer.Snooze(id, until); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
	case http.MethodDelete:
		if err := s.Snoozer.Snooze(id, time.Time{}); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
	}
	until = s.Snoozer.Snoozed(id)
	w.Header().Set("Content-Type", "application/json")
	if until.IsZero() {
		fmt.Fprintf(w, "{\"account_id\":%s,\"snoozed_until\":null}\n", quote(id))
		return
	}
	fmt.Fprintf(w, "{\"account_id\":%s,\"snoozed_until\":%q}\n", quote(id), until.UTC().Format(time.RFC3339))
}

func (s *Server) readyz(w http.ResponseWriter, _ *http.Request) {
	if !s.View.Ready() {
		http.Error(w, "not ready: joining the group or restoring partitions", http.StatusServiceUnavailable)
		return
	}
	fmt.Fprintln(w, "ready")
}

func (s *Server) reload(w http.ResponseWriter, _ *http.Request) {
	if s.Reload == nil {
		http.Error(w, "reload is not configured", http.StatusNotFound)
		return
	}
	if err := s.Reload(); err != nil {
		http.Error(w, "rules not reloaded, the old rules stay in force:\n"+err.Error(), http.StatusBadRequest)
		return
	}
	fmt.Fprintln(w, "rules reloaded")
}

// maxOffset bounds the offset of a query.
const maxOffset = 1 << 40

// filter is the query of /api/accounts and the status page.
type filter struct {
	grade, depth, segment, csm, alert string
	limit, offset                     int
}

// parseFilter reads the filter of a request; limit is the page size when
// the request names none.
func parseFilter(r *http.Request, limit int) (filter, error) {
	q := r.URL.Query()
	f := filter{grade: q.Get("grade"), depth: q.Get("depth"), segment: q.Get("segment"), csm: q.Get("csm"), alert: q.Get("alert"), limit: limit}
	if _, ok := rules.GradeByName(f.grade); f.grade != "" && !ok {
		return f, fmt.Errorf("grade %q: want %s", f.grade, oneOf(gradeNames()))
	}
	if _, ok := rules.DepthByName(f.depth); f.depth != "" && !ok {
		return f, fmt.Errorf("depth %q: want %s", f.depth, oneOf(enumNames[rules.Depth](rules.NumDepths)))
	}
	for name, dst := range map[string]*int{"limit": &f.limit, "offset": &f.offset} {
		if v := q.Get(name); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil || n < 0 {
				return f, fmt.Errorf("%s %q: want a whole number ≥ 0", name, v)
			}
			*dst = n
		}
	}
	f.limit = min(f.limit, 1000)
	// No list is that long, and offset + limit must not overflow.
	f.offset = min(f.offset, maxOffset)
	return f, nil
}

func (f filter) match(s *engine.AccountState) bool {
	return (f.grade == "" || s.Grade.String() == f.grade) &&
		(f.depth == "" || s.Depth.String() == f.depth) &&
		(f.segment == "" || s.Attrs[rules.Segment] == f.segment) &&
		(f.csm == "" || s.Attrs[rules.CSM] == f.csm) &&
		(f.alert == "" || slices.Contains(s.Alerts, f.alert))
}

// gradeRank orders the grades riskiest first: red, yellow, green (the
// grades run worst to best after GradeNone), then no grade.
func gradeRank(g rules.Grade) int {
	if g == rules.GradeNone {
		return rules.NumGrades
	}
	return int(g)
}

// gradeNames are the grades' names, riskiest first.
func gradeNames() []string {
	names := make([]string, rules.NumGrades)
	for g := range rules.NumGrades {
		names[gradeRank(rules.Grade(g))-1] = rules.Grade(g).String()
	}
	return names
}

// enumNames lists the names of an enum's n values, in value order.
func enumNames[E interface {
	~uint8
	fmt.Stringer
}](n int) []string {
	names := make([]string, n)
	for v := range n {
		names[v] = E(v).String()
	}
	return names
}

// oneOf lists names as "a, b or c".
func oneOf(names []string) string {
	if len(names) < 2 {
		return strings.Join(names, "")
	}
	return strings.Join(names[:len(names)-1], ", ") + " or " + names[len(names)-1]
}

// riskOrder puts the riskiest first: red, yellow, green, then no grade;
// within a grade the lowest score; then the account id.
func riskOrder(a, b *engine.AccountState) int {
	score := func(s *engine.AccountState) float64 {
		if !rules.IsFinite(s.Score) {
			return 1e9
		}
		return s.Score
	}
	return cmp.Or(cmp.Compare(gradeRank(a.Grade), gradeRank(b.Grade)), cmp.Compare(score(a), score(b)), cmp.Compare(a.AccountID, b.AccountID))
}

func (s *Server) accounts(w http.ResponseWriter, r *http.Request) {
	f, err := parseFilter(r, 100)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	v := s.view(r.Context())
	now := s.now()
	var page []*engine.MergedAccount
	total := 0
	for i := range v.accounts {
		if !f.match(&v.accounts[i].State) {
			continue
		}
		if total >= f.offset && len(page) < f.limit {
			page = append(page, &v.accounts[i])
		}
		total++
	}
	setStaleness(w, now, v.snaps)
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Total-Count", strconv.Itoa(total))
	b := []byte{'['}
	for i, a := range page {
		if i > 0 {
			b = append(b, ",\n"...)
		}
		b = appendAccountJSON(b, now, a)
	}
	w.Write(append(b, "]\n"...))
}

func (s *Server) account(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	v := s.view(r.Context())
	now := s.now()
	setStaleness(w, now, v.snaps)
	a := v.account(id)
	if a == nil {
		http.Error(w, fmt.Sprintf("no account %q on this instance", id), http.StatusNotFound)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Write(append(appendAccountJSON(nil, now, a), '\n'))
}

// alertView is one firing alert in /api/alerts.
type alertView struct {
	engine.FiringAlert
	severity rules.Severity
	kind     rules.Kind
	account  *engine.MergedAccount
}

// firing lists the firing alerts of the rules in force, most severe first.
// Only the record the view keeps of a split account counts.
func (s *Server) firing(v *view) []alertView {
	rs := s.View.Rules()
	var out []alertView
	for _, snap := range v.snaps {
		for _, fa := range snap.Firing {
			a := v.account(fa.AccountID)
			if a == nil || a.Snapshot != snap {
				continue // the other record of a split account
			}
			rule := alertRule(rs, fa.Rule)
			if rule == nil {
				continue // a rule a reload removed
			}
			out = append(out, alertView{FiringAlert: fa, severity: rule.Severity, kind: rule.Kind, account: a})
		}
	}
	slices.SortFunc(out, func(a, b alertView) int {
		return cmp.Or(cmp.Compare(b.severity, a.severity), cmp.Compare(a.Since, b.Since), cmp.Compare(a.AccountID, b.AccountID), cmp.Compare(a.Rule, b.Rule))
	})
	return out
}

func (s *Server) alerts(w http.ResponseWriter, r *http.Request) {
	v := s.view(r.Context())
	now := s.now()
	list := s.firing(v)
	setStaleness(w, now, v.snaps)
	w.Header().Set("Content-Type", "application/json")
	b := []byte{'['}
	for i, a := range list {
		if i > 0 {
			b = append(b, ",\n"...)
		}
		st := &a.account.State
		b = fmt.Appendf(b, `{"alert_id":%q,"account_id":%s,"rule":%q,"state":"firing","severity":%q,"kind":%q,"since":%q`,
			a.ID, quote(a.AccountID), a.Rule, a.severity, a.kind, time.Unix(0, a.Since).UTC().Format(time.RFC3339Nano))
		b = fmt.Appendf(b, `,"score":%s,"grade":%q,"csm":%s,"segment":%s,"partition":%d,"snapshot_age_seconds":%s}`,
			number(st.Score), st.Grade, quote(st.Attrs[rules.CSM]), quote(st.Attrs[rules.Segment]), a.account.Snapshot.Partition, seconds(age(now, a.account.Snapshot)))
	}
	w.Write(append(b, "]\n"...))
}

func quote(s string) string { return strconv.Quote(strings.ToValidUTF8(s, "\uFFFD")) }

// number writes v with two decimals, or null where it is not finite.
func number(v float64) string {
	if !rules.IsFinite(v) {
		return "null"
	}
	return strconv.FormatFloat(v, 'f', 2, 64)
}

// days writes a duration in whole days where it is some (90d), else as Go does.
func days(d time.Duration) string {
	if d >= 24*time.Hour && d%(24*time.Hour) == 0 {
		return strconv.Itoa(int(d/(24*time.Hour))) + "d"
	}
	return d.String()
}
