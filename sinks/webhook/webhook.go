// Package webhook notifies CSMs of alert transitions in chat: Slack (Block
// Kit), Microsoft Teams (MessageCard) and generic JSON webhooks, routed by
// the rules file's notify block.
//
// Write never blocks scoring: it routes each transition to the notifiers
// whose match it passes and drops what was already delivered or is already
// waiting, what is snoozed for the account, and resolved transitions where
// send_resolved is off. What remains goes into the outbox — appended to the
// state file, which Flush fsyncs before the engine checkpoints, so a Kafka
// offset never passes a notification that is only in memory — and onto its
// notifier's queue. Slack and Teams gather a burst for one owner into one
// message (group_wait).
//
// Each notifier has its own queue and one worker, so a slow or unreachable
// receiver delays only its own messages, and at most one request per
// notifier is in flight. The worker POSTs with an HMAC-SHA256 signature
// (when the notifier has a secret) and an Idempotency-Key, retrying with
// backoff; 429 and Retry-After answers are waited out without using up
// attempts, for up to MaxRetryTime. A delivered or abandoned notification
// leaves the outbox; what is left is sent again on the next start. So every
// notification arrives at least once, and twice only if a request was in
// flight when the process died (the same Idempotency-Key both times).
// Firing alerts are repeated every repeat_interval until they resolve.
package webhook

import (
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
	"sync"
	"time"

	"github.com/pulsehq/pulse/engine"
	"github.com/pulsehq/pulse/rules"
)

// Config configures the sink. DefaultConfig has the defaults; New takes
// zero settings as their defaults (WithDefaults).
type Config struct {
	Notifiers []rules.Notifier
	// PublicURL is where CSMs reach this Pulse; messages link to
	// PublicURL/accounts/{id}. "" links nothing.
	PublicURL string
	// QueueSize bounds each notifier's outbox: notifications accepted and
	// not yet delivered. Past it, new ones are dropped and counted.
	QueueSize int
	GroupWait time.Duration // how long a burst for one owner is gathered
	// StateFile keeps the outbox, deliveries (for 30 days) and snoozes
	// across restarts; "" keeps them in memory only.
	StateFile string
	Client    *http.Client
	// MaxAttempts bounds the failed attempts of one message. Answers that
	// ask to wait (429, or Retry-After) do not count.
	MaxAttempts int
	// MaxRetryTime bounds how long one message is retried, waits included:
	// a receiver that keeps asking to wait longer is given up.
	MaxRetryTime time.Duration
	RetryWait    time.Duration // the first backoff, doubling up to a minute
	// MaxAge, if set, leaves unnotified (counted "too_old") a transition
	// whose event time is more than this behind the wall clock: a catch-up
	// or a replay of history is stored, not sent to chat.
	MaxAge time.Duration
	Log    *slog.Logger
	Now    func() time.Time
	// Counted, if set, is told of every outcome: "sent", "failed",
	// "dropped_queue_full", "dropped_notifier_gone", "snoozed",
	// "duplicate", "repeat", "suppressed", "too_old".
	Counted func(notifier, outcome string)
}

const ledgerKeep = 30 * 24 * time.Hour

// Sink is the webhook sink; it implements engine.Sink and engine.Flusher
// and is safe for concurrent use.
type Sink struct {
	cfg Config

	mu        sync.Mutex
	notifiers []rules.Notifier
	queues    map[string]*queue    // by notifier name
	sent      map[string]time.Time // notifier|alert_id:state → delivered
	outbox    map[string]*entry    // notifier|alert_id:state → accepted, not yet delivered or given up
	waiting   map[string]int       // outbox entries by notifier
	seq       uint64               // outbox order
	snoozed   map[string]time.Time // account → until
	firing    map[string]*repeat   // notifier|alert_id → reminder state
	groups    map[string]*message  // notifier|owner → gathering
	ledger    *os.File             // the state file, open for appending
	appended  int64                // bytes appended since the file was last rewritten
	written   int64                // its size then
	dirty     bool                 // appended since the last fsync
	ledgerErr error                // an append failed: Flush rewrites the file
	started   bool                 // workers run
	closed    bool

	syncMu sync.Mutex // one fsync at a time: a Flush returns only after the one covering its writes

	dropped   int       // messages dropped since the last warning
	warned    time.Time // when the last "queue full" warning was logged
	stop      chan struct{}
	ctx       context.Context // cancelled when Close gives up waiting: in-flight requests end
	cancel    context.CancelFunc
	closeOnce sync.Once
	wg        sync.WaitGroup
}

// An entry is one notification in the outbox: a transition for a notifier.
type entry struct {
	key      string // notifier|alert_id:state
	notifier string
	t        rules.Transition
	seq      uint64
	// group is the Idempotency-Key of the Slack or Teams message it went
	// out in (set before the first attempt): a restart sends that same
	// message again, so a receiver can recognise it.
	group string
}

// queue is one notifier's: its messages wait in order for its one worker.
type queue struct {
	n      rules.Notifier // current settings (s.mu)
	msgs   []*message     // waiting (s.mu)
	wake   chan struct{}  // a message was queued
	stop   chan struct{}  // closed when the notifier is removed
	ctx    context.Context
	cancel context.CancelFunc
}

type repeat struct {
	notifier *rules.Notifier
	t        rules.Transition
	last     time.Time
	n        int
}

// New starts the sink: it reads the state file and sends what its outbox
// holds.
func New(cfg Config) (*Sink, error) {
	cfg = cfg.WithDefaults()
	s := &Sink{cfg: cfg, notifiers: cfg.Notifiers, queues: map[string]*queue{}, sent: map[string]time.Time{},
		outbox: map[string]*entry{}, waiting: map[string]int{}, snoozed: map[string]time.Time{},
		firing: map[string]*repeat{}, groups: map[string]*message{}, stop: make(chan struct{})}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	if err := s.loadLedger(); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.syncQueues()
	s.resend()
	s.started = true
	for _, q := range s.queues {
		s.wg.Add(1)
		go s.work(q)
	}
	s.wg.Add(1)
	go s.repeater()
	return s, nil
}

// SetNotifiers swaps the notify rules (after a rules reload). A notifier
// whose name stays keeps its queue and outbox, with its new settings; a
// removed one's waiting notifications are dropped.
func (s *Sink) SetNotifiers(n []rules.Notifier) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.notifiers = n
	if !s.closed {
		s.syncQueues()
	}
}

// syncQueues gives each notifier a queue and ends those of notifiers that
// are gone. s.mu held.
func (s *Sink) syncQueues() {
	keep := map[string]bool{}
	for _, n := range s.notifiers {
		keep[n.Name] = true
		if q := s.queues[n.Name]; q != nil {
			q.n = n
			continue
		}
		q := &queue{n: n, wake: make(chan struct{}, 1), stop: make(chan struct{})}
		q.ctx, q.cancel = context.WithCancel(s.ctx)
		s.queues[n.Name] = q
		if s.started {
			s.wg.Add(1)
			go s.work(q)
		}
	}
	for name, q := range s.queues {
		if keep[name] {
			continue
		}
		close(q.stop)
		q.cancel()
		delete(s.queues, name)
		var rec []byte
		for k, e := range s.outbox {
			if e.notifier == name {
				delete(s.outbox, k)
				rec = appendRecord(rec, "drop", k, s.cfg.Now(), "")
				s.cfg.Counted(name, "dropped_notifier_gone")
			}
		}
		delete(s.waiting, name)
		s.append(rec)
	}
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
	s.append(appendRecord(nil, "snooze", account, until, ""))
	return s.ledgerErr
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

func deliveryKey(notifier string, t *rules.Transition) string {
	return notifier + "|" + t.ID + ":" + t.State.String()
}

// Write implements engine.Sink. It never waits for a delivery and never
// fails: when the state file cannot be appended to, the notifications are
// still queued, and Flush fails (so no checkpoint passes them) until a
// rewrite of the file succeeds.
func (s *Sink) Write(_ context.Context, b *engine.Batch) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.cfg.Now()
	var rec []byte
	for i := range s.notifiers {
		n := &s.notifiers[i]
		q := s.queues[n.Name]
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
			// The batch is the engine's: keep copies of its slices.
			t.Values, t.Factors = slices.Clone(t.Values), slices.Clone(t.Factors)
			if t.State == rules.PhaseResolved {
				delete(s.firing, rk)
				if !n.SendResolved {
					continue
				}
			}
			if s.cfg.MaxAge > 0 && now.Sub(time.Unix(0, t.Ts)) > s.cfg.MaxAge {
				// History, not news: no message, and no reminders of it.
				s.cfg.Counted(n.Name, "too_old")
				continue
			}
			if t.State == rules.PhaseFiring && n.RepeatInterval > 0 {
				s.firing[rk] = &repeat{notifier: n, t: t, last: now}
			}
			key := deliveryKey(n.Name, &t)
			if _, done := s.sent[key]; done || s.outbox[key] != nil {
				s.cfg.Counted(n.Name, "duplicate")
				continue
			}
			if now.Before(s.snoozed[t.AccountID]) {
				s.cfg.Counted(n.Name, "snoozed")
				continue
			}
			if s.waiting[n.Name] >= s.cfg.QueueSize {
				s.dropFull(n.Name)
				continue
			}
			s.seq++
			e := &entry{key: key, notifier: n.Name, t: t, seq: s.seq}
			s.outbox[key] = e
			s.waiting[n.Name]++
			rec = appendOut(rec, e, now)
			s.route(q, e)
		}
	}
	s.append(rec)
	return nil
}

// Flush implements engine.Flusher: it returns once the outbox of every
// Write before it is on disk (fsynced). It never waits for a delivery.
func (s *Sink) Flush(context.Context) error {
	s.syncMu.Lock()
	defer s.syncMu.Unlock()
	s.mu.Lock()
	if s.ledgerErr != nil {
		// An append failed: everything the file should hold is in memory.
		err := s.rewrite()
		if err == nil {
			s.ledgerErr = nil
		}
		s.mu.Unlock()
		if err != nil {
			return fmt.Errorf("webhook state %s: %w", s.cfg.StateFile, err)
		}
		return nil
	}
	f, dirty := s.ledger, s.dirty
	s.dirty = false
	s.mu.Unlock()
	if f == nil || !dirty {
		return nil
	}
	// A rewrite in between closes f after fsyncing the whole state.
	if err := f.Sync(); err != nil && !errors.Is(err, os.ErrClosed) {
		s.mu.Lock()
		s.dirty = true
		s.mu.Unlock()
		return fmt.Errorf("webhook state %s: %w", s.cfg.StateFile, err)
	}
	return nil
}

// route puts an outbox entry on its queue: alone (generic webhooks), or
// into the message gathering for its owner (Slack, Teams). s.mu held.
func (s *Sink) route(q *queue, e *entry) {
	if q.n.Type == "webhook" {
		s.push(q, &message{transitions: []rules.Transition{e.t}})
		return
	}
	gk := q.n.Name + "|" + e.t.Attrs[rules.CSM]
	if g := s.groups[gk]; g != nil {
		g.transitions = append(g.transitions, e.t)
		return
	}
	g := &message{transitions: []rules.Transition{e.t}}
	s.groups[gk] = g
	time.AfterFunc(s.cfg.GroupWait, func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.groups[gk] == g {
			delete(s.groups, gk)
		}
		s.push(q, g)
	})
}

// push queues a message for its notifier's worker. s.mu held.
func (s *Sink) push(q *queue, m *message) {
	q.msgs = append(q.msgs, m)
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

// dropFull counts a notification the full outbox refused. s.mu held.
func (s *Sink) dropFull(notifier string) {
	s.cfg.Counted(notifier, "dropped_queue_full")
	// Warn at most every 10 s: a stuck receiver must not flood the log.
	s.dropped++
	if now := s.cfg.Now(); now.Sub(s.warned) >= 10*time.Second {
		s.cfg.Log.Warn("webhook queue full; notifications dropped", "notifier", notifier, "dropped", s.dropped)
		s.dropped, s.warned = 0, now
	}
}

// result is how a delivery ended.
type result int

const (
	delivered result = iota
	gaveUp           // refused, or out of attempts or time: it leaves the outbox
	stopped          // the sink closed or the notifier went: it stays in the outbox
)

// work delivers one notifier's messages, one at a time, in order.
func (s *Sink) work(q *queue) {
	defer s.wg.Done()
	for {
		select {
		case <-q.stop:
			return
		case <-s.stop:
			return
		default:
		}
		s.mu.Lock()
		var m *message
		if len(q.msgs) > 0 {
			m = q.msgs[0]
			q.msgs[0] = nil
			q.msgs = q.msgs[1:]
			n := q.n
			m.notifier = &n
			s.fixGroup(m)
		}
		s.mu.Unlock()
		if m == nil {
			select {
			case <-q.wake:
			case <-q.stop:
				return
			case <-s.stop:
				return
			}
			continue
		}
		r := s.deliver(q, m)
		s.mu.Lock()
		s.settle(m, r)
		s.mu.Unlock()
	}
}

// fixGroup records which message a Slack or Teams notification goes out
// in, before its first attempt, so that a restart sends the same message
// with the same Idempotency-Key. s.mu held.
func (s *Sink) fixGroup(m *message) {
	if m.repeat > 0 || m.notifier.Type == "webhook" {
		return
	}
	idem := m.idempotencyKey()
	var rec []byte
	for i := range m.transitions {
		key := deliveryKey(m.notifier.Name, &m.transitions[i])
		if e := s.outbox[key]; e != nil && e.group == "" {
			e.group = idem
			rec = appendRecord(rec, "msg", key, s.cfg.Now(), url.QueryEscape(idem))
		}
	}
	s.append(rec)
}

// settle records a message's fate: delivered or given up, its
// notifications leave the outbox. s.mu held.
func (s *Sink) settle(m *message, r result) {
	if m.repeat > 0 || r == stopped {
		return
	}
	now := s.cfg.Now()
	var rec []byte
	for i := range m.transitions {
		key := deliveryKey(m.notifier.Name, &m.transitions[i])
		e := s.outbox[key]
		if e == nil {
			continue // its notifier was removed meanwhile
		}
		delete(s.outbox, key)
		s.waiting[e.notifier]--
		if r == delivered {
			s.sent[key] = now
			rec = appendRecord(rec, "sent", key, now, "")
		} else {
			rec = appendRecord(rec, "drop", key, now, "")
		}
	}
	s.append(rec)
	s.maybeCompact()
}

// repeater re-sends firing alerts every repeat_interval until they resolve.
// Reminders are not kept in the outbox: a lost one is followed by the next.
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
		for k, r := range s.firing {
			q := s.queues[r.notifier.Name]
			if q == nil {
				delete(s.firing, k)
				continue
			}
			if now.Sub(r.last) >= r.notifier.RepeatInterval && !now.Before(s.snoozed[r.t.AccountID]) {
				r.last, r.n = now, r.n+1
				if len(q.msgs) >= s.cfg.QueueSize {
					s.dropFull(q.n.Name)
					continue
				}
				s.cfg.Counted(r.notifier.Name, "repeat")
				s.push(q, &message{transitions: []rules.Transition{r.t}, repeat: r.n})
			}
		}
		s.mu.Unlock()
	}
}

// deliver POSTs a message, retrying with exponential backoff and jitter.
// An answer that asks to wait — 429, or any with Retry-After — is waited
// out (Retry-After, else the backoff) without using up an attempt. It
// gives up after MaxAttempts failures, when the next try would come later
// than MaxRetryTime after the first, or at once on another 4xx (the
// request itself is wrong).
func (s *Sink) deliver(q *queue, m *message) result {
	n := m.notifier
	log := s.cfg.Log.With("notifier", n.Name, "receiver", Redact(n.URL))
	body, err := s.body(m)
	if err != nil {
		log.Error("webhook payload", "err", err)
		s.cfg.Counted(n.Name, "failed")
		return gaveUp
	}
	deadline := s.cfg.Now().Add(s.cfg.MaxRetryTime)
	wait := s.cfg.RetryWait
	failures := 0
	for attempt := 1; ; attempt++ {
		status, retryAfter, err := s.post(q.ctx, m, body)
		switch {
		case err == nil && status < 300:
			s.cfg.Counted(n.Name, "sent")
			return delivered
		case q.ctx.Err() != nil:
			return stopped
		case err == nil && status >= 400 && status < 500 && status != http.StatusTooManyRequests:
			log.Error("webhook refused; not retried", "status", status)
			s.cfg.Counted(n.Name, "failed")
			return gaveUp
		}
		d := retryAfter
		if status != http.StatusTooManyRequests && retryAfter == 0 {
			if failures++; failures >= s.cfg.MaxAttempts {
				log.Error("webhook delivery failed; given up", "attempts", attempt, "status", status, "err", redactErr(err))
				s.cfg.Counted(n.Name, "failed")
				return gaveUp
			}
		}
		if d == 0 {
			d = time.Duration(rand.Int64N(int64(wait))) + wait/2
			wait = min(wait*2, time.Minute)
		}
		if s.cfg.Now().Add(d).After(deadline) {
			log.Error("webhook delivery given up: retrying would pass max_retry_time", "attempts", attempt, "status", status, "err", redactErr(err), "max_retry_time", s.cfg.MaxRetryTime)
			s.cfg.Counted(n.Name, "failed")
			return gaveUp
		}
		log.Warn("webhook delivery failed; retrying", "attempt", attempt, "status", status, "err", redactErr(err), "in", d)
		timer := time.NewTimer(d)
		select {
		case <-timer.C:
		case <-q.stop:
			timer.Stop()
			return stopped
		case <-s.stop:
			timer.Stop()
			return stopped
		}
	}
}

func (s *Sink) post(ctx context.Context, m *message, body []byte) (int, time.Duration, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, m.notifier.URL, bytes.NewReader(body))
	if err != nil {
		return 0, 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "pulse")
	req.Header.Set("Idempotency-Key", m.idempotencyKey())
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
		return time.Duration(secs) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return t.Sub(now)
	}
	return 0
}

// Close stops delivering. A request in flight may finish until ctx ends,
// then it is cut off; whatever is not delivered stays in the outbox (the
// state file) and goes out on the next start.
func (s *Sink) Close(ctx context.Context) error {
	var err error
	s.closeOnce.Do(func() {
		s.mu.Lock()
		s.closed = true
		s.mu.Unlock()
		close(s.stop)
		done := make(chan struct{})
		go func() { s.wg.Wait(); close(done) }()
		select {
		case <-done:
		case <-ctx.Done():
			s.cancel()
			<-done
		}
		s.cancel()
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.ledger != nil {
			err = s.ledger.Sync()
			if cerr := s.ledger.Close(); err == nil {
				err = cerr
			}
			s.ledger = nil
		}
	})
	return err
}
