package webhook

import (
	"bufio"
	"bytes"
	"cmp"
	"encoding/base64"
	"encoding/gob"
	"fmt"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/pulsehq/pulse/engine"
	"github.com/pulsehq/pulse/rules"
)

// The state file is a text file of records, one a line, appended as things
// happen and rewritten without dead ones at start and when it has grown:
//
//	out KEY UNIX TRANSITION   a notification entered the outbox (TRANSITION: gob, base64)
//	msg KEY UNIX IDEMPOTENCY  it goes out in that Slack/Teams message
//	sent KEY UNIX             it was delivered: it leaves the outbox
//	drop KEY UNIX             it was given up (or its notifier removed)
//	snooze ACCOUNT UNIX       the account is snoozed until UNIX (0: not)
//
// KEY is notifier|alert_id:state; keys, accounts and Idempotency-Keys are
// query-escaped. Appends are plain writes — a killed process loses none —
// and Flush fsyncs them, so a machine crash loses none that a checkpoint
// relies on.

// compactAfter is how much may be appended before the file is rewritten
// (or twice its size at the last rewrite, if that is more).
var compactAfter int64 = 8 << 20

func appendRecord(b []byte, kind, key string, at time.Time, extra string) []byte {
	b = append(b, kind...)
	b = append(b, ' ')
	b = append(b, url.QueryEscape(key)...)
	b = append(b, ' ')
	b = strconv.AppendInt(b, at.Unix(), 10)
	if extra != "" {
		b = append(b, ' ')
		b = append(b, extra...)
	}
	return append(b, '\n')
}

func appendOut(b []byte, e *entry, at time.Time) []byte {
	var buf bytes.Buffer
	if err := gob.NewEncoder(&buf).Encode(&e.t); err != nil {
		panic("BUG: a transition does not encode: " + err.Error())
	}
	return appendRecord(b, "out", e.key, at, base64.RawURLEncoding.EncodeToString(buf.Bytes()))
}

// append writes records to the state file. s.mu held.
func (s *Sink) append(rec []byte) {
	if s.ledger == nil || len(rec) == 0 {
		return
	}
	if _, err := s.ledger.Write(rec); err != nil {
		if s.ledgerErr == nil {
			s.cfg.Log.Error("webhook state file: append failed; checkpoints wait until it is rewritten", "file", s.cfg.StateFile, "err", err)
		}
		s.ledgerErr = err
	}
	s.appended += int64(len(rec))
	s.dirty = true
}

// maybeCompact rewrites the state file once enough was appended. s.mu held.
func (s *Sink) maybeCompact() {
	if s.ledger == nil || s.appended < max(compactAfter, 2*s.written) {
		return
	}
	if err := s.rewrite(); err != nil {
		// The file may be replaced already, with appends still going to
		// the old one: as after a failed append, Flush rewrites it from
		// memory, and fails (holding back checkpoints) until that works.
		if s.ledgerErr == nil {
			s.cfg.Log.Error("webhook state file: rewrite failed; checkpoints wait until it is rewritten", "file", s.cfg.StateFile, "err", err)
		}
		s.ledgerErr = err
		s.appended = 0
	}
}

// rewrite replaces the state file with what is alive: deliveries of the
// last 30 days, snoozes, the outbox in order. s.mu held.
func (s *Sink) rewrite() error {
	if s.cfg.StateFile == "" {
		return nil
	}
	now := s.cfg.Now()
	var b []byte
	for k, at := range s.sent {
		if now.Sub(at) >= ledgerKeep {
			delete(s.sent, k)
			continue
		}
		b = appendRecord(b, "sent", k, at, "")
	}
	for a, until := range s.snoozed {
		if !until.After(now) {
			delete(s.snoozed, a)
			continue
		}
		b = appendRecord(b, "snooze", a, until, "")
	}
	for _, e := range s.pending() {
		b = appendOut(b, e, now)
		if e.group != "" {
			b = appendRecord(b, "msg", e.key, now, url.QueryEscape(e.group))
		}
	}
	if err := engine.WriteCheckpointFile(s.cfg.StateFile, b); err != nil {
		return err
	}
	f, err := os.OpenFile(s.cfg.StateFile, os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	if s.ledger != nil {
		s.ledger.Close()
	}
	s.ledger, s.appended, s.written, s.dirty = f, 0, int64(len(b)), false
	return nil
}

// pending returns the outbox in the order it was filled. s.mu held.
func (s *Sink) pending() []*entry {
	es := make([]*entry, 0, len(s.outbox))
	for _, e := range s.outbox {
		es = append(es, e)
	}
	slices.SortFunc(es, func(a, b *entry) int { return cmp.Compare(a.seq, b.seq) })
	return es
}

// loadLedger reads the state file and rewrites it without dead records.
func (s *Sink) loadLedger() error {
	if s.cfg.StateFile == "" {
		return nil
	}
	now := s.cfg.Now()
	f, err := os.Open(s.cfg.StateFile)
	if os.IsNotExist(err) {
		s.mu.Lock()
		defer s.mu.Unlock()
		return s.rewrite()
	} else if err != nil {
		return fmt.Errorf("webhook state %s: %w", s.cfg.StateFile, err)
	}
	defer f.Close()
	bad := 0
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 16<<20)
	for sc.Scan() {
		parts := strings.Fields(sc.Text())
		if len(parts) < 3 {
			bad++
			continue
		}
		unix, err1 := strconv.ParseInt(parts[2], 10, 64)
		key, err2 := url.QueryUnescape(parts[1])
		if err1 != nil || err2 != nil {
			bad++
			continue
		}
		at := time.Unix(unix, 0)
		switch {
		case parts[0] == "sent":
			delete(s.outbox, key)
			if now.Sub(at) < ledgerKeep {
				s.sent[key] = at
			}
		case parts[0] == "drop":
			delete(s.outbox, key)
		case parts[0] == "snooze":
			if at.After(now) {
				s.snoozed[key] = at
			} else {
				delete(s.snoozed, key)
			}
		case parts[0] == "out" && len(parts) == 4:
			e := &entry{key: key}
			e.notifier, _, _ = strings.Cut(key, "|")
			data, err := base64.RawURLEncoding.DecodeString(parts[3])
			if err == nil {
				err = gob.NewDecoder(bytes.NewReader(data)).Decode(&e.t)
			}
			if err != nil {
				bad++
				continue
			}
			if _, done := s.sent[key]; !done {
				s.seq++
				e.seq = s.seq
				s.outbox[key] = e
			}
		case parts[0] == "msg" && len(parts) == 4:
			group, err := url.QueryUnescape(parts[3])
			if err != nil {
				bad++
			} else if e := s.outbox[key]; e != nil {
				e.group = group
			}
		default:
			bad++
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("webhook state %s: %w", s.cfg.StateFile, err)
	}
	if bad > 0 {
		s.cfg.Log.Warn("webhook state file: unreadable lines skipped", "file", s.cfg.StateFile, "lines", bad)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.rewrite(); err != nil {
		return fmt.Errorf("webhook state %s: %w", s.cfg.StateFile, err)
	}
	return nil
}

// resend queues what the outbox held at start, in order: a Slack or Teams
// message that had been tried goes out again as it was. s.mu held.
func (s *Sink) resend() {
	formed := map[string]*message{}
	var rec []byte
	for _, e := range s.pending() {
		q := s.queues[e.notifier]
		if q == nil {
			delete(s.outbox, e.key)
			rec = appendRecord(rec, "drop", e.key, s.cfg.Now(), "")
			s.cfg.Counted(e.notifier, "dropped_notifier_gone")
			continue
		}
		s.waiting[e.notifier]++
		if e.group == "" {
			s.route(q, e)
			continue
		}
		if m := formed[e.group]; m != nil {
			m.transitions = append(m.transitions, e.t)
			continue
		}
		m := &message{transitions: []rules.Transition{e.t}}
		formed[e.group] = m
		s.push(q, m)
	}
	s.append(rec)
}
