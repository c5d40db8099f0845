package web

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"time"

	"github.com/pulsehq/pulse/engine"
	"github.com/pulsehq/pulse/rules"
)

// Previewer evaluates candidate rules against the live partitions,
// changing nothing (stream.Consumer does, on each partition's goroutine in
// turn). POST /api/rules/preview is served when the View is one.
type Previewer interface {
	// Preview returns the difference between the rules in force and
	// candidate on every account the instance holds, or an error when
	// some partition did not answer before ctx ended.
	Preview(ctx context.Context, candidate *rules.Ruleset) (*engine.Preview, error)
}

// PreviewTimeout bounds a preview where the Server sets none: the
// partitions evaluate every account twice, one partition after another
// (about 3 µs of CPU an account, up to 11 µs on a busy small machine: 30
// s is some 3 million accounts).
const PreviewTimeout = 30 * time.Second

// Account ids a preview lists per rule and for grade changes where the
// request names no limit, and at most.
const (
	previewIDs    = 1000
	maxPreviewIDs = 100_000
)

type alertCountJSON struct {
	Firing     int `json:"firing"`
	Suppressed int `json:"suppressed"`
	Pending    int `json:"pending"`
}

func alertCount(c *engine.AlertCount) *alertCountJSON {
	if c == nil {
		return nil
	}
	return &alertCountJSON{c.Firing, c.Suppressed, c.Pending}
}

type rulePreviewJSON struct {
	Rule                 string          `json:"rule"`
	Old                  *alertCountJSON `json:"old"`
	New                  *alertCountJSON `json:"new"`
	NewlyFlaggedCount    int             `json:"newly_flagged_count"`
	NoLongerFlaggedCount int             `json:"no_longer_flagged_count"`
	NewlyFlagged         []string        `json:"newly_flagged"`
	NoLongerFlagged      []string        `json:"no_longer_flagged"`
}

type gradeCountsJSON struct {
	Green  int `json:"green"`
	Yellow int `json:"yellow"`
	Red    int `json:"red"`
	None   int `json:"none"`
}

func gradeCounts(g [rules.GradeGreen + 1]int) gradeCountsJSON {
	return gradeCountsJSON{g[rules.GradeGreen], g[rules.GradeYellow], g[rules.GradeRed], g[rules.GradeNone]}
}

type gradeChangeJSON struct {
	AccountID string `json:"account_id"`
	Old       string `json:"old"`
	New       string `json:"new"`
}

type previewJSON struct {
	// The versions (content hashes) of the rules in force and of the
	// candidate.
	OldVersion string            `json:"old_version"`
	NewVersion string            `json:"new_version"`
	AsOf       *string           `json:"as_of"`
	Accounts   int               `json:"accounts"`
	Rules      []rulePreviewJSON `json:"rules"`
	Grades     struct {
		Old          gradeCountsJSON   `json:"old"`
		New          gradeCountsJSON   `json:"new"`
		ChangesCount int               `json:"changes_count"`
		Changes      []gradeChangeJSON `json:"changes"`
	} `json:"grades"`
}

// preview is POST /api/rules/preview[?file=NAME&ids=N]: the body is a
// rules file (YAML, at most 1 MiB); the answer compares it with the
// rules in force on every account, as engine.Partition.Preview says.
// Lists of account ids hold the first N (by id; 1,000 by default), and
// each comes with its full count.
func (s *Server) preview(w http.ResponseWriter, r *http.Request) {
	pr, ok := s.View.(Previewer)
	if !ok {
		http.Error(w, "rules preview is not available on this server", http.StatusNotFound)
		return
	}
	limit := previewIDs
	if q := r.URL.Query().Get("ids"); q != "" {
		n, err := strconv.Atoi(q)
		if err != nil || n < 0 {
			http.Error(w, fmt.Sprintf("ids %q: want a whole number ≥ 0", q), http.StatusBadRequest)
			return
		}
		limit = min(n, maxPreviewIDs)
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, rules.MaxFileBytes))
	if err != nil {
		if errors.As(err, new(*http.MaxBytesError)) {
			http.Error(w, fmt.Sprintf("a rules file is at most %d bytes (1 MiB)", rules.MaxFileBytes), http.StatusRequestEntityTooLarge)
			return
		}
		http.Error(w, "reading the rules file: "+err.Error(), http.StatusBadRequest)
		return
	}
	// ${VAR} in notify blocks expand as on a reload, so a file the
	// preview accepts, a reload accepts.
	rs, err := rules.Load(cmp.Or(r.URL.Query().Get("file"), "rules.yaml"), body, rules.LoadOptions{LookupEnv: os.LookupEnv})
	if err != nil {
		http.Error(w, "rules not previewed:\n"+err.Error(), http.StatusBadRequest)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), cmp.Or(s.PreviewTimeout, PreviewTimeout))
	defer cancel()
	pv, err := pr.Preview(ctx, rs)
	if err != nil {
		w.Header().Set("Retry-After", "10")
		http.Error(w, "rules not previewed: "+err.Error(), http.StatusServiceUnavailable)
		return
	}
	out := previewJSON{OldVersion: s.View.Rules().Version, NewVersion: rs.Version, Accounts: pv.Accounts, Rules: []rulePreviewJSON{}}
	if pv.Clock != 0 {
		t := time.Unix(0, pv.Clock).UTC().Format(time.RFC3339Nano)
		out.AsOf = &t
	}
	first := func(ids []string) []string {
		if ids == nil {
			return []string{}
		}
		return ids[:min(len(ids), limit)]
	}
	for _, rp := range pv.Rules {
		out.Rules = append(out.Rules, rulePreviewJSON{Rule: rp.Rule, Old: alertCount(rp.Old), New: alertCount(rp.New),
			NewlyFlaggedCount: len(rp.NewlyFlagged), NoLongerFlaggedCount: len(rp.NoLongerFlagged),
			NewlyFlagged: first(rp.NewlyFlagged), NoLongerFlagged: first(rp.NoLongerFlagged)})
	}
	out.Grades.Old, out.Grades.New = gradeCounts(pv.OldGrades), gradeCounts(pv.NewGrades)
	out.Grades.ChangesCount = len(pv.GradeChanges)
	out.Grades.Changes = []gradeChangeJSON{}
	for _, c := range pv.GradeChanges[:min(len(pv.GradeChanges), limit)] {
		out.Grades.Changes = append(out.Grades.Changes, gradeChangeJSON{c.AccountID, c.Old.String(), c.New.String()})
	}
	b, err := json.MarshalIndent(out, "", "  ")
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Write(append(b, '\n'))
}
