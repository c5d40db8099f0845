package file

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pulsehq/pulse/engine"
	"github.com/pulsehq/pulse/rules"
)

func TestTransitionsAppendAsJSONLines(t *testing.T) {
	path := filepath.Join(t.TempDir(), "out.jsonl")
	batch := &engine.Batch{Transitions: []rules.Transition{
		{ID: "a1", AccountID: "acme", Rule: "gone_dark", State: rules.PhaseFiring, Score: rules.Null, Message: "quiet \"for\" days"},
		{ID: "a1", AccountID: "acme", Rule: "gone_dark", State: rules.PhaseResolved, Score: 80},
	}}
	for range 2 { // a reopened file is appended to, as after a restart
		s, err := Open(path)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Write(context.Background(), batch); err != nil {
			t.Fatal(err)
		}
		// Accepted means on disk, before Close.
		data, _ := os.ReadFile(path)
		if n := strings.Count(string(data), "\n"); n%2 != 0 || n == 0 {
			t.Fatalf("%d lines on disk after an accepted write", n)
		}
		s.Close(context.Background())
	}
	data, _ := os.ReadFile(path)
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	if len(lines) != 4 {
		t.Fatalf("%d lines", len(lines))
	}
	var tr map[string]any
	if err := json.Unmarshal([]byte(lines[0]), &tr); err != nil || tr["alert_id"] != "a1" || tr["state"] != "firing" || tr["message"] != `quiet "for" days` || tr["score"] != nil {
		t.Fatalf("line 1: %v %v", tr, err)
	}
}
