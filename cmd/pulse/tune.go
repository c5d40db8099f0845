package main

import (
	"bytes"
	"cmp"
	"fmt"
	"io"
	"math"
	"os"
	"slices"
	"strconv"
	"time"

	"github.com/pulsehq/pulse/engine"
	"github.com/pulsehq/pulse/rules"
	"github.com/pulsehq/pulse/rules/tune"
)

// noEval pushes evaluations and sweeps past any stream: pulse tune reads
// factor points at the probes' times and needs no alert, grade or caps'
// history, so its replay is decode and apply alone (twice as fast).
const noEval = 4000 * 24 * time.Hour

// tuneCmd fits the score's factor weights to the renewal outcomes in the
// events (SPEC §6) and prints the rules file with them.
func tuneCmd(args []string, _ io.Reader, stdout, stderr io.Writer) error {
	fs := newFlagSet("tune")
	rulesFile := fs.String("rules", "", "rules `FILE` (YAML) whose weights to fit, required")
	eventsFile := fs.String("events", "", "JSONL events `FILE`, required (read twice, so not standard input)")
	horizon := durationVar(fs, "horizon", 90*24*time.Hour, "how long before each renewal its account's factor points are read")
	holdout := fs.Float64("holdout", 0.3, "share of the renewals, the latest, held out of the fit to measure it")
	if err := parseFlags(fs, args, stdout, stderr); err != nil {
		return err
	}
	endOnBrokenPipe()
	if *rulesFile == "" || *eventsFile == "" || *eventsFile == "-" || fs.NArg() > 0 || *horizon <= 0 || !(*holdout > 0 && *holdout < 1) {
		fmt.Fprintln(stderr, "pulse tune: --rules and --events FILE are required, --horizon must be positive and --holdout between 0 and 1")
		fs.Usage()
		return errUsage
	}
	src, err := os.ReadFile(*rulesFile)
	if err != nil {
		return err
	}
	rs, err := rules.Load(*rulesFile, src, rules.LoadOptions{LookupEnv: os.LookupEnv})
	if err != nil {
		printProblems(stderr, err)
		return quietError{err}
	}

	renewals, err := readRenewals(*eventsFile)
	if err != nil {
		return err
	}
	if len(renewals) == 0 {
		fmt.Fprintf(stderr, "pulse tune: %s holds no renewal outcome (events of type renewal): nothing to fit the weights to\n", *eventsFile)
		return errProblems
	}
	factors, current := factorNames(rs)
	samples, skipped, err := probeRenewals(rs, *eventsFile, renewals, *horizon, factors, stderr)
	if err != nil {
		return err
	}
	if len(samples) == 0 {
		fmt.Fprintf(stderr, "pulse tune: none of the %d renewals has an account scored %s before it (unknown then, or in warm-up): try a shorter --horizon\n",
			len(renewals), rules.FormatDuration(*horizon))
		return errProblems
	}
	slices.SortStableFunc(samples, func(a, b tune.Sample) int { return cmp.Compare(a.Ts, b.Ts) })
	nTest := int(math.Round(float64(len(samples)) * *holdout))
	train, test := samples[:len(samples)-nTest], samples[len(samples)-nTest:]
	model, err := tune.Fit(train, len(factors))
	if err != nil {
		fmt.Fprintf(stderr, "pulse tune: cannot fit %d renewals (%d scored at the horizon, %d of them in training, %d churned or contracted): %v\n",
			len(renewals), len(samples), len(train), positives(train), err)
		return errProblems
	}
	fitted, ok := scaleWeights(model.Coef, factors, current, rs)
	if !ok {
		fmt.Fprintf(stderr, "pulse tune: no factor tells the %d churned or contracted accounts from the others at %s before their renewals\n",
			positives(train), rules.FormatDuration(*horizon))
		return errProblems
	}

	var rep bytes.Buffer
	r := report{events: *eventsFile, horizon: *horizon, renewals: len(renewals), skipped: skipped,
		train: train, test: test, factors: factors, current: current, fitted: fitted, coef: model.Coef}
	r.write(&rep)
	out, err := tune.Rewrite(src, func(name, old string) (string, string, bool) {
		j := slices.Index(factors, name)
		if j < 0 {
			return "", "", false
		}
		return formatWeight(fitted[j]), r.comment(j, old), true
	})
	if err != nil {
		return fmt.Errorf("%s: %w", *rulesFile, err)
	}
	rep.Write(out)
	if _, err := stdout.Write(rep.Bytes()); err != nil && !brokenPipe(err) {
		return err
	}
	return nil
}

// renewal is one renewal outcome of the events.
type renewal struct {
	account  string
	ts       int64
	positive bool // churned or contracted
}

// readRenewals reads the renewal events of a JSONL file (first pass).
func readRenewals(path string) ([]renewal, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var (
		dec engine.Decoder
		ev  engine.Event
		out []renewal
	)
	err = eachLine(f, func(_ int, line []byte) {
		if !bytes.Contains(line, []byte(`renewal`)) {
			return // most lines: skip the decoding
		}
		if dec.Decode(line, &ev) == engine.ReasonOK && ev.Type == engine.TypeRenewal {
			out = append(out, renewal{string(ev.Account), ev.Ts,
				ev.Outcome == engine.OutcomeChurned || ev.Outcome == engine.OutcomeContracted})
		}
	}, func(int) {})
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", path, err)
	}
	return out, nil
}

// factorNames lists the factor names of every scorecard, the score
// block's first, and each one's weight there (else in the first
// scorecard that has it). One weight is fitted per name: the renewals of
// one scorecard are rarely enough to fit it alone.
func factorNames(rs *rules.Ruleset) (names []string, weights []float64) {
	for _, c := range append([]*rules.Scorecard{rs.Default}, rs.Scorecards...) {
		for _, f := range c.Factors {
			if !slices.Contains(names, f.Name) {
				names = append(names, f.Name)
				weights = append(weights, f.Weight)
			}
		}
	}
	return names, weights
}

// probeRenewals replays the events (second pass) and reads each renewal's
// account at the horizon before it. Renewals whose account was unknown
// or unscored then (warm-up) are skipped.
func probeRenewals(rs *rules.Ruleset, path string, renewals []renewal, horizon time.Duration, factors []string, stderr io.Writer) ([]tune.Sample, int, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, 0, err
	}
	defer f.Close()
	probes := make([]engine.Probe, len(renewals))
	for i, r := range renewals {
		probes[i] = engine.Probe{AccountID: r.account, At: r.ts - int64(horizon)}
	}
	caps := map[string]float64{} // scorecard/cap → max
	for _, c := range append([]*rules.Scorecard{rs.Default}, rs.Scorecards...) {
		for _, cp := range c.Caps {
			caps[c.Name+"/"+cp.Name] = cp.Max
		}
	}
	var samples []tune.Sample
	skipped := 0
	rp := engine.NewReplayer(rs, engine.Config{EvalInterval: noEval, SweepInterval: noEval}, 8, 0, time.Now().UnixNano())
	rp.SetProbes(probes, func(i int, s *engine.AccountState) {
		if s == nil || rules.IsNull(s.Score) {
			skipped++
			return
		}
		x := tune.Sample{Ts: renewals[i].ts, Positive: renewals[i].positive, Cap: math.Inf(1),
			Points: make([]float64, len(factors)), Weights: make([]float64, len(factors))}
		for j := range x.Points {
			x.Points[j] = math.NaN()
		}
		for _, fr := range s.Factors {
			j := slices.Index(factors, fr.Name)
			x.Points[j], x.Weights[j] = fr.Points, fr.Weight
		}
		for _, name := range s.Caps {
			x.Cap = min(x.Cap, caps[s.Scorecard+"/"+name])
		}
		samples = append(samples, x)
	})
	if err := eachLine(f, rp.Line, func(int) {}); err != nil {
		return nil, 0, fmt.Errorf("reading %s: %w", path, err)
	}
	rp.Finish()
	counts, _ := rp.Counts()
	var rejected uint64
	for r, n := range counts {
		if r != int(engine.ReasonOK) {
			rejected += n
		}
	}
	if rejected > 0 {
		fmt.Fprintf(stderr, "pulse tune: %d events rejected (pulse replay lists them)\n", rejected)
	}
	return samples, skipped, nil
}

func positives(s []tune.Sample) int {
	n := 0
	for _, x := range s {
		if x.Positive {
			n++
		}
	}
	return n
}

// minWeight stands in for a fitted weight of 0: a rules file's weights
// must be positive.
const minWeight = 0.01

// scaleWeights turns the fitted coefficients into rules-file weights: a
// score is a weighted mean, so only their ratios matter; they are scaled
// to add up to what the score block's weights add up to now, rounded to
// two decimals, and at least minWeight. ok is false when every
// coefficient of the score block is 0.
func scaleWeights(coef []float64, names []string, current []float64, rs *rules.Ruleset) ([]float64, bool) {
	var sumCoef, sumNow float64
	for _, f := range rs.Default.Factors {
		j := slices.Index(names, f.Name)
		sumCoef += coef[j]
		sumNow += current[j]
	}
	if sumCoef < 1e-9 {
		return nil, false
	}
	out := make([]float64, len(coef))
	for j, c := range coef {
		out[j] = max(math.Round(c*sumNow/sumCoef*100)/100, minWeight)
	}
	return out, true
}

func formatWeight(w float64) string { return strconv.FormatFloat(w, 'f', -1, 64) }

// report is what pulse tune says about the fit, as comments at the top of
// the rules file it prints.
type report struct {
	events                string
	horizon               time.Duration
	renewals, skipped     int
	train, test           []tune.Sample
	factors               []string
	current, fitted, coef []float64
}

func (r *report) write(w io.Writer) {
	day := func(ns int64) string { return time.Unix(0, ns).UTC().Format("2006-01-02") }
	h := rules.FormatDuration(r.horizon)
	fmt.Fprintf(w, "# Factor weights fitted by pulse tune to the renewal outcomes in %s,\n", r.events)
	fmt.Fprintf(w, "# from each account's factor points %s before its renewal.\n", h)
	fmt.Fprintf(w, "#\n# Renewals: %d; %d skipped (account unknown, or not yet scored, %s before).\n", r.renewals, r.skipped, h)
	fmt.Fprintf(w, "# Fitted on the first %d by time (%d churned or contracted), %s to %s;\n",
		len(r.train), positives(r.train), day(r.train[0].Ts), day(r.train[len(r.train)-1].Ts))
	if len(r.test) > 0 {
		fmt.Fprintf(w, "# held out: the last %d (%d churned or contracted), %s to %s.\n",
			len(r.test), positives(r.test), day(r.test[0].Ts), day(r.test[len(r.test)-1].Ts))
	} else {
		fmt.Fprintln(w, "# held out: none.")
	}
	uniform := make([]float64, len(r.factors))
	for j := range uniform {
		uniform[j] = 1
	}
	auc := func(s []tune.Sample, w []float64, caps bool) string {
		a, ok := tune.AUC(s, w, caps)
		if !ok {
			return "n/a"
		}
		return fmt.Sprintf("%.3f", a)
	}
	fmt.Fprintf(w, "#\n# AUC: the chance that a churned or contracted account scored below one that\n")
	fmt.Fprintf(w, "# renewed, %s before (0.5: a coin toss; 1: every one below). The score is\n", h)
	fmt.Fprintf(w, "# computed as the rules compute it, caps included; \"factors\" leaves the caps out.\n#\n")
	rows := [][]string{{"#  weights", "held out", "(factors)", "training", "(factors)"}}
	for _, v := range []struct {
		name string
		w    []float64
	}{{"the file's", nil}, {"uniform (all 1)", uniform}, {"fitted", r.fitted}} {
		rows = append(rows, []string{"#  " + v.name, auc(r.test, v.w, true), auc(r.test, v.w, false), auc(r.train, v.w, true), auc(r.train, v.w, false)})
	}
	writeColumns(w, rows, []bool{false, true, true, true, true})
	fmt.Fprintln(w, "#")
	rows = [][]string{{"#  factor", "weight", "fitted"}}
	for j, name := range r.factors {
		rows = append(rows, []string{"#  " + name, formatWeight(r.current[j]), formatWeight(r.fitted[j])})
	}
	writeColumns(w, rows, []bool{false, true, true})
	fmt.Fprintln(w, "#")
}

// comment is the comment on factor j's weight line: the weight it
// replaces and what the fit says of the factor.
func (r *report) comment(j int, was string) string {
	if r.coef[j] < 0.005 {
		return fmt.Sprintf("fitted (was %s): no sign of churn or contraction in these renewals, so the least weight", was)
	}
	return fmt.Sprintf("fitted (was %s): at 100 points rather than 0, the odds of churn or contraction ×%.2f", was, math.Exp(-r.coef[j]))
}
