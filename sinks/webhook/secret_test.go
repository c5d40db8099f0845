package webhook

import (
	"bytes"
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pulsehq/pulse/rules"
)

// syncBuffer is a log destination safe for the sink's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// A Slack webhook's path is its credential: failed deliveries log the
// notifier's scheme and host, never its path — whether the receiver is
// gone, answers with an error or is too slow.
func TestFailedDeliveriesDoNotLogTheURL(t *testing.T) {
	const path = "/services/T0AAAA/B0BBBB/xoxsecret123"
	gone := httptest.NewServer(http.NotFoundHandler())
	gone.Close() // connection refused
	failing := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusBadGateway) }))
	t.Cleanup(failing.Close)
	refusing := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusForbidden) }))
	t.Cleanup(refusing.Close)
	hang := make(chan struct{})
	slow := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { <-hang }))
	t.Cleanup(func() { close(hang); slow.Close() })

	var logs syncBuffer
	var failed sync.WaitGroup
	failed.Add(4)
	cfg := Config{
		MaxAttempts: 2,
		Client:      &http.Client{Timeout: 200 * time.Millisecond},
		Notifiers: []rules.Notifier{
			notifier("gone", "slack", gone.URL+path, nil),
			notifier("failing", "slack", failing.URL+path, nil),
			notifier("refusing", "webhook", refusing.URL+path, nil),
			notifier("slow", "teams", slow.URL+path, nil),
		},
		Counted: func(_, o string) {
			if o == "failed" {
				failed.Done()
			}
		},
		GroupWait: 10 * time.Millisecond,
	}
	cfg.Log = slog.New(slog.NewTextHandler(&logs, nil))
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close(context.Background()) })
	write(s, transition("acme", "gone_dark", rules.PhaseFiring, rules.SeverityHigh, "li"))
	done := make(chan struct{})
	go func() { failed.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		t.Fatalf("not every delivery failed; log:\n%s", logs.String())
	}
	out := logs.String()
	if strings.Contains(out, "xoxsecret123") || strings.Contains(out, "B0BBBB") || strings.Contains(out, "/services") {
		t.Fatalf("the webhook url's path is logged:\n%s", out)
	}
	for _, srv := range []*httptest.Server{gone, failing, refusing, slow} {
		if !strings.Contains(out, srv.URL) {
			t.Errorf("the log does not say which receiver (%s) failed:\n%s", srv.URL, out)
		}
	}
}
