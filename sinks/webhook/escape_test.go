package webhook

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/pulsehq/pulse/rules"
)

// hostile is a transition whose event data tries to mention everyone and
// to disguise a link, in the account id, the attributes and the message.
func hostile() rules.Transition {
	tr := transition("acme<!here>", "churn_risk", rules.PhaseFiring, rules.SeverityHigh, "<!channel> <https://evil.example|Renew now>")
	tr.Attrs[rules.Segment] = "<@U0123> & [Renew now](https://evil.example)"
	tr.Message = "Renewal for <https://evil.example|acme> is due: **[pay here](https://evil.example)** <a href=\"https://evil.example\">now</a>"
	return tr
}

// The text Slack parses for mentions and links (mrkdwn and the fallback
// text) carries event values only escaped: &, < and > as entities.
func TestSlackEscapesEventValues(t *testing.T) {
	s := newSink(t, Config{PublicURL: "http://pulse.example"})
	n := notifier("slack", "slack", "http://unused.example", nil)
	body, err := s.body(&message{notifier: &n, transitions: []rules.Transition{hostile()}})
	if err != nil {
		t.Fatal(err)
	}
	var doc any
	if err := json.Unmarshal(body, &doc); err != nil {
		t.Fatal(err)
	}
	var parsed []string // texts Slack parses as mrkdwn
	parsed = append(parsed, doc.(map[string]any)["text"].(string))
	var walk func(v any)
	walk = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			if v["type"] == "mrkdwn" {
				parsed = append(parsed, v["text"].(string))
			}
			for _, x := range v {
				walk(x)
			}
		case []any:
			for _, x := range v {
				walk(x)
			}
		}
	}
	walk(doc)
	all := strings.Join(parsed, "\n")
	for _, bad := range []string{"<!channel>", "<!here>", "<@U0123>", "<https://evil.example", "<a href", " & "} {
		if strings.Contains(all, bad) {
			t.Errorf("Slack mrkdwn carries %q unescaped:\n%s", bad, all)
		}
	}
	for _, want := range []string{"&lt;!channel&gt; &lt;https://evil.example|Renew now&gt;", "&lt;@U0123&gt; &amp; [Renew now]", "Renewal for &lt;https://evil.example|acme&gt;", "acme&lt;!here&gt;"} {
		if !strings.Contains(all, want) {
			t.Errorf("Slack mrkdwn lacks %q (escaped, still readable):\n%s", want, all)
		}
	}
}

// Teams renders markdown (and some HTML) in a card's titles, text and
// facts: event values there are escaped so they cannot make links,
// emphasis or markup.
func TestTeamsEscapesEventValues(t *testing.T) {
	s := newSink(t, Config{PublicURL: "http://pulse.example"})
	n := notifier("teams", "teams", "http://unused.example", nil)
	body, err := s.body(&message{notifier: &n, transitions: []rules.Transition{hostile()}})
	if err != nil {
		t.Fatal(err)
	}
	var card struct {
		Title    string `json:"title"`
		Sections []struct {
			ActivityTitle string `json:"activityTitle"`
			Text          string `json:"text"`
			Facts         []struct{ Name, Value string }
		} `json:"sections"`
	}
	if err := json.Unmarshal(body, &card); err != nil {
		t.Fatal(err)
	}
	parsed := []string{card.Title}
	for _, sec := range card.Sections {
		parsed = append(parsed, sec.ActivityTitle, sec.Text)
		for _, f := range sec.Facts {
			parsed = append(parsed, f.Name, f.Value)
		}
	}
	all := strings.Join(parsed, "\n")
	for _, bad := range []string{"[Renew now](", "[pay here](", "**[", "<a href", "<https://", "<!channel>", "<@U0123>"} {
		if strings.Contains(all, bad) {
			t.Errorf("Teams markdown carries %q unescaped:\n%s", bad, all)
		}
	}
	for _, want := range []string{`\[Renew now\]\(https://evil.example\)`, `\*\*\[pay here\]`, "&lt;a href", "acme&lt;!here&gt;"} {
		if !strings.Contains(all, want) {
			t.Errorf("Teams markdown lacks %q (escaped, still readable):\n%s", want, all)
		}
	}
	if !strings.Contains(all, "**Score**") {
		t.Errorf("Pulse's own markup is escaped too:\n%s", all)
	}
}
