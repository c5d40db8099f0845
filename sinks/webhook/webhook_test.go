package webhook

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/pulsehq/pulse/engine"
	"github.com/pulsehq/pulse/rules"
)

// receiver records what it is sent, and can answer with a scripted status
// first. newReceiver serves it on a real HTTP server; localNet.receiver
// in process, for tests in a synctest bubble.
type receiver struct {
	URL      string
	mu       sync.Mutex
	requests []request
	script   []func(w http.ResponseWriter) // answers for the first requests
	calls    atomic.Int32
	arrived  chan struct{} // a request was recorded
}

type request struct {
	path    string
	headers http.Header
	body    []byte
	at      time.Time
}

func newRecorder() *receiver { return &receiver{arrived: make(chan struct{}, 1)} }

func newReceiver(t *testing.T) *receiver {
	r := newRecorder()
	srv := httptest.NewServer(r)
	t.Cleanup(srv.Close)
	r.URL = srv.URL
	return r
}

func (r *receiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	body, _ := io.ReadAll(req.Body)
	n := int(r.calls.Add(1)) - 1
	r.mu.Lock()
	var answer func(http.ResponseWriter)
	if n < len(r.script) {
		answer = r.script[n]
	}
	r.mu.Unlock()
	if answer != nil {
		answer(w)
		return
	}
	r.mu.Lock()
	r.requests = append(r.requests, request{req.URL.Path, req.Header.Clone(), body, time.Now()})
	r.mu.Unlock()
	select {
	case r.arrived <- struct{}{}:
	default:
	}
}

func (r *receiver) got() []request {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]request(nil), r.requests...)
}

// waitFor waits up to 10 s for n requests.
func (r *receiver) waitFor(t *testing.T, n int) []request {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for len(r.got()) < n {
		select {
		case <-r.arrived:
		case <-timeout:
			t.Fatalf("received %d requests, want %d", len(r.got()), n)
		}
	}
	return r.got()
}

// eventually waits up to 5 s for ok, checking every 5 ms.
func eventually(t *testing.T, what string, ok func() bool) {
	t.Helper()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	timeout := time.After(5 * time.Second)
	for !ok() {
		select {
		case <-tick.C:
		case <-timeout:
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// localNet carries a sink's requests to handlers in process, by host,
// with no socket: in a synctest bubble a goroutine waiting on a socket
// would keep the fake clock from moving. A handler that blocks must end
// when its request's context does, as a server's connection would.
type localNet struct {
	mu    sync.Mutex
	hosts map[string]http.Handler
}

// handle serves h at a new host and returns its URL.
func (l *localNet) handle(h http.Handler) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.hosts == nil {
		l.hosts = map[string]http.Handler{}
	}
	host := fmt.Sprintf("receiver-%d.test", len(l.hosts)+1)
	l.hosts[host] = h
	return "http://" + host
}

// receiver returns a receiver served by l.
func (l *localNet) receiver() *receiver {
	r := newRecorder()
	r.URL = l.handle(r)
	return r
}

// client is the http.Client a sink reaches l's handlers with.
func (l *localNet) client() *http.Client {
	return &http.Client{Transport: l, Timeout: 10 * time.Second}
}

func (l *localNet) RoundTrip(req *http.Request) (*http.Response, error) {
	l.mu.Lock()
	h := l.hosts[req.URL.Host]
	l.mu.Unlock()
	if h == nil {
		return nil, fmt.Errorf("no receiver at %s", req.URL.Host)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if err := req.Context().Err(); err != nil {
		return nil, err // cut off, as a closed connection is
	}
	return rec.Result(), nil
}

// idle lets d of the bubble's fake time pass (taking no real time) and
// returns once every goroutine of the bubble waits: whatever the sink was
// going to do within d is done.
func idle(d time.Duration) {
	time.Sleep(d) // fake time (synctest): the clock jumps
	synctest.Wait()
}

func transition(account, rule string, state rules.Phase, sev rules.Severity, csm string) rules.Transition {
	tr := rules.Transition{
		ID: rules.AlertID(account, rule, 1), AccountID: account, Rule: rule, State: state, Severity: sev,
		Ts: time.Date(2026, 11, 20, 9, 0, 0, 0, time.UTC).UnixNano(), Score: 31.5, Grade: rules.GradeRed,
		Values:  []rules.NamedValue{{Name: "login_ratio_7d", Value: 0.12}, {Name: "activated_users", Value: 14}},
		Message: "Only 12% of activated users log in on a typical day",
		Factors: []rules.FactorResult{
			{Name: "engagement", Metric: rules.LoginRatio7d, Value: 0.12, Points: 17.5, Weight: 3},
			{Name: "activation", Metric: rules.ActivationRate, Value: 0.9, Points: 100, Weight: 3},
			{Name: "trend", Metric: rules.UsageChange7d, Value: -0.3, Points: 28, Weight: 2},
		},
	}
	tr.Attrs[rules.CSM], tr.Attrs[rules.Segment] = csm, "strategic"
	return tr
}

func notifier(name, typ, url string, f func(*rules.Notifier)) rules.Notifier {
	n := rules.Notifier{Name: name, Type: typ, URL: url, SendResolved: true}
	if f != nil {
		f(&n)
	}
	return n
}

func newSink(t *testing.T, cfg Config) *Sink {
	t.Helper()
	if cfg.GroupWait == 0 {
		cfg.GroupWait = 50 * time.Millisecond
	}
	cfg.Log = slog.New(slog.NewTextHandler(io.Discard, nil))
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		s.Close(ctx)
	})
	return s
}

func write(s *Sink, ts ...rules.Transition) {
	s.Write(context.Background(), &engine.Batch{Transitions: ts})
}

func TestRoutingPayloadsSignatureAndIdempotency(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var local localNet
		rcv := local.receiver()
		s := newSink(t, Config{Client: local.client(), PublicURL: "http://pulse.example:8080", Notifiers: []rules.Notifier{
			notifier("slack-high", "slack", rcv.URL+"/slack", func(n *rules.Notifier) {
				n.Match = []rules.Match{{Key: "severity", Values: []string{"high"}}}
			}),
			notifier("teams-li", "teams", rcv.URL+"/teams", func(n *rules.Notifier) {
				n.Match = []rules.Match{{Key: "csm", Values: []string{"li"}}}
				n.SendResolved = false
			}),
			notifier("generic", "webhook", rcv.URL+"/generic", func(n *rules.Notifier) { n.Secret = "s3cret" }),
		}})
		high := transition("acme", "churn_risk", rules.PhaseFiring, rules.SeverityHigh, "li")
		low := transition("beta", "gone_silent", rules.PhaseFiring, rules.SeverityLow, "sam")
		resolved := transition("acme", "churn_risk", rules.PhaseResolved, rules.SeverityHigh, "li")
		write(s, high, low)
		write(s, resolved)
		// slack: high firing + its resolve (grouped: same owner) = 1 message;
		// teams (li, no resolved): high = 1; generic: 3.
		reqs := rcv.waitFor(t, 5)
		idle(time.Minute) // and no more
		byPath := map[string][]request{}
		for _, r := range rcv.got() {
			byPath[r.path] = append(byPath[r.path], r)
		}
		if len(byPath["/slack"]) != 1 || len(byPath["/teams"]) != 1 || len(byPath["/generic"]) != 3 {
			t.Fatalf("deliveries: slack %d, teams %d, generic %d (of %d)", len(byPath["/slack"]), len(byPath["/teams"]), len(byPath["/generic"]), len(reqs))
		}

		var slack struct {
			Text   string           `json:"text"`
			Blocks []map[string]any `json:"blocks"`
		}
		if err := json.Unmarshal(byPath["/slack"][0].body, &slack); err != nil {
			t.Fatal(err)
		}
		body := string(byPath["/slack"][0].body)
		for _, want := range []string{"acme — churn_risk (high, firing)", "acme — churn_risk (high, resolved)", "*Score* 31.5 (red)", "owner li",
			"login_ratio_7d = 0.12", "*Costs most* engagement 17.5/100 (×3), trend 28/100 (×2)", "http://pulse.example:8080/accounts/acme"} {
			if !strings.Contains(body, want) {
				t.Errorf("slack message lacks %q:\n%s", want, body)
			}
		}
		if slack.Blocks[0]["type"] != "header" || len(slack.Blocks) != 6 {
			t.Errorf("slack blocks: %v", slack.Blocks)
		}
		var card map[string]any
		json.Unmarshal(byPath["/teams"][0].body, &card)
		if card["@type"] != "MessageCard" || card["themeColor"] != "D70000" || !strings.Contains(string(byPath["/teams"][0].body), `"name":"Owner","value":"li"`) {
			t.Errorf("teams card: %s", byPath["/teams"][0].body)
		}

		for _, r := range byPath["/generic"] {
			var tr map[string]any
			if err := json.Unmarshal(r.body, &tr); err != nil {
				t.Fatalf("generic body: %v: %s", err, r.body)
			}
			if want := tr["alert_id"].(string) + ":" + tr["state"].(string); r.headers.Get("Idempotency-Key") != want {
				t.Errorf("Idempotency-Key %q, want %q", r.headers.Get("Idempotency-Key"), want)
			}
			mac := hmac.New(sha256.New, []byte("s3cret"))
			mac.Write(r.body)
			if r.headers.Get("X-Pulse-Signature") != "sha256="+hex.EncodeToString(mac.Sum(nil)) {
				t.Errorf("bad signature %q", r.headers.Get("X-Pulse-Signature"))
			}
			if tr["account_url"] == nil || len(tr["top_negative_factors"].([]any)) != 2 {
				t.Errorf("generic payload lacks the why: %s", r.body)
			}
		}
		if byPath["/slack"][0].headers.Get("X-Pulse-Signature") != "" {
			t.Error("signed without a secret")
		}
	})
}

func TestRetriesHonour429AndRetryAfter(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var local localNet
		rcv := local.receiver()
		began := time.Now()
		rcv.script = []func(http.ResponseWriter){
			func(w http.ResponseWriter) { w.WriteHeader(http.StatusServiceUnavailable) },
			func(w http.ResponseWriter) {
				w.Header().Set("Retry-After", "1")
				w.WriteHeader(http.StatusTooManyRequests)
			},
		}
		var outcomes sync.Map
		s := newSink(t, Config{Client: local.client(), Notifiers: []rules.Notifier{notifier("g", "webhook", rcv.URL, nil)},
			Counted: func(_, o string) { v, _ := outcomes.LoadOrStore(o, new(atomic.Int32)); v.(*atomic.Int32).Add(1) }})
		write(s, transition("acme", "gone_dark", rules.PhaseFiring, rules.SeverityHigh, "li"))
		reqs := rcv.waitFor(t, 1)
		if rcv.calls.Load() != 3 || reqs[0].at.Sub(began) < time.Second {
			t.Fatalf("%d calls; delivered after %v (Retry-After: 1 not honoured?)", rcv.calls.Load(), reqs[0].at.Sub(began))
		}
		// The receiver has the request before the sink reads its answer.
		sent := func() int32 {
			v, _ := outcomes.Load("sent")
			if v == nil {
				return 0
			}
			return v.(*atomic.Int32).Load()
		}
		eventually(t, "the delivery to be counted", func() bool { return sent() > 0 })
		if n := sent(); n != 1 {
			t.Fatalf("counted as sent %d times, want once", n)
		}

		// A 4xx other than 429 is not retried.
		rcv2 := local.receiver()
		rcv2.script = []func(http.ResponseWriter){func(w http.ResponseWriter) { w.WriteHeader(http.StatusBadRequest) }}
		s2 := newSink(t, Config{Client: local.client(), Notifiers: []rules.Notifier{notifier("g", "webhook", rcv2.URL, nil)}})
		write(s2, transition("acme", "gone_dark", rules.PhaseFiring, rules.SeverityHigh, "li"))
		idle(time.Hour) // past every backoff
		if rcv2.calls.Load() != 1 {
			t.Fatalf("a 400 was retried: %d calls", rcv2.calls.Load())
		}
	})
}

// A burst for one owner is one message; another owner gets their own.
func TestBurstForOneOwnerIsOneMessage(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var local localNet
		rcv := local.receiver()
		s := newSink(t, Config{Client: local.client(), GroupWait: time.Second, Notifiers: []rules.Notifier{notifier("slack", "slack", rcv.URL, nil)}})
		write(s, transition("a1", "churn_risk", rules.PhaseFiring, rules.SeverityHigh, "li"))
		write(s, transition("a2", "churn_risk", rules.PhaseFiring, rules.SeverityHigh, "li"), transition("b1", "usage_drop", rules.PhaseFiring, rules.SeverityHigh, "sam"))
		write(s, transition("a3", "gone_dark", rules.PhaseFiring, rules.SeverityHigh, "li"))
		reqs := rcv.waitFor(t, 2)
		idle(time.Minute) // past another group_wait
		if len(rcv.got()) != 2 {
			t.Fatalf("%d messages, want 2", len(rcv.got()))
		}
		for _, r := range reqs {
			n := strings.Count(string(r.body), `"type":"header"`)
			if strings.Contains(string(r.body), "owner li") != (n == 3) {
				t.Fatalf("li's burst is not one message of 3 (%d headers)", n)
			}
		}
	})
}

// Deliveries survive a restart: transitions re-emitted after a crash (same
// ids) are not sent again; snoozes survive too.
func TestDedupAndSnoozeAcrossRestart(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var local localNet
		rcv := local.receiver()
		state := filepath.Join(t.TempDir(), "webhook.state")
		cfg := Config{Client: local.client(), StateFile: state, Notifiers: []rules.Notifier{notifier("g", "webhook", rcv.URL, nil)}}
		first := transition("acme", "churn_risk", rules.PhaseFiring, rules.SeverityHigh, "li")
		s := newSink(t, cfg)
		write(s, first)
		rcv.waitFor(t, 1)
		synctest.Wait() // the delivery recorded
		if err := s.Snooze("snoozed account", time.Now().Add(time.Hour)); err != nil {
			t.Fatal(err)
		}
		s.Close(context.Background())

		again := newSink(t, cfg)
		write(again, first) // re-emitted after a restart
		write(again, transition("snoozed account", "gone_dark", rules.PhaseFiring, rules.SeverityHigh, "li"))
		write(again, transition("other", "gone_dark", rules.PhaseFiring, rules.SeverityHigh, "li"))
		reqs := rcv.waitFor(t, 2)
		idle(time.Minute) // and no more
		if len(rcv.got()) != 2 || !strings.Contains(string(reqs[1].body), `"account_id":"other"`) {
			t.Fatalf("after restart: %d deliveries, last %s", len(rcv.got()), reqs[len(reqs)-1].body)
		}
		if again.Snoozed("snoozed account").IsZero() {
			t.Fatal("snooze lost across restart")
		}
	})
}

// A blocked receiver never blocks Write: the bounded queue drops and counts.
func TestFullQueueDropsWithoutBlocking(t *testing.T) {
	block := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { <-block }))
	t.Cleanup(func() { close(block); srv.Close() })
	var dropped atomic.Int32
	s := newSink(t, Config{QueueSize: 2, Notifiers: []rules.Notifier{notifier("g", "webhook", srv.URL, nil)},
		Counted: func(_, o string) {
			if o == "dropped_queue_full" {
				dropped.Add(1)
			}
		}})
	began := time.Now()
	for i := range 20 {
		write(s, transition("acct-"+string(rune('a'+i)), "gone_dark", rules.PhaseFiring, rules.SeverityHigh, "li"))
	}
	// A blocked Write would wait for the receiver, which never answers.
	if took := time.Since(began); took > 2*time.Second {
		t.Fatalf("Write blocked for %v", took)
	}
	if dropped.Load() < 15 {
		t.Fatalf("%d dropped, want ≥ 15 of 20 with one busy worker and a queue of 2", dropped.Load())
	}
}

func TestRepeatIntervalUntilResolved(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var local localNet
		rcv := local.receiver()
		s := newSink(t, Config{Client: local.client(), Notifiers: []rules.Notifier{notifier("g", "webhook", rcv.URL, func(n *rules.Notifier) { n.RepeatInterval = 300 * time.Millisecond })}})
		write(s, transition("acme", "gone_dark", rules.PhaseFiring, rules.SeverityHigh, "li"))
		reqs := rcv.waitFor(t, 3) // the transition and two reminders
		if !strings.Contains(string(reqs[1].body), `"repeat":1`) || reqs[1].headers.Get("Idempotency-Key") == reqs[0].headers.Get("Idempotency-Key") {
			t.Fatalf("reminder: %s", reqs[1].body)
		}
		write(s, transition("acme", "gone_dark", rules.PhaseResolved, rules.SeverityHigh, "li"))
		idle(0) // a reminder queued just before may still arrive
		n := len(rcv.got())
		idle(time.Hour)
		if len(rcv.got()) != n {
			t.Fatal("reminders continued after the alert resolved")
		}
	})
}

// Receivers answer with a body (Slack's is "ok"); reading it to the end
// lets one connection carry every delivery instead of a new one each.
func TestDeliveriesReuseTheConnection(t *testing.T) {
	var conns, posts atomic.Int32
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		posts.Add(1)
		io.WriteString(w, "ok")
	}))
	srv.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	t.Cleanup(srv.Close)
	s := newSink(t, Config{Notifiers: []rules.Notifier{notifier("g", "webhook", srv.URL, nil)}})
	const n = 5
	for i := range n {
		write(s, transition("acct-"+string(rune('a'+i)), "gone_dark", rules.PhaseFiring, rules.SeverityHigh, "li"))
		eventually(t, fmt.Sprintf("delivery %d", i+1), func() bool { return posts.Load() >= int32(i+1) })
	}
	if c := conns.Load(); c != 1 {
		t.Fatalf("%d deliveries opened %d connections, want 1", n, c)
	}
}

// Transitions an inhibiting alert suppresses are counted, never sent.
func TestSuppressedTransitionsAreNotSent(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var local localNet
		rcv := local.receiver()
		var suppressed atomic.Int32
		s := newSink(t, Config{Client: local.client(), Notifiers: []rules.Notifier{notifier("g", "webhook", rcv.URL, nil)},
			Counted: func(_, o string) {
				if o == "suppressed" {
					suppressed.Add(1)
				}
			}})
		quiet := transition("acme", "quiet", rules.PhaseFiring, rules.SeverityLow, "li")
		quiet.Suppressed = true
		write(s, quiet, transition("acme", "gone_dark", rules.PhaseFiring, rules.SeverityHigh, "li"))
		reqs := rcv.waitFor(t, 1)
		idle(time.Minute) // and no more
		if got := rcv.got(); len(got) != 1 || !strings.Contains(string(reqs[0].body), `"rule":"gone_dark"`) {
			t.Fatalf("%d deliveries, first %s", len(got), reqs[0].body)
		}
		if suppressed.Load() != 1 {
			t.Fatalf("suppressed counted %d times, want 1", suppressed.Load())
		}
	})
}
