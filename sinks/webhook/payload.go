package webhook

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math"
	"net/url"
	"strings"
	"time"

	"github.com/pulsehq/pulse/engine"
	"github.com/pulsehq/pulse/rules"
)

// A message is what one POST carries: one transition, or a burst of them
// for one owner grouped together.
type message struct {
	notifier    *rules.Notifier
	transitions []rules.Transition
	repeat      int // > 0: a reminder that these still fire
}

// idempotencyKey is the Idempotency-Key header: alert_id:state for one
// transition, else a hash of what the message carries. A receiver that saw
// it once can drop a second delivery.
func (m *message) idempotencyKey() string {
	if len(m.transitions) == 1 && m.repeat == 0 {
		return m.transitions[0].ID + ":" + m.transitions[0].State.String()
	}
	sum := sha256.Sum256([]byte(m.key()))
	return hex.EncodeToString(sum[:16])
}

// key identifies a message: its notifier, transitions and repeat.
func (m *message) key() string {
	var b strings.Builder
	b.WriteString(m.notifier.Name)
	for _, t := range m.transitions {
		fmt.Fprintf(&b, "|%s:%s", t.ID, t.State)
	}
	if m.repeat > 0 {
		fmt.Fprintf(&b, "|repeat-%d", m.repeat)
	}
	return b.String()
}

func (s *Sink) accountURL(id string) string {
	if s.cfg.PublicURL == "" {
		return ""
	}
	return strings.TrimRight(s.cfg.PublicURL, "/") + "/accounts/" + url.PathEscape(id) // the account view
}

// body renders a message for its notifier's type.
func (s *Sink) body(m *message) ([]byte, error) {
	switch m.notifier.Type {
	case "slack":
		return json.Marshal(s.slack(m))
	case "teams":
		return json.Marshal(s.teams(m))
	}
	return s.generic(m), nil
}

// generic is the transition of SPEC §5 with what explains it: the account
// link and the factors that cost the most points.
func (s *Sink) generic(m *message) []byte {
	var b []byte
	if len(m.transitions) > 1 {
		b = append(b, `{"transitions":[`...)
	}
	for i := range m.transitions {
		t := &m.transitions[i]
		if i > 0 {
			b = append(b, ',')
		}
		b = engine.AppendTransitionJSON(b, t)
		b = b[:len(b)-1] // reopen the object
		extra, _ := json.Marshal(struct {
			URL     string   `json:"account_url,omitempty"`
			Factors []factor `json:"top_negative_factors"`
			Repeat  int      `json:"repeat,omitempty"`
		}{s.accountURL(t.AccountID), topFactors(t), m.repeat})
		b = append(b, ',')
		b = append(b, extra[1:]...)
	}
	if len(m.transitions) > 1 {
		b = append(b, "]}"...)
	}
	return b
}

type factor struct {
	Name   string   `json:"name"`
	Metric string   `json:"metric"`
	Value  *float64 `json:"value"`
	Points float64  `json:"points"`
	Weight float64  `json:"weight"`
}

func topFactors(t *rules.Transition) []factor {
	out := []factor{}
	for _, f := range rules.Costliest(t.Factors, 3) {
		out = append(out, factor{Name: f.Name, Metric: f.Metric.String(), Value: num(f.Value), Points: round(f.Points), Weight: f.Weight})
	}
	return out
}

func num(v float64) *float64 {
	if !rules.IsFinite(v) {
		return nil
	}
	r := round(v)
	return &r
}

func round(v float64) float64 { return math.Round(v*100) / 100 }

func show(v float64) string {
	if !rules.IsFinite(v) {
		return "n/a"
	}
	return strings.TrimSuffix(strings.TrimRight(fmt.Sprintf("%.2f", v), "0"), ".")
}

func icon(t *rules.Transition) string {
	switch {
	case t.State == rules.PhaseResolved:
		return "✅"
	case t.Kind == rules.KindOpportunity:
		return "🚀"
	case t.Severity == rules.SeverityHigh:
		return "🔴"
	}
	return "🟠"
}

// markup is how a chat renders text: bold for Pulse's own labels, and esc
// for every value taken from events (account ids, attributes, messages),
// which must never become a mention, a link or markup.
type markup struct {
	bold func(string) string
	esc  func(string) string
}

var (
	plain = markup{bold: func(s string) string { return s }, esc: func(s string) string { return s }}
	// Slack mrkdwn: escaping &, < and > is all Slack asks; it leaves no way
	// to write <!channel>, <@U…> or <https://…|disguised link>.
	slackMrkdwn = markup{bold: func(s string) string { return "*" + s + "*" },
		esc: strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;").Replace}
	// Teams renders markdown and some HTML in a card's titles, text and
	// facts: markdown's link and emphasis characters are backslash-escaped,
	// HTML's as entities.
	teamsMarkdown = markup{bold: func(s string) string { return "**" + s + "**" },
		esc: strings.NewReplacer(`\`, `\\`, "`", "\\`", "*", `\*`, "_", `\_`, "~", `\~`, "[", `\[`, "]", `\]`,
			"(", `\(`, ")", `\)`, "#", `\#`, "|", `\|`, "&", "&amp;", "<", "&lt;", ">", "&gt;").Replace}
)

func title(t *rules.Transition, repeat int, mk markup) string {
	state := "firing"
	if t.State == rules.PhaseResolved {
		state = "resolved"
	} else if repeat > 0 {
		state = "still firing"
	}
	return fmt.Sprintf("%s %s — %s (%s, %s)", icon(t), mk.esc(t.AccountID), mk.esc(t.Rule), t.Severity, state)
}

// why is the plain-text explanation of one transition.
func (s *Sink) why(t *rules.Transition, mk markup) string {
	bold := mk.bold
	var b strings.Builder
	b.WriteString(mk.esc(t.Message))
	fmt.Fprintf(&b, "\n%s %s (%s) · owner %s · segment %s", bold("Score"), show(t.Score), t.Grade, orNone(mk.esc(t.Attrs[rules.CSM])), orNone(mk.esc(t.Attrs[rules.Segment])))
	if len(t.Values) > 0 {
		var parts []string
		for _, v := range t.Values {
			parts = append(parts, v.Name+" = "+show(v.Value))
		}
		fmt.Fprintf(&b, "\n%s %s", bold("Metrics"), strings.Join(parts, ", "))
	}
	if fs := rules.Costliest(t.Factors, 3); len(fs) > 0 {
		var parts []string
		for _, f := range fs {
			parts = append(parts, fmt.Sprintf("%s %s/100 (×%s)", f.Name, show(f.Points), show(f.Weight)))
		}
		fmt.Fprintf(&b, "\n%s %s", bold("Costs most"), strings.Join(parts, ", "))
	}
	return b.String()
}

func orNone(s string) string {
	if s == "" {
		return "—"
	}
	return s
}

// slack renders Block Kit: a header and a section per transition, with a
// button to the account.
func (s *Sink) slack(m *message) map[string]any {
	var blocks []any
	var fallback []string
	for i := range m.transitions {
		t := &m.transitions[i]
		// The fallback text (notifications) is parsed like mrkdwn; a header
		// is plain_text, which Slack shows as it is.
		fallback = append(fallback, title(t, m.repeat, slackMrkdwn))
		blocks = append(blocks, map[string]any{"type": "header", "text": map[string]any{"type": "plain_text", "text": trim(title(t, m.repeat, plain), 150)}})
		section := map[string]any{"type": "section", "text": map[string]any{"type": "mrkdwn", "text": trim(s.why(t, slackMrkdwn), 3000)}}
		if u := s.accountURL(t.AccountID); u != "" {
			section["accessory"] = map[string]any{"type": "button", "text": map[string]any{"type": "plain_text", "text": "Open account"}, "url": u}
		}
		blocks = append(blocks, section)
		blocks = append(blocks, map[string]any{"type": "context", "elements": []any{map[string]any{"type": "mrkdwn",
			"text": fmt.Sprintf("alert %s · %s · event time %s", slackMrkdwn.esc(t.ID), t.Kind, time.Unix(0, t.Ts).UTC().Format(time.RFC3339))}}})
	}
	return map[string]any{"text": strings.Join(fallback, "\n"), "blocks": blocks}
}

// teams renders an Office 365 connector MessageCard.
func (s *Sink) teams(m *message) map[string]any {
	var sections []any
	var actions []any
	color := "2EB67D"
	for i := range m.transitions {
		t := &m.transitions[i]
		if t.State == rules.PhaseFiring && t.Kind == rules.KindRisk {
			color = "D70000"
		}
		facts := []any{
			map[string]any{"name": "Score", "value": show(t.Score) + " (" + t.Grade.String() + ")"},
			map[string]any{"name": "Owner", "value": orNone(teamsMarkdown.esc(t.Attrs[rules.CSM]))},
			map[string]any{"name": "Severity", "value": t.Severity.String()},
		}
		for _, v := range t.Values {
			facts = append(facts, map[string]any{"name": v.Name, "value": show(v.Value)})
		}
		sections = append(sections, map[string]any{"activityTitle": title(t, m.repeat, teamsMarkdown), "text": s.why(t, teamsMarkdown), "facts": facts})
		if u := s.accountURL(t.AccountID); u != "" {
			actions = append(actions, map[string]any{"@type": "OpenUri", "name": "Open " + t.AccountID, "targets": []any{map[string]any{"os": "default", "uri": u}}})
		}
	}
	card := map[string]any{"@type": "MessageCard", "@context": "https://schema.org/extensions", "themeColor": color,
		"summary": title(&m.transitions[0], m.repeat, plain), "title": fmt.Sprintf("Pulse: %d alert change(s)", len(m.transitions)), "sections": sections}
	if len(actions) > 0 {
		card["potentialAction"] = actions
	}
	return card
}

func trim(s string, n int) string {
	if len([]rune(s)) <= n {
		return s
	}
	return string([]rune(s)[:n-1]) + "…"
}
