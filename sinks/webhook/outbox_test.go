package webhook

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/pulsehq/pulse/rules"
)

// hanging answers nothing until the test ends or the request is given
// up; it counts requests.
func hanging(t *testing.T) (http.Handler, *atomic.Int32) {
	var calls atomic.Int32
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	return http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}), &calls
}

// hangingServer serves hanging on a real HTTP server.
func hangingServer(t *testing.T) (*httptest.Server, *atomic.Int32) {
	srv := httptest.NewUnstartedServer(nil)
	t.Cleanup(srv.Close) // after the release: Close waits for the handlers
	h, calls := hanging(t)
	srv.Config.Handler = h
	srv.Start()
	return srv, calls
}

// counter counts outcomes by name.
type counter struct{ m sync.Map }

func (c *counter) count(_, outcome string) {
	v, _ := c.m.LoadOrStore(outcome, new(atomic.Int32))
	v.(*atomic.Int32).Add(1)
}

func (c *counter) get(outcome string) int32 {
	v, _ := c.m.Load(outcome)
	if v == nil {
		return 0
	}
	return v.(*atomic.Int32).Load()
}

// What Write accepted is in the outbox on disk once Flush returns — while
// the receiver is down, without waiting for it — and the next start sends
// it: a Slack message that was being tried goes out again as it was, with
// its Idempotency-Key.
func TestOutboxIsSentAfterRestart(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var local localNet
		hang, calls := hanging(t)
		downURL := local.handle(hang)
		state := filepath.Join(t.TempDir(), "webhook.state")
		notifiers := func(url string) []rules.Notifier {
			return []rules.Notifier{notifier("g", "webhook", url+"/generic", nil), notifier("slack", "slack", url+"/slack", nil)}
		}
		s, err := New(Config{Client: local.client(), StateFile: state, GroupWait: 10 * time.Millisecond, Notifiers: notifiers(downURL)})
		if err != nil {
			t.Fatal(err)
		}
		write(s, transition("a1", "churn_risk", rules.PhaseFiring, rules.SeverityHigh, "li"), transition("a2", "gone_dark", rules.PhaseFiring, rules.SeverityHigh, "li"))
		write(s, transition("a3", "churn_risk", rules.PhaseFiring, rules.SeverityHigh, "sam"))
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := s.Flush(ctx); err != nil {
			t.Fatalf("Flush: %v", err)
		}
		data, _ := os.ReadFile(state)
		n := 0
		for _, line := range strings.Split(string(data), "\n") {
			if strings.HasPrefix(line, "out ") {
				n++
			}
		}
		if n != 6 {
			t.Fatalf("the state file holds %d outbox records, want 6 (3 transitions × 2 notifiers):\n%.300s", n, data)
		}
		eventually(t, "both notifiers trying", func() bool { return calls.Load() >= 2 })
		stopNow, stop := context.WithCancel(context.Background())
		stop()
		s.Close(stopNow) // requests in flight are cut off

		rcv := local.receiver()
		again := newSink(t, Config{Client: local.client(), StateFile: state, GroupWait: 10 * time.Millisecond, Notifiers: notifiers(rcv.URL)})
		reqs := rcv.waitFor(t, 5) // generic: 3; Slack: li's two in one message, sam's one
		idle(time.Minute)         // and no more
		var generic, slack int
		for _, r := range rcv.got() {
			switch r.path {
			case "/generic":
				generic++
			case "/slack":
				slack++
				if strings.Contains(string(r.body), "owner li") && strings.Count(string(r.body), `"type":"header"`) != 2 {
					t.Errorf("li's message was split after the restart: %s", r.body)
				}
			}
		}
		if generic != 3 || slack != 2 || len(reqs) != 5 {
			t.Fatalf("after the restart: %d generic, %d Slack deliveries; want 3 and 2", generic, slack)
		}
		// Delivered: gone from the outbox, so a third start sends nothing.
		again.Close(context.Background())
		third := newSink(t, Config{Client: local.client(), StateFile: state, GroupWait: 10 * time.Millisecond, Notifiers: notifiers(rcv.URL)})
		idle(time.Minute)
		if n := len(rcv.got()); n != 5 {
			t.Fatalf("a third start sent %d more", n-5)
		}
		third.Close(context.Background())
	})
}

// The Slack message that was in flight when the process stopped keeps its
// Idempotency-Key after the restart: a receiver can drop the duplicate.
func TestResentMessageKeepsItsIdempotencyKey(t *testing.T) {
	var first atomic.Value
	release := make(chan struct{})
	down := httptest.NewServer(http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) {
		first.CompareAndSwap(nil, r.Header.Get("Idempotency-Key"))
		<-release
	}))
	t.Cleanup(func() { close(release); down.Close() })
	state := filepath.Join(t.TempDir(), "webhook.state")
	s, err := New(Config{StateFile: state, GroupWait: 10 * time.Millisecond, Notifiers: []rules.Notifier{notifier("slack", "slack", down.URL, nil)}})
	if err != nil {
		t.Fatal(err)
	}
	write(s, transition("a1", "churn_risk", rules.PhaseFiring, rules.SeverityHigh, "li"), transition("a2", "gone_dark", rules.PhaseFiring, rules.SeverityHigh, "li"))
	eventually(t, "the message in flight", func() bool { return first.Load() != nil })
	stopNow, stop := context.WithCancel(context.Background())
	stop()
	s.Close(stopNow)

	rcv := newReceiver(t)
	// A longer group_wait now: the message must not be gathered anew.
	newSink(t, Config{StateFile: state, GroupWait: time.Hour, Notifiers: []rules.Notifier{notifier("slack", "slack", rcv.URL, nil)}})
	reqs := rcv.waitFor(t, 1)
	if got := reqs[0].headers.Get("Idempotency-Key"); got != first.Load() {
		t.Fatalf("Idempotency-Key %q after the restart, %q before", got, first.Load())
	}
}

// One notifier whose receiver hangs delays nobody else: the other's
// messages all arrive while the first still waits for an answer.
func TestHangingReceiverDoesNotDelayOthers(t *testing.T) {
	hang, calls := hangingServer(t)
	rcv := newReceiver(t)
	s := newSink(t, Config{Client: &http.Client{Timeout: time.Minute}, Notifiers: []rules.Notifier{
		notifier("down", "webhook", hang.URL, nil), notifier("up", "webhook", rcv.URL, nil)}})
	for i := range 5 {
		write(s, transition("acct-"+string(rune('a'+i)), "gone_dark", rules.PhaseFiring, rules.SeverityHigh, "li"))
	}
	rcv.waitFor(t, 5)
	if calls.Load() != 1 {
		t.Fatalf("the hanging receiver got %d requests, want 1 (one in flight per notifier)", calls.Load())
	}
}

// 429 answers ask to wait: they do not use up the attempts, however many.
func Test429DoesNotUseUpAttempts(t *testing.T) {
	rcv := newReceiver(t)
	for range 5 {
		rcv.script = append(rcv.script, func(w http.ResponseWriter) { w.WriteHeader(http.StatusTooManyRequests) })
	}
	var c counter
	s := newSink(t, Config{MaxAttempts: 2, RetryWait: 5 * time.Millisecond, Counted: c.count,
		Notifiers: []rules.Notifier{notifier("g", "webhook", rcv.URL, nil)}})
	write(s, transition("acme", "gone_dark", rules.PhaseFiring, rules.SeverityHigh, "li"))
	rcv.waitFor(t, 1)
	if n := rcv.calls.Load(); n != 6 {
		t.Fatalf("%d calls, want 6 (five 429s, then the delivery)", n)
	}
	eventually(t, "the delivery counted", func() bool { return c.get("sent") == 1 })
	if c.get("failed") != 0 {
		t.Fatal("counted as failed")
	}
}

// A receiver that asks to wait longer than max_retry_time is given up at
// once (counted failed), and the notification leaves the outbox.
func TestRetryAfterBeyondMaxRetryTimeGivesUp(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var calls atomic.Int32
		var local localNet
		url := local.handle(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			calls.Add(1)
			w.Header().Set("Retry-After", "7200")
			w.WriteHeader(http.StatusTooManyRequests)
		}))
		var c counter
		state := filepath.Join(t.TempDir(), "webhook.state")
		cfg := Config{Client: local.client(), StateFile: state, MaxRetryTime: time.Hour, Counted: c.count, Notifiers: []rules.Notifier{notifier("g", "webhook", url, nil)}}
		s := newSink(t, cfg)
		write(s, transition("acme", "gone_dark", rules.PhaseFiring, rules.SeverityHigh, "li"))
		eventually(t, "the notification given up", func() bool { return c.get("failed") == 1 })
		if calls.Load() != 1 {
			t.Fatalf("%d calls, want 1", calls.Load())
		}
		s.Close(context.Background())
		newSink(t, cfg)
		idle(3 * time.Hour)
		if calls.Load() != 1 {
			t.Fatal("a notification given up was sent again after a restart")
		}
	})
}

// The state file is rewritten as it grows: what was delivered stays known
// (a re-emitted transition is not sent again) and what waits stays in the
// outbox (sent after a restart).
func TestStateFileCompactionKeepsDeliveriesAndOutbox(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		was := compactAfter
		t.Cleanup(func() { compactAfter = was }) // after the sinks' cleanups
		compactAfter = 4 << 10
		var local localNet
		up := local.receiver()
		hang, _ := hanging(t)
		down := local.handle(hang)
		state := filepath.Join(t.TempDir(), "webhook.state")
		cfg := func(downURL string) Config {
			return Config{Client: local.client(), StateFile: state, Notifiers: []rules.Notifier{notifier("up", "webhook", up.URL, nil), notifier("down", "webhook", downURL, nil)}}
		}
		var ts []rules.Transition
		for i := range 40 {
			ts = append(ts, transition(fmt.Sprintf("acct-%02d", i), "gone_dark", rules.PhaseFiring, rules.SeverityHigh, "li"))
		}
		s := newSink(t, cfg(down))
		for _, tr := range ts {
			write(s, tr)
		}
		up.waitFor(t, 40)
		eventually(t, "the deliveries recorded", func() bool {
			s.mu.Lock()
			defer s.mu.Unlock()
			return len(s.sent) == 40
		})
		data, _ := os.ReadFile(state)
		outs := strings.Count(string(data), "out ")
		if outs >= 80 {
			t.Fatalf("the state file was not rewritten: %d outbox records for 40 waiting", outs)
		}
		stopNow, stop := context.WithCancel(context.Background())
		stop()
		s.Close(stopNow)

		later := local.receiver()
		again := newSink(t, cfg(later.URL))
		for _, tr := range ts {
			write(again, tr) // re-emitted: "up" has them all
		}
		later.waitFor(t, 40) // "down"'s outbox, sent now
		idle(time.Minute)    // and no more
		if n := len(up.got()); n != 40 {
			t.Fatalf("%d deliveries to up, want 40: the rewrite lost deliveries", n)
		}
		if n := len(later.got()); n != 40 {
			t.Fatalf("%d deliveries of down's outbox, want 40", n)
		}
	})
}

// A rewrite of the state file that fails as it grows is not only logged:
// Flush fails (so no checkpoint passes what the file may lack) until a
// rewrite succeeds, and then the file holds everything.
func TestFailedCompactionHoldsFlushUntilARewrite(t *testing.T) {
	was := compactAfter
	t.Cleanup(func() { compactAfter = was })
	compactAfter = 1
	rcv := newReceiver(t)
	dir := filepath.Join(t.TempDir(), "state")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	state := filepath.Join(dir, "webhook.state")
	s := newSink(t, Config{StateFile: state, Notifiers: []rules.Notifier{notifier("g", "webhook", rcv.URL, nil)}})
	// The directory goes away (with the open file): no rewrite can land.
	moved := dir + ".moved"
	if err := os.Rename(dir, moved); err != nil {
		t.Fatal(err)
	}
	write(s, transition("acme", "gone_dark", rules.PhaseFiring, rules.SeverityHigh, "li"))
	eventually(t, "the delivery recorded", func() bool {
		s.mu.Lock() // settle records it and compacts under s.mu
		defer s.mu.Unlock()
		return len(s.sent) == 1
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.Flush(ctx); err == nil {
		t.Fatal("Flush succeeded though the state file could not be rewritten")
	}
	if err := os.Rename(moved, dir); err != nil {
		t.Fatal(err)
	}
	if err := s.Flush(ctx); err != nil {
		t.Fatalf("Flush once the directory is back: %v", err)
	}
	data, _ := os.ReadFile(state)
	if !strings.Contains(string(data), "sent g%7C") {
		t.Fatalf("the state file lacks the delivery:\n%s", data)
	}
}
