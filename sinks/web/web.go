// Package web serves Pulse over HTTP: the JSON API (/api/accounts,
// /api/accounts/{id}, /api/accounts/{id}/history, /api/alerts), the status
// page for CSMs (/) with an HTML view per account (/accounts/{id}), health
// and readiness probes, /metrics, and POST /-/reload.
//
// It holds no copy of the account states: every request asks the partitions
// the instance owns (through Source, in their own goroutines), so answers
// are current and the hot path takes no lock. The one thing it keeps is
// Recent, an engine.Sink that remembers each account's latest alert
// transitions in memory for the account view.
package web

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/pprof"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/pulsehq/pulse/engine"
	"github.com/pulsehq/pulse/rules"
)

// Source is what the server reads: the partitions this instance owns.
type Source interface {
	Do(ctx context.Context, fn func(*engine.Partition)) error
	Ready() bool
	Rules() *rules.Ruleset
}

// Server is the HTTP front of one Pulse instance.
type Server struct {
	Source  Source
	Metrics http.Handler
	// Reload reloads the rules file; it returns why a bad file was refused
	// (the old rules stay). Nil disables POST /-/reload.
	Reload func() error
	// Snoozer silences an account's notifications; nil disables
	// /api/accounts/{id}/snooze.
	Snoozer Snoozer
	// Recent holds the latest alert transitions for the account view; nil
	// leaves them out.
	Recent *Recent
	// Now is the wall clock the pages compare the partitions' clocks with;
	// nil means time.Now.
	Now func() time.Time
	Log *slog.Logger
}

// Snoozer is the webhook sink's per-account snooze.
type Snoozer interface {
	Snooze(account string, until time.Time) error
	Snoozed(account string) time.Time
}

// Handler returns the routes.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	if s.Metrics != nil {
		mux.Handle("GET /metrics", s.Metrics)
	}
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	mux.HandleFunc("GET /readyz", s.readyz)
	mux.HandleFunc("GET /api/accounts", s.accounts)
	mux.HandleFunc("GET /api/accounts/{id}", s.account)
	mux.HandleFunc("GET /api/accounts/{id}/history", s.history)
	mux.HandleFunc("GET /api/alerts", s.alerts)
	mux.HandleFunc("GET /api/accounts/{id}/snooze", s.snooze)
	mux.HandleFunc("POST /api/accounts/{id}/snooze", s.snooze)
	mux.HandleFunc("DELETE /api/accounts/{id}/snooze", s.snooze)
	mux.HandleFunc("POST /-/reload", s.reload)
	mux.HandleFunc("GET /{$}", s.page)
	mux.HandleFunc("GET /accounts/{id}", s.accountPage)
	// Go's profiler, as Prometheus and most Go daemons serve it: bind
	// listen to a private address.
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	return mux
}

// snooze reads (GET), sets (POST ?for=24h or ?until=RFC3339) or clears
// (DELETE) an account's notification snooze.
func (s *Server) snooze(w http.ResponseWriter, r *http.Request) {
	if s.Snoozer == nil {
		http.Error(w, "no notifiers are configured", http.StatusNotFound)
		return
	}
	id := r.PathValue("id")
	var until time.Time
	switch r.Method {
	case http.MethodPost:
		q := r.URL.Query()
		if v := q.Get("until"); v != "" {
			t, err := time.Parse(time.RFC3339, v)
			if err != nil {
				http.Error(w, fmt.Sprintf("until %q: want an RFC 3339 time", v), http.StatusBadRequest)
				return
			}
			until = t
		} else {
			d, err := rules.ParseDuration(q.Get("for"))
			if err != nil || d <= 0 {
				http.Error(w, fmt.Sprintf("for %q: want a positive duration such as 24h or 7d (or until=RFC3339)", q.Get("for")), http.StatusBadRequest)
				return
			}
			until = time.Now().Add(d)
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
	if !s.Source.Ready() {
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
	if f.grade != "" && !slices.Contains([]string{"red", "yellow", "green", "none"}, f.grade) {
		return f, fmt.Errorf("grade %q: want red, yellow, green or none", f.grade)
	}
	if f.depth != "" && !slices.Contains([]string{"none", "record", "process", "integration", "custom"}, f.depth) {
		return f, fmt.Errorf("depth %q: want none, record, process, integration or custom", f.depth)
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
	return f, nil
}

func (f filter) match(s *engine.AccountState) bool {
	return (f.grade == "" || s.Grade.String() == f.grade) &&
		(f.depth == "" || s.Depth.String() == f.depth) &&
		(f.segment == "" || s.Attrs[rules.Segment] == f.segment) &&
		(f.csm == "" || s.Attrs[rules.CSM] == f.csm) &&
		(f.alert == "" || slices.Contains(s.Alerts, f.alert))
}

// riskOrder puts the riskiest first: red, yellow, green, then no grade;
// within a grade the lowest score; then the account id.
func riskOrder(a, b *engine.AccountState) int {
	rank := func(g rules.Grade) int { return [...]int{3, 0, 1, 2}[g] }
	score := func(s *engine.AccountState) float64 {
		if rules.IsNull(s.Score) {
			return 1e9
		}
		return s.Score
	}
	return cmp.Or(cmp.Compare(rank(a.Grade), rank(b.Grade)), cmp.Compare(score(a), score(b)), cmp.Compare(a.AccountID, b.AccountID))
}

// query collects the matching states, riskiest first.
func (s *Server) query(ctx context.Context, f filter) ([]*engine.AccountState, error) {
	var out []*engine.AccountState
	err := s.Source.Do(ctx, func(p *engine.Partition) {
		p.States(func(st *engine.AccountState) {
			if f.match(st) {
				c := *st
				out = append(out, &c)
			}
		})
	})
	slices.SortFunc(out, riskOrder)
	return out, err
}

func (s *Server) accounts(w http.ResponseWriter, r *http.Request) {
	f, err := parseFilter(r, 100)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	all, err := s.query(r.Context(), f)
	if err != nil {
		http.Error(w, err.Error(), http.StatusServiceUnavailable)
		return
	}
	page := all[min(f.offset, len(all)):min(f.offset+f.limit, len(all))]
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Total-Count", strconv.Itoa(len(all)))
	b := []byte{'['}
	for i, st := range page {
		if i > 0 {
			b = append(b, ",\n"...)
		}
		b = st.AppendJSON(b)
	}
	w.Write(append(b, "]\n"...))
}

func (s *Server) account(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	var found *engine.AccountState
	err := s.Source.Do(r.Context(), func(p *engine.Partition) {
		if st, ok := p.State(id); ok {
			found = &st
		}
	})
	if err != nil {
		http.Error(w, err.Error(), http.StatusServiceUnavailable)
		return
	}
	if found == nil {
		http.Error(w, fmt.Sprintf("no account %q on this instance", id), http.StatusNotFound)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Write(append(found.AppendJSON(nil), '\n'))
}

// alertView is one firing alert in /api/alerts.
type alertView struct {
	engine.FiringAlert
	severity rules.Severity
	kind     rules.Kind
	state    *engine.AccountState
}

func (s *Server) firing(ctx context.Context) ([]alertView, error) {
	rs := s.Source.Rules()
	var out []alertView
	err := s.Source.Do(ctx, func(p *engine.Partition) {
		p.Firing(func(fa engine.FiringAlert) {
			v := alertView{FiringAlert: fa}
			for _, a := range rs.Alerts {
				if a.Name == fa.Rule {
					v.severity, v.kind = a.Severity, a.Kind
				}
			}
			if st, ok := p.State(fa.AccountID); ok {
				v.state = &st
			}
			out = append(out, v)
		})
	})
	slices.SortFunc(out, func(a, b alertView) int {
		return cmp.Or(cmp.Compare(b.severity, a.severity), cmp.Compare(a.Since, b.Since), cmp.Compare(a.AccountID, b.AccountID), cmp.Compare(a.Rule, b.Rule))
	})
	return out, err
}

func (s *Server) alerts(w http.ResponseWriter, r *http.Request) {
	list, err := s.firing(r.Context())
	if err != nil {
		http.Error(w, err.Error(), http.StatusServiceUnavailable)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	b := []byte{'['}
	for i, a := range list {
		if i > 0 {
			b = append(b, ",\n"...)
		}
		b = fmt.Appendf(b, `{"alert_id":%q,"account_id":%s,"rule":%q,"state":"firing","severity":%q,"kind":%q,"since":%q`,
			a.ID, quote(a.AccountID), a.Rule, a.severity, a.kind, time.Unix(0, a.Since).UTC().Format(time.RFC3339Nano))
		if a.state != nil {
			b = fmt.Appendf(b, `,"score":%s,"grade":%q,"csm":%s,"segment":%s`, number(a.state.Score), a.state.Grade, quote(a.state.Attrs[rules.CSM]), quote(a.state.Attrs[rules.Segment]))
		}
		b = append(b, '}')
	}
	w.Write(append(b, "]\n"...))
}

func quote(s string) string { return strconv.Quote(strings.ToValidUTF8(s, "\uFFFD")) }

func number(v float64) string {
	if rules.IsNull(v) {
		return "null"
	}
	return strconv.FormatFloat(v, 'f', 2, 64)
}
