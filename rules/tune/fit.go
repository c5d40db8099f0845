package tune

import (
	"errors"
	"math"
	"slices"

	"gonum.org/v1/gonum/optimize"
)

// Sample is one renewal outcome with what the score saw at the horizon
// before it.
type Sample struct {
	Ts int64 // when the renewal ended, Unix nanoseconds: the split is by time
	// Points holds the factor points (0–100) by factor, in the caller's
	// order of factors; NaN where the metric was null or the account's
	// scorecard has no such factor.
	Points []float64
	// Weights holds the weights of the account's scorecard by factor (0
	// where it has no such factor): the score as the file computes it.
	Weights []float64
	// Cap is the lowest cap that held (+Inf when none did).
	Cap float64
	// Positive: the account churned or contracted.
	Positive bool
}

// Score is the score as package rules computes it: Σ weight × points ÷
// Σ weight over the factors with points, at most cap; NaN when no factor
// with a weight has points.
func Score(points, weights []float64, cap float64) float64 {
	var sum, total float64
	for j, p := range points {
		if math.IsNaN(p) || weights[j] <= 0 {
			continue
		}
		sum += weights[j] * p
		total += weights[j]
	}
	if total == 0 {
		return math.NaN()
	}
	return min(sum/total, cap)
}

// AUC is the area under the ROC curve of a score that is low for
// positives: the chance that a positive sample scores below a negative
// one (ties count half). 0.5 is a coin toss, 1 a perfect ranking. weights
// nil scores each sample with its own Weights; caps applies the samples'
// caps. ok is false without a positive and a negative sample to compare.
func AUC(samples []Sample, weights []float64, caps bool) (auc float64, ok bool) {
	type scored struct {
		score float64
		pos   bool
	}
	var all []scored
	var npos, nneg float64
	for _, s := range samples {
		w := weights
		if w == nil {
			w = s.Weights
		}
		c := math.Inf(1)
		if caps {
			c = s.Cap
		}
		x := Score(s.Points, w, c)
		if math.IsNaN(x) {
			continue
		}
		all = append(all, scored{x, s.Positive})
		if s.Positive {
			npos++
		} else {
			nneg++
		}
	}
	if npos == 0 || nneg == 0 {
		return 0, false
	}
	// Mann–Whitney: rank by score, highest first, so that a positive's
	// rank counts the negatives scoring above it; ties share their mean
	// rank.
	slices.SortFunc(all, func(a, b scored) int {
		switch {
		case a.score > b.score:
			return -1
		case a.score < b.score:
			return 1
		}
		return 0
	})
	var rankSum float64
	for i := 0; i < len(all); {
		j := i
		for j < len(all) && all[j].score == all[i].score {
			j++
		}
		mean := float64(i+j+1) / 2 // ranks i+1 … j
		for k := i; k < j; k++ {
			if all[k].pos {
				rankSum += mean
			}
		}
		i = j
	}
	return (rankSum - npos*(npos+1)/2) / (npos * nneg), true
}

// Model is a fitted logistic regression: the log-odds of a positive
// outcome is Intercept − Σ Coef[j] × points[j]/100, with every Coef ≥ 0
// (more points never raise the risk, as in the score).
type Model struct {
	Intercept float64
	Coef      []float64
	// Means are the mean points of each factor over the training
	// samples that have it: a sample without the factor is given the
	// mean.
	Means []float64
}

// ErrOneClass is returned by Fit when the training samples are all
// positive or all negative: nothing separates them.
var ErrOneClass = errors.New("the training renewals all ended the same way")

// Lambda is the L2 penalty on the coefficients: with a few hundred
// renewals, it keeps factors that nearly always score the same from
// taking extreme weights.
const Lambda = 1e-3

// Fit fits a Model to the samples by maximum likelihood with an L2
// penalty, with gonum's L-BFGS. The coefficients are kept non-negative by
// fitting their square roots: a score's weights must be > 0, and a factor
// that seems to work backwards in the sample is noise to drop, not a
// signal to invert.
func Fit(samples []Sample, factors int) (Model, error) {
	m := Model{Coef: make([]float64, factors), Means: make([]float64, factors)}
	var npos int
	for _, s := range samples {
		if s.Positive {
			npos++
		}
	}
	if npos == 0 || npos == len(samples) {
		return m, ErrOneClass
	}
	for j := range factors {
		var sum, n float64
		for _, s := range samples {
			if p := s.Points[j]; !math.IsNaN(p) {
				sum += p
				n++
			}
		}
		m.Means[j] = 50
		if n > 0 {
			m.Means[j] = sum / n
		}
	}
	// Features in [0, 1]: points ÷ 100, the mean where missing.
	x := make([][]float64, len(samples))
	y := make([]float64, len(samples))
	for i, s := range samples {
		x[i] = make([]float64, factors)
		for j, p := range s.Points {
			if math.IsNaN(p) {
				p = m.Means[j]
			}
			x[i][j] = p / 100
		}
		if s.Positive {
			y[i] = 1
		}
	}
	n := float64(len(samples))
	// Parameters: θ[0] is the intercept, θ[j+1]² the coefficient j.
	loss := func(theta []float64) float64 {
		var l float64
		for i := range x {
			z := logit(theta, x[i])
			l += softplus(z) - y[i]*z
		}
		l /= n
		for _, t := range theta[1:] {
			l += Lambda / 2 * t * t * t * t
		}
		return l
	}
	grad := func(g, theta []float64) {
		clear(g)
		for i := range x {
			d := (sigmoid(logit(theta, x[i])) - y[i]) / n
			g[0] += d
			for j, v := range x[i] {
				g[j+1] -= d * v // ∂z/∂β = −x
			}
		}
		for j, t := range theta[1:] {
			beta := t * t
			g[j+1] = (g[j+1] + Lambda*beta) * 2 * t
		}
	}
	theta := make([]float64, factors+1)
	for j := range factors {
		theta[j+1] = 1
	}
	res, err := optimize.Minimize(optimize.Problem{Func: loss, Grad: grad}, theta,
		&optimize.Settings{GradientThreshold: 1e-9, MajorIterations: 10000}, &optimize.LBFGS{})
	if err != nil && res == nil {
		return m, err
	}
	// A line search that can no longer improve ends with an error status
	// at the best point found: that point is the fit.
	for _, v := range res.X {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return m, errors.New("the fit did not converge")
		}
	}
	m.Intercept = res.X[0]
	for j := range factors {
		m.Coef[j] = res.X[j+1] * res.X[j+1]
	}
	return m, nil
}

func logit(theta, x []float64) float64 {
	z := theta[0]
	for j, v := range x {
		z -= theta[j+1] * theta[j+1] * v
	}
	return z
}

// softplus is log(1 + eᶻ) without overflow.
func softplus(z float64) float64 {
	if z > 0 {
		return z + math.Log1p(math.Exp(-z))
	}
	return math.Log1p(math.Exp(z))
}

func sigmoid(z float64) float64 { return 1 / (1 + math.Exp(-z)) }
