package backoff

import (
	"context"
	"testing"
	"testing/synctest"
	"time"
)

// The pauses double from Base up to Max, each drawn from [d/2, 3d/2).
func TestPausesDoubleUpToMaxWithJitter(t *testing.T) {
	for _, r := range []struct {
		name string
		rand func(int64) int64
		lo   bool // the draw is the lowest: d/2
	}{
		{"lowest", func(int64) int64 { return 0 }, true},
		{"highest", func(n int64) int64 { return n - 1 }, false},
	} {
		b := New(100*time.Millisecond, time.Second)
		b.Rand = r.rand
		var got []time.Duration
		for range 6 {
			got = append(got, b.Next())
		}
		for i, d := range []time.Duration{100, 200, 400, 800, 1000, 1000} {
			d *= time.Millisecond
			want := d / 2
			if !r.lo {
				want = d/2 + d - 1
			}
			if got[i] != want {
				t.Fatalf("%s: pauses %v, want %v at %d", r.name, got, want, i)
			}
		}
		b.Reset()
		if d := b.Next(); d != 50*time.Millisecond && d != 150*time.Millisecond-1 {
			t.Fatalf("%s: after Reset the pause is %v, want the first again", r.name, d)
		}
	}
	b := New(time.Second, time.Second)
	for range 1000 {
		if d := b.Next(); d < 500*time.Millisecond || d >= 1500*time.Millisecond {
			t.Fatalf("pause %v outside [0.5 s, 1.5 s)", d)
		}
	}
}

// Wait waits out the pause, and no longer once its context ends.
func TestWaitEndsWithThePauseOrTheContext(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := New(time.Second, time.Minute)
		b.Rand = func(n int64) int64 { return n / 2 } // the pause is d
		start := time.Now()
		if err := b.Wait(context.Background()); err != nil || time.Since(start) != time.Second {
			t.Fatalf("Wait: %v after %v, want nil after 1 s", err, time.Since(start))
		}
		ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
		defer cancel()
		start = time.Now()
		if err := b.Wait(ctx); err != context.DeadlineExceeded || time.Since(start) != 500*time.Millisecond {
			t.Fatalf("Wait: %v after %v, want the deadline after 0.5 s", err, time.Since(start))
		}
		if err := b.Wait(ctx); err != context.DeadlineExceeded {
			t.Fatalf("Wait on an ended context: %v", err)
		}
	})
}

// A test can replace the timer.
func TestInjectedTimer(t *testing.T) {
	var waited []time.Duration
	b := New(time.Hour, time.Hour)
	b.Rand = func(int64) int64 { return 0 }
	b.After = func(d time.Duration) <-chan time.Time {
		waited = append(waited, d)
		c := make(chan time.Time, 1)
		c <- time.Time{}
		return c
	}
	if err := b.Wait(context.Background()); err != nil || len(waited) != 1 || waited[0] != 30*time.Minute {
		t.Fatalf("Wait: %v, waited %v", err, waited)
	}
}
