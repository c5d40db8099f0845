// Package webhook notifies CSMs of alert transitions in chat: Slack (Block
// Kit), Microsoft Teams (MessageCard) and generic JSON webhooks, routed by
// the rules file's notify block.
//
// Write never blocks scoring: it routes each transition to the notifiers
// whose match it passes, drops what was already delivered (a ledger file
// survives restarts, so a transition re-emitted after a crash is not sent
// twice), what is snoozed for the account, and resolved transitions where
// send_resolved is off; groups a burst for one owner (Slack, Teams) into
// one message; and puts the messages on a bounded queue — full, it drops
// and counts. Delivery workers POST them with an HMAC-SHA256 signature
// (when the notifier has a secret) and an Idempotency-Key, retrying with
// backoff that honours 429 and Retry-After. Firing alerts are repeated
// every repeat_interval until they resolve.
package webhook

import (
	"bufio"
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/pulsehq/pulse/engine"
	"github.com/pulsehq/pulse/rules"
)

// Config configures the sink.
type Config struct {
	Notifiers []rules.Notifier
	// PublicURL is where CSMs reach this Pulse; messages link to
	// PublicURL/api/accounts/{id}. "" links nothing.
	PublicURL string
	QueueSize int           // messages waiting for delivery (default 10,000)
	GroupWait time.Duration // how long a burst for one owner is gathered (default 10 s)
	// StateFile keeps deliveries (for 30 days) and snoozes across restarts;
	// "" keeps them in memory only.
	StateFile   string
	Client      *http.Client
	MaxAttempts int // per message (default 8)
	Workers     int // concurrent deliveries (default 2)
	Log         *slog.Logger
	Now         func() time.Time
	// Counted, if set, is told of every outcome: "sent", "failed",
	// "dropped_queue_full", "snoozed", "duplicate", "repeat", "suppressed".
	Counted func(notifier, outcome string)
}

const ledgerKeep = 30 * 24 * time.Hour

// Sink is the webhook sink; it implements engine.Sink and is safe for
// concurrent use.
type Sink struct {
	cfg Config

	mu        sync.Mutex
	notifiers []rules.Notifier
	sent      map[string]time.Time // notifier|alert_id:state → delivered
	inFlight  map[string]bool
	snoozed   map[string]time.Time // account → until
	firing    map[string]*repeat   // notifier|alert_id → reminder state
	groups    map[string]*message  // notifier|owner → gathering
	ledger    *os.File

	dropped   int       // messages dropped since the last warning
	warned    time.Time // when the last "queue full" warning was logged
	queue     chan *message
	stop      chan struct{}
	ctx       context.Context // cancelled by Close: in-flight requests end
	cancel    context.CancelFunc
	closeOnce sync.Once
	wg        sync.WaitGroup
}

type repeat struct {
	notifier *rules.Notifier
	t        rules.Transition
	last     time.Time
	n        int
}

// New starts the sink.
func New(cfg Config) (*Sink, error) {
	if cfg.QueueSize == 0 {
		cfg.QueueSize = 10_000
	}
	if cfg.GroupWait == 0 {
		cfg.GroupWait = 10 * time.Second
	}
	if cfg.Client == nil {
		cfg.Client = &http.Client{Timeout: 10 * time.Second}
	}
	if cfg.MaxAttempts == 0 {
		cfg.MaxAttempts = 8
	}
	if cfg.Workers == 0 {
		cfg.Workers = 2
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Counted == nil {
		cfg.Counted = func(string, string) {}
	}
	s := &Sink{cfg: cfg, notifiers: cfg.Notifiers, sent: map[string]time.Time{}, inFlight: map[string]bool{},
		snoozed: map[string]time.Time{}, firing: map[string]*repeat{}, groups: map[string]*message{},
		queue: make(chan *message, cfg.QueueSize), stop: make(chan struct{})}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	if err := s.loadLedger(); err != nil {
		return nil, err
	}
	for range cfg.Workers {
		s.wg.Add(1)
		go s.worker()
	}
	s.wg.Add(1)
	go s.repeater()
	return s, nil
}

// SetNotifiers swaps the notify rules (after a rules reload).
func (s *Sink) SetNotifiers(n []rules.Notifier) {
	s.mu.Lock()
	s.notifiers = n
	s.mu.Unlock()
}

// Snooze silences an account's notifications until the given time (zero
// time: unsnooze). It survives restarts with a StateFile.
func (s *Sink) Snooze(account string, until time.Time) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if until.IsZero() {
		delete(s.snoozed, account)
	} else {
		s.snoozed[account] = until
	}
	return s.record("snooze", account, until)
}

// Snoozed returns until when an account is snoozed (zero: it is not).
func (s *Sink) Snoozed(account string) time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	if until := s.snoozed[account]; s.cfg.Now().Before(until) {
		return until
	}
	return time.Time{}
}

func matches(n *rules.Notifier, t *rules.Transition) bool {
	for _, m := range n.Match {
		var v string
		switch m.Key {
		case "rule":
			v = t.Rule
		case "severity":
			v = t.Severity.String()
		case "kind":
			v = t.Kind.String()
		default:
			a, _ := rules.AttrByName(m.Key)
			v = t.Attrs[a]
		}
		if !slices.Contains(m.Values, v) {
			return false
		}
	}
	return true
}

func deliveryKey(n *rules.Notifier, t *rules.Transition) string {
	return n.Name + "|" + t.ID + ":" + t.State.String()
}

// Write implements engine.Sink. It never blocks and never fails: delivery
// happens in the background.
func (s *Sink) Write(_ context.Context, b *engine.Batch) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.cfg.Now()
	for i := range s.notifiers {
		n := &s.notifiers[i]
		for _, t := range b.Transitions {
			if !matches(n, &t) {
				continue
			}
			rk := n.Name + "|" + t.ID
			if t.Suppressed {
				// An inhibiting alert of the account fires: stored, not sent.
				delete(s.firing, rk)
				s.cfg.Counted(n.Name, "suppressed")
				continue
			}
			if t.State == rules.PhaseResolved {
				delete(s.firing, rk)
				if !n.SendResolved {
					continue
				}
			} else if n.RepeatInterval > 0 {
				s.firing[rk] = &repeat{notifier: n, t: t, last: now}
			}
			key := deliveryKey(n, &t)
			if _, done := s.sent[key]; done || s.inFlight[key] {
				s.cfg.Counted(n.Name, "duplicate")
				continue
			}
			if now.Before(s.snoozed[t.AccountID]) {
				s.cfg.Counted(n.Name, "snoozed")
				continue
			}
			s.inFlight[key] = true
			if n.Type == "webhook" {
				s.enqueue(&message{notifier: n, transitions: []rules.Transition{t}})
				continue
			}
			gk := n.Name + "|" + t.Attrs[rules.CSM]
			if g := s.groups[gk]; g != nil {
				g.transitions = append(g.transitions, t)
				continue
			}
			g := &message{notifier: n, transitions: []rules.Transition{t}}
			s.groups[gk] = g
			time.AfterFunc(s.cfg.GroupWait, func() {
				s.mu.Lock()
				delete(s.groups, gk)
				s.enqueue(g)
				s.mu.Unlock()
			})
		}
	}
	return nil
}

// enqueue queues a message, or drops it when the queue is full. s.mu held.
func (s *Sink) enqueue(m *message) {
	select {
	case s.queue <- m:
	default:
		s.cfg.Counted(m.notifier.Name, "dropped_queue_full")
		s.settle(m, false)
		// Warn at most every 10 s: a stuck receiver must not flood the log.
		s.dropped++
		if now := s.cfg.Now(); now.Sub(s.warned) >= 10*time.Second {
			s.cfg.Log.Warn("webhook queue full; messages dropped", "notifier", m.notifier.Name, "dropped", s.dropped)
			s.dropped, s.warned = 0, now
		}
	}
}

// settle records a message's fate. s.mu held.
func (s *Sink) settle(m *message, delivered bool) {
	now := s.cfg.Now()
	for i := range m.transitions {
		key := deliveryKey(m.notifier, &m.transitions[i])
		delete(s.inFlight, key)
		if delivered && m.repeat == 0 {
			s.sent[key] = now
			s.record("sent", key, now)
		}
	}
}

func (s *Sink) worker() {
	defer s.wg.Done()
	for {
		select {
		case m := <-s.queue:
			ok := s.deliver(m)
			s.mu.Lock()
			s.settle(m, ok)
			s.mu.Unlock()
		case <-s.stop:
			return
		}
	}
}

// repeater re-sends firing alerts every repeat_interval until they resolve.
func (s *Sink) repeater() {
	defer s.wg.Done()
	t := time.NewTicker(200 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
		}
		s.mu.Lock()
		now := s.cfg.Now()
		for _, r := range s.firing {
			if now.Sub(r.last) >= r.notifier.RepeatInterval && !now.Before(s.snoozed[r.t.AccountID]) {
				r.last, r.n = now, r.n+1
				s.cfg.Counted(r.notifier.Name, "repeat")
				s.enqueue(&message{notifier: r.notifier, transitions: []rules.Transition{r.t}, repeat: r.n})
			}
		}
		s.mu.Unlock()
	}
}

// deliver POSTs a message, retrying with exponential backoff and jitter;
// a 429 or 503 with Retry-After waits that long. It gives up after
// MaxAttempts, or at once on another 4xx (the request itself is wrong).
func (s *Sink) deliver(m *message) bool {
	body, err := s.body(m)
	if err != nil {
		s.cfg.Log.Error("webhook payload", "notifier", m.notifier.Name, "receiver", Redact(m.notifier.URL), "err", err)
		return false
	}
	wait := 250 * time.Millisecond
	for attempt := 1; attempt <= s.cfg.MaxAttempts; attempt++ {
		status, retryAfter, err := s.post(m, body)
		switch {
		case err == nil && status < 300:
			s.cfg.Counted(m.notifier.Name, "sent")
			return true
		case err == nil && status >= 400 && status < 500 && status != http.StatusTooManyRequests:
			s.cfg.Log.Error("webhook refused; not retried", "notifier", m.notifier.Name, "receiver", Redact(m.notifier.URL), "status", status)
			s.cfg.Counted(m.notifier.Name, "failed")
			return false
		}
		d := time.Duration(rand.Int64N(int64(wait))) + wait/2
		if retryAfter > 0 {
			d = retryAfter
		}
		s.cfg.Log.Warn("webhook delivery failed; retrying", "notifier", m.notifier.Name, "receiver", Redact(m.notifier.URL), "attempt", attempt, "status", status, "err", redactErr(err), "in", d)
		select {
		case <-time.After(d):
		case <-s.stop:
			return false
		}
		wait = min(wait*2, time.Minute)
	}
	s.cfg.Counted(m.notifier.Name, "failed")
	return false
}

func (s *Sink) post(m *message, body []byte) (int, time.Duration, error) {
	req, err := http.NewRequestWithContext(s.ctx, http.MethodPost, m.notifier.URL, bytes.NewReader(body))
	if err != nil {
		return 0, 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "pulse")
	idem := m.key()
	if len(m.transitions) == 1 && m.repeat == 0 {
		idem = m.transitions[0].ID + ":" + m.transitions[0].State.String()
	} else {
		sum := sha256.Sum256([]byte(idem))
		idem = hex.EncodeToString(sum[:16])
	}
	req.Header.Set("Idempotency-Key", idem)
	if m.notifier.Secret != "" {
		mac := hmac.New(sha256.New, []byte(m.notifier.Secret))
		mac.Write(body)
		req.Header.Set("X-Pulse-Signature", "sha256="+hex.EncodeToString(mac.Sum(nil)))
	}
	resp, err := s.cfg.Client.Do(req)
	if err != nil {
		return 0, 0, err
	}
	// Read the answer (Slack's is "ok") to its end, so the connection
	// carries the next delivery; a long one is not worth the wait.
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	return resp.StatusCode, retryAfter(resp, s.cfg.Now()), nil
}

// Redact shortens a webhook url to its scheme and host for logs and
// answers: the path (and query) of a Slack or Teams webhook is its
// credential.
func Redact(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return "(unparsable url)"
	}
	return u.Scheme + "://" + u.Host
}

// redactErr removes the url's path from what net/http reports of a failed
// request ("Post \"https://hooks.slack.com/services/…\": …").
func redactErr(err error) error {
	var ue *url.Error
	if !errors.As(err, &ue) {
		return err
	}
	r := *ue
	r.URL = Redact(ue.URL)
	return &r
}

// retryAfter reads Retry-After (seconds or an HTTP date) of a 429 or 503.
func retryAfter(resp *http.Response, now time.Time) time.Duration {
	if resp.StatusCode != http.StatusTooManyRequests && resp.StatusCode != http.StatusServiceUnavailable {
		return 0
	}
	v := resp.Header.Get("Retry-After")
	if secs, err := strconv.Atoi(v); err == nil && secs >= 0 {
		return min(time.Duration(secs)*time.Second, 10*time.Minute)
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return min(t.Sub(now), 10*time.Minute)
	}
	return 0
}

// Close stops delivering. Queued messages are not sent; they were never
// recorded as delivered, so a restart's re-emitted transitions send them.
func (s *Sink) Close(context.Context) error {
	var err error
	s.closeOnce.Do(func() {
		close(s.stop)
		s.cancel()
		s.wg.Wait()
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.ledger != nil {
			err = s.ledger.Close()
			s.ledger = nil
		}
	})
	return err
}

// The ledger is a text file of "sent KEY UNIX" and "snooze ACCOUNT UNIX"
// lines, rewritten without stale entries at start.
func (s *Sink) loadLedger() error {
	if s.cfg.StateFile == "" {
		return nil
	}
	now := s.cfg.Now()
	if f, err := os.Open(s.cfg.StateFile); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			parts := strings.Fields(sc.Text())
			if len(parts) != 3 {
				continue
			}
			unix, err := strconv.ParseInt(parts[2], 10, 64)
			if err != nil {
				continue
			}
			at := time.Unix(unix, 0)
			key, err := url.QueryUnescape(parts[1])
			if err != nil {
				continue
			}
			switch parts[0] {
			case "sent":
				if now.Sub(at) < ledgerKeep {
					s.sent[key] = at
				}
			case "snooze":
				if at.After(now) {
					s.snoozed[key] = at
				} else {
					delete(s.snoozed, key)
				}
			}
		}
		f.Close()
	} else if !os.IsNotExist(err) {
		return fmt.Errorf("webhook state %s: %w", s.cfg.StateFile, err)
	}
	var b strings.Builder
	for k, at := range s.sent {
		fmt.Fprintf(&b, "sent %s %d\n", url.QueryEscape(k), at.Unix())
	}
	for a, until := range s.snoozed {
		fmt.Fprintf(&b, "snooze %s %d\n", url.QueryEscape(a), until.Unix())
	}
	if err := engine.WriteCheckpointFile(s.cfg.StateFile, []byte(b.String())); err != nil {
		return fmt.Errorf("webhook state %s: %w", s.cfg.StateFile, err)
	}
	f, err := os.OpenFile(s.cfg.StateFile, os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("webhook state %s: %w", s.cfg.StateFile, err)
	}
	s.ledger = f
	return nil
}

// record appends to the ledger (keys query-escaped). s.mu held.
func (s *Sink) record(kind, key string, at time.Time) error {
	if s.ledger == nil {
		return nil
	}
	_, err := fmt.Fprintf(s.ledger, "%s %s %d\n", kind, url.QueryEscape(key), at.Unix())
	return err
}
