package tune

import (
	"math"
	"math/rand/v2"
	"os"
	"strings"
	"testing"

	"github.com/pulsehq/pulse/rules"
)

func TestScore(t *testing.T) {
	nan := math.NaN()
	for _, c := range []struct {
		points, weights []float64
		cap, want       float64
	}{
		{[]float64{100, 0}, []float64{3, 1}, math.Inf(1), 75},
		{[]float64{100, nan}, []float64{3, 1}, math.Inf(1), 100}, // a null factor's weight goes to the others
		{[]float64{100, 0}, []float64{3, 0}, math.Inf(1), 100},   // not in the scorecard
		{[]float64{100, 0}, []float64{3, 1}, 39, 39},
		{[]float64{nan, nan}, []float64{3, 1}, 39, nan},
	} {
		if got := Score(c.points, c.weights, c.cap); got != c.want && !(math.IsNaN(got) && math.IsNaN(c.want)) {
			t.Errorf("Score(%v, %v, %v) = %v, want %v", c.points, c.weights, c.cap, got, c.want)
		}
	}
}

// By hand: positives score 10 and 30, negatives 20, 30 and 40. Of the six
// pairs, a positive is below in four and ties in one: 4.5 / 6.
func TestAUC(t *testing.T) {
	var s []Sample
	for _, x := range []struct {
		p   float64
		pos bool
	}{{10, true}, {30, true}, {20, false}, {40, false}, {30, false}} {
		s = append(s, Sample{Points: []float64{x.p}, Weights: []float64{1}, Cap: math.Inf(1), Positive: x.pos})
	}
	if auc, ok := AUC(s, nil, true); !ok || auc != 0.75 {
		t.Errorf("AUC = %v, %v; want 0.75", auc, ok)
	}
	if auc, _ := AUC(s, []float64{2}, false); auc != 0.75 {
		t.Errorf("AUC with other weights = %v; want 0.75 (one factor: the weight cannot matter)", auc)
	}
	if _, ok := AUC(s[:2], nil, true); ok {
		t.Error("AUC of positives alone is defined")
	}
}

// A factor that predicts the outcome gets the weight, one that is noise
// little, and one that seems to work backwards none (never a negative
// weight); a factor missing from half the samples still counts.
func TestFitFindsTheSignal(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	var samples []Sample
	for range 2000 {
		signal, noise, backwards := r.Float64()*100, r.Float64()*100, r.Float64()*100
		z := 2 - 5*signal/100 + 1.5*backwards/100
		pos := r.Float64() < 1/(1+math.Exp(-z))
		missing := math.NaN()
		if r.IntN(2) == 0 {
			missing = 100 - signal // the same signal, when present
		}
		samples = append(samples, Sample{Points: []float64{signal, noise, backwards, missing}, Positive: pos})
	}
	m, err := Fit(samples, 4)
	if err != nil {
		t.Fatal(err)
	}
	if !(m.Coef[0] > 3 && m.Coef[0] < 7) || m.Coef[1] > 0.5 || m.Coef[2] > 1e-3 || m.Coef[3] < 0 {
		t.Errorf("coefficients %v: want about 5 for the signal, little for the noise, 0 for the backwards factor", m.Coef)
	}
	for _, c := range m.Coef {
		if c < 0 {
			t.Errorf("negative coefficient: %v", m.Coef)
		}
	}
	if _, err := Fit(samples[:1], 4); err != ErrOneClass {
		t.Errorf("one sample: %v, want ErrOneClass", err)
	}
}

// Rewrite changes the weights and their comments and nothing else: a
// factor list shared by an anchor once, flow-style factors on their line,
// a weight line's own comment replaced.
func TestRewrite(t *testing.T) {
	src := `x-factors: &factors
  - name: adoption      # share of the seats in use
    metric: seat_login_ratio_7d
    weight: 3
    points: [[0.1, 0], [0.5, 100]]
  - name: recency
    metric: days_since_active
    weight: 2           # recent use matters
    points: [[2, 100], [10, 0]]
scorecards:
  - name: onboarding
    match: {stage: [onboarding]}
    factors:
      - {name: recency, metric: days_since_active, weight: 1.5, points: [[2, 100], [10, 0]]}
  - name: strategic
    match: {segment: [strategic]}
    factors: *factors
score:
  factors: *factors
`
	want := `x-factors: &factors
  - name: adoption      # share of the seats in use
    metric: seat_login_ratio_7d
    weight: 4.25  # a was 3
    points: [[0.1, 0], [0.5, 100]]
  - name: recency
    metric: days_since_active
    weight: 0.01  # r was 2
    points: [[2, 100], [10, 0]]
scorecards:
  - name: onboarding
    match: {stage: [onboarding]}
    factors:
      - {name: recency, metric: days_since_active, weight: 0.01, points: [[2, 100], [10, 0]]}  # r was 1.5
  - name: strategic
    match: {segment: [strategic]}
    factors: *factors
score:
  factors: *factors
`
	got, err := Rewrite([]byte(src), func(name, old string) (string, string, bool) {
		return map[string]string{"adoption": "4.25", "recency": "0.01"}[name], name[:1] + " was " + old, true
	})
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != want {
		t.Errorf("got:\n%s\nwant:\n%s", got, want)
	}
}

// The shipped model, rewritten, still loads, with the new weights in
// every scorecard.
func TestRewriteTheShippedModel(t *testing.T) {
	src, err := os.ReadFile("../../deploy/rules/example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	out, err := Rewrite(src, func(name, _ string) (string, string, bool) { return "0.5", "fitted: " + name, true })
	if err != nil {
		t.Fatal(err)
	}
	rs, err := rules.Load("tuned.yaml", out, rules.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range append(rs.Scorecards, rs.Default) {
		for _, f := range c.Factors {
			if f.Weight != 0.5 {
				t.Errorf("%s/%s: weight %v", c.Name, f.Name, f.Weight)
			}
		}
	}
	if n := strings.Count(string(out), "# fitted: "); n != 15 { // 10 shared by the anchor, 5 of onboarding's own
		t.Errorf("%d comments, want 15", n)
	}
}
