package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/pulsehq/pulse/engine"
	"github.com/pulsehq/pulse/rules"
)

// diffOptions are the settings of pulse replay --diff OLD NEW: what a
// rules change would have done on the history in the events.
type diffOptions struct {
	oldFile, newFile string
	eventsFile       string
	json             *bool
	maxIDs           *int
}

// takeDiffFiles takes "--diff OLD NEW" out of a replay command line: the
// flag package gives a flag one value, and this one has two.
func takeDiffFiles(args []string, stderr io.Writer) (diffOptions, []string, error) {
	var o diffOptions
	for i, a := range args {
		if a == "--" {
			break
		}
		if a == "--diff" || a == "-diff" {
			if i+2 >= len(args) || strings.HasPrefix(args[i+1], "-") || strings.HasPrefix(args[i+2], "-") {
				fmt.Fprintln(stderr, "pulse replay: --diff takes two rules files: --diff OLD NEW")
				return o, nil, errUsage
			}
			o.oldFile, o.newFile = args[i+1], args[i+2]
			return o, slices.Concat(args[:i], args[i+3:]), nil
		}
		if strings.HasPrefix(a, "--diff=") || strings.HasPrefix(a, "-diff=") {
			fmt.Fprintln(stderr, "pulse replay: --diff takes two rules files: --diff OLD NEW")
			return o, nil, errUsage
		}
	}
	return o, args, nil
}

// diffFileFlag shows --diff OLD NEW in the replay's help; takeDiffFiles
// has taken it out of the arguments before they are parsed.
type diffFileFlag struct{}

func (diffFileFlag) String() string   { return "" }
func (diffFileFlag) Set(string) error { return errors.New("takes two rules files: --diff OLD NEW") }

// diffFlags defines the flags of pulse replay that go with --diff.
func diffFlags(fs *flag.FlagSet, o *diffOptions) {
	fs.Var(diffFileFlag{}, "diff", "replay under two rules files, `OLD NEW`, and print what the change would have done, instead of the states")
	o.json = fs.Bool("json", false, "with --diff: print the diff as JSON")
	o.maxIDs = fs.Int("max-ids", 20, "with --diff: account ids listed per line of the table (0: all; --json lists all)")
}

// check refuses the flags that do not go with (or without) --diff.
func (o *diffOptions) check(rulesFile string, transitions bool, stderr io.Writer) error {
	var msg string
	switch {
	case o.oldFile == "" && (*o.json || *o.maxIDs != 20):
		msg = "--json and --max-ids go with --diff"
	case o.oldFile != "" && rulesFile != "":
		msg = "--diff OLD NEW replaces --rules"
	case o.oldFile != "" && transitions:
		msg = "--transitions does not go with --diff"
	case *o.maxIDs < 0:
		msg = "--max-ids must be ≥ 0"
	}
	if msg != "" {
		fmt.Fprintf(stderr, "pulse replay: %s\n", msg)
		return errUsage
	}
	return nil
}

// replayDiff replays the events once, under the old rules with the new
// ones as a shadow (engine.Replayer.Shadow): the state an event leaves
// does not depend on the rules, so one pass gives both replays' alerts and
// grades at little more than the cost of one.
func replayDiff(o diffOptions, cfg engine.Config, partitions int, at int64, stdin io.Reader, stdout, stderr io.Writer) error {
	oldRules, errOld := loadRules(o.oldFile)
	newRules, errNew := loadRules(o.newFile)
	if err := errors.Join(errOld, errNew); err != nil {
		printProblems(stderr, err)
		return quietError{err}
	}
	in := stdin
	if o.eventsFile != "-" {
		f, err := os.Open(o.eventsFile)
		if err != nil {
			return err
		}
		defer f.Close()
		in = f
	}
	rp := engine.NewReplayer(oldRules, cfg, partitions, at, time.Now().UnixNano())
	rp.Shadow(newRules)
	reported := 0
	rp.OnReject = func(line int, reason engine.Reason, detail string) {
		if reported++; reported <= maxRejectReports {
			fmt.Fprintf(stderr, "%s:%d: rejected (%s): %s\n", o.eventsFile, line, reason, detail)
		}
	}
	if err := eachLine(in, rp.Line, func(line int) {
		rp.OnReject(line, engine.ReasonJSON, "line longer than 1 MiB")
	}); err != nil {
		return fmt.Errorf("reading %s: %w", o.eventsFile, err)
	}
	end := rp.Finish()
	summarize(stderr, rp, reported)

	d := buildDiff(o, oldRules, newRules, rp, end)
	w := bufio.NewWriterSize(stdout, 1<<16)
	if *o.json {
		b, err := json.MarshalIndent(d, "", "  ")
		if err != nil {
			return err
		}
		w.Write(append(b, '\n'))
	} else {
		d.writeTable(w, *o.maxIDs)
	}
	if err := w.Flush(); err != nil && !brokenPipe(err) {
		return err
	}
	return nil
}

// rulesDiff is what pulse replay --diff prints (as JSON with --json).
type rulesDiff struct {
	Old      string     `json:"old"`
	New      string     `json:"new"`
	At       string     `json:"at"`     // the evaluation time of the replay
	Events   uint64     `json:"events"` // events applied
	Accounts int        `json:"accounts"`
	Rules    []ruleDiff `json:"rules"`
	Grades   gradeDiff  `json:"grades"`
}

// ruleDiff compares one alert rule under the two files; Old or New is
// nil where the file has no such rule.
type ruleDiff struct {
	Rule            string    `json:"rule"`
	Old             *ruleSide `json:"old"`
	New             *ruleSide `json:"new"`
	NewlyFlagged    []string  `json:"newly_flagged"`     // accounts it fired for under new only
	NoLongerFlagged []string  `json:"no_longer_flagged"` // accounts it fired for under old only
}

// ruleSide is what one rule did over the replay under one file.
type ruleSide struct {
	Episodes    int `json:"episodes"`      // transitions to firing
	Suppressed  int `json:"suppressed"`    // of those, silenced by an inhibiting alert
	Accounts    int `json:"accounts"`      // accounts with at least one episode
	FiringAtEnd int `json:"firing_at_end"` // episodes still firing at the end

	flagged map[string]bool
}

type gradeDiff struct {
	Old     gradeCounts   `json:"old"`
	New     gradeCounts   `json:"new"`
	Changes []gradeChange `json:"changes"` // by account id
}

type gradeCounts struct {
	Green  int `json:"green"`
	Yellow int `json:"yellow"`
	Red    int `json:"red"`
	None   int `json:"none"`
}

func (c *gradeCounts) add(g rules.Grade) {
	switch g {
	case rules.GradeGreen:
		c.Green++
	case rules.GradeYellow:
		c.Yellow++
	case rules.GradeRed:
		c.Red++
	default:
		c.None++
	}
}

func (c *gradeCounts) of(g rules.Grade) int {
	return [...]int{rules.GradeNone: c.None, rules.GradeRed: c.Red, rules.GradeYellow: c.Yellow, rules.GradeGreen: c.Green}[g]
}

type gradeChange struct {
	AccountID string `json:"account_id"`
	Old       string `json:"old"`
	New       string `json:"new"`
}

// episodes sums up transitions by rule.
func episodes(ts []rules.Transition) map[string]*ruleSide {
	sides := map[string]*ruleSide{}
	firing := map[[2]string]bool{} // (rule, account) → firing after its last transition
	for _, t := range ts {
		s := sides[t.Rule]
		if s == nil {
			s = &ruleSide{flagged: map[string]bool{}}
			sides[t.Rule] = s
		}
		key := [2]string{t.Rule, t.AccountID}
		firing[key] = t.State == rules.PhaseFiring
		if t.State != rules.PhaseFiring {
			continue
		}
		s.Episodes++
		if t.Suppressed {
			s.Suppressed++
		}
		s.flagged[t.AccountID] = true
	}
	for key, on := range firing {
		if on {
			sides[key[0]].FiringAtEnd++
		}
	}
	for _, s := range sides {
		s.Accounts = len(s.flagged)
	}
	return sides
}

func buildDiff(o diffOptions, oldRules, newRules *rules.Ruleset, rp *engine.Replayer, end int64) *rulesDiff {
	counts, _ := rp.Counts()
	d := &rulesDiff{Old: o.oldFile, New: o.newFile, At: time.Unix(0, end).UTC().Format(time.RFC3339Nano),
		Events: counts[engine.ReasonOK]}
	oldSides, newSides := episodes(rp.Transitions()), episodes(rp.ShadowTransitions())
	// The new file's rules in its order, then the rules it dropped.
	var names []string
	for _, a := range newRules.Alerts {
		names = append(names, a.Name)
	}
	for _, a := range oldRules.Alerts {
		if !slices.Contains(names, a.Name) {
			names = append(names, a.Name)
		}
	}
	side := func(rs *rules.Ruleset, sides map[string]*ruleSide, name string) *ruleSide {
		if !slices.ContainsFunc(rs.Alerts, func(a *rules.Alert) bool { return a.Name == name }) {
			return nil
		}
		if s := sides[name]; s != nil {
			return s
		}
		return &ruleSide{}
	}
	for _, name := range names {
		r := ruleDiff{Rule: name, Old: side(oldRules, oldSides, name), New: side(newRules, newSides, name),
			NewlyFlagged: []string{}, NoLongerFlagged: []string{}}
		var was, is map[string]bool
		if r.Old != nil {
			was = r.Old.flagged
		}
		if r.New != nil {
			is = r.New.flagged
		}
		for id := range is {
			if !was[id] {
				r.NewlyFlagged = append(r.NewlyFlagged, id)
			}
		}
		for id := range was {
			if !is[id] {
				r.NoLongerFlagged = append(r.NoLongerFlagged, id)
			}
		}
		slices.Sort(r.NewlyFlagged)
		slices.Sort(r.NoLongerFlagged)
		d.Rules = append(d.Rules, r)
	}
	d.Grades.Changes = []gradeChange{}
	rp.EachGrade(func(id string, was, is rules.Grade) {
		d.Accounts++
		d.Grades.Old.add(was)
		d.Grades.New.add(is)
		if was != is {
			d.Grades.Changes = append(d.Grades.Changes, gradeChange{AccountID: id, Old: was.String(), New: is.String()})
		}
	})
	return d
}

// writeTable writes the diff for a reader: a line per rule, the accounts
// each rule flags anew or no longer, and the grades at the end. At most
// maxIDs account ids are listed per line (0: all).
func (d *rulesDiff) writeTable(w io.Writer, maxIDs int) {
	fmt.Fprintf(w, "Rules %s → %s, replayed over %d events of %d accounts up to %s\n\n", d.Old, d.New, d.Events, d.Accounts, d.At)
	num := func(s *ruleSide, f func(*ruleSide) int) string {
		if s == nil {
			return "–"
		}
		return fmt.Sprint(f(s))
	}
	pair := func(r ruleDiff, f func(*ruleSide) int) string { return num(r.Old, f) + " → " + num(r.New, f) }
	rows := [][]string{{"alert", "episodes", "accounts", "firing at end", "newly flagged", "no longer flagged"}}
	for _, r := range d.Rules {
		name := r.Rule
		switch {
		case r.Old == nil:
			name += " (new)"
		case r.New == nil:
			name += " (removed)"
		}
		rows = append(rows, []string{name,
			pair(r, func(s *ruleSide) int { return s.Episodes }),
			pair(r, func(s *ruleSide) int { return s.Accounts }),
			pair(r, func(s *ruleSide) int { return s.FiringAtEnd }),
			fmt.Sprint(len(r.NewlyFlagged)), fmt.Sprint(len(r.NoLongerFlagged))})
	}
	writeColumns(w, rows, []bool{false, true, true, true, true, true})

	for _, list := range []struct {
		title string
		ids   func(ruleDiff) []string
	}{
		{"Newly flagged", func(r ruleDiff) []string { return r.NewlyFlagged }},
		{"No longer flagged", func(r ruleDiff) []string { return r.NoLongerFlagged }},
	} {
		var lines []string
		for _, r := range d.Rules {
			if ids := list.ids(r); len(ids) > 0 {
				lines = append(lines, fmt.Sprintf("  %s (%d): %s", r.Rule, len(ids), idList(ids, maxIDs)))
			}
		}
		if len(lines) == 0 {
			fmt.Fprintf(w, "\n%s: none\n", list.title)
			continue
		}
		fmt.Fprintf(w, "\n%s:\n%s\n", list.title, strings.Join(lines, "\n"))
	}

	fmt.Fprintf(w, "\nGrades at %s:\n", d.At)
	rows = [][]string{{"grade", "old", "new"}}
	for _, g := range []rules.Grade{rules.GradeGreen, rules.GradeYellow, rules.GradeRed, rules.GradeNone} {
		rows = append(rows, []string{g.String(), fmt.Sprint(d.Grades.Old.of(g)), fmt.Sprint(d.Grades.New.of(g))})
	}
	writeColumns(w, rows, []bool{false, true, true})
	if len(d.Grades.Changes) == 0 {
		fmt.Fprintln(w, "\nGrade changes: none")
		return
	}
	// Grouped by move, worst news first: from the best grade, to the worst.
	type move struct{ from, to string }
	byMove := map[move][]string{}
	var moves []move
	for _, c := range d.Grades.Changes {
		m := move{c.Old, c.New}
		if byMove[m] == nil {
			moves = append(moves, m)
		}
		byMove[m] = append(byMove[m], c.AccountID)
	}
	rank := func(g string) int { return slices.Index([]string{"green", "yellow", "red", "none"}, g) }
	slices.SortFunc(moves, func(a, b move) int {
		if x := rank(a.from) - rank(b.from); x != 0 {
			return x
		}
		return rank(b.to) - rank(a.to)
	})
	fmt.Fprintf(w, "\nGrade changes (%d):\n", len(d.Grades.Changes))
	for _, m := range moves {
		ids := byMove[m]
		fmt.Fprintf(w, "  %s → %s (%d): %s\n", m.from, m.to, len(ids), idList(ids, maxIDs))
	}
}

// idList joins account ids, at most max of them (0: all).
func idList(ids []string, max int) string {
	if max == 0 || len(ids) <= max {
		return strings.Join(ids, ", ")
	}
	return fmt.Sprintf("%s, … and %d more", strings.Join(ids[:max], ", "), len(ids)-max)
}

// writeColumns writes rows as aligned columns, two spaces apart; right
// aligns the columns it marks (numbers). Widths count runes: "→" is one
// column on a terminal.
func writeColumns(w io.Writer, rows [][]string, right []bool) {
	width := make([]int, len(right))
	for _, r := range rows {
		for i, c := range r {
			width[i] = max(width[i], utf8.RuneCountInString(c))
		}
	}
	for _, r := range rows {
		var b strings.Builder
		for i, c := range r {
			pad := strings.Repeat(" ", width[i]-utf8.RuneCountInString(c))
			if i > 0 {
				b.WriteString("  ")
			}
			if right[i] {
				b.WriteString(pad + c)
			} else {
				b.WriteString(c + pad)
			}
		}
		fmt.Fprintln(w, strings.TrimRight(b.String(), " "))
	}
}
