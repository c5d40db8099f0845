package web

import (
	"context"
	"fmt"
	"testing"

	"github.com/pulsehq/pulse/engine"
	"github.com/pulsehq/pulse/rules"
)

func TestWebRecentKeepsTheLatestWithinBounds(t *testing.T) {
	r := NewRecent(3, 5)
	write := func(account string, n int) {
		b := &engine.Batch{}
		for i := range n {
			b.Transitions = append(b.Transitions, rules.Transition{ID: fmt.Sprintf("%s-%d", account, i), AccountID: account, Rule: "r",
				Values: []rules.NamedValue{{Name: "dau", Value: float64(i)}}})
		}
		r.Write(context.Background(), b)
		b.Transitions[0].Values[0].Value = -1 // the caller reuses its batch
	}
	write("a", 5)
	if got := r.Account("a"); len(got) != 3 || got[0].ID != "a-4" || got[2].ID != "a-2" || got[2].Values[0].Value != 2 {
		t.Fatalf("a: %+v", got)
	}
	write("b", 2)
	write("c", 2) // 7 > 5: a's two oldest go
	if got := r.Account("a"); len(got) != 1 || got[0].ID != "a-4" || r.Len() != 5 {
		t.Fatalf("a after b and c: %+v, %d kept", got, r.Len())
	}
	write("c", 2) // already kept: a retried batch
	if r.Len() != 5 || len(r.Account("c")) != 2 {
		t.Fatalf("a batch written twice is kept twice: %d", r.Len())
	}
	for i := range 1000 {
		write(fmt.Sprint("x", i), 1)
	}
	if r.Len() != 5 || len(r.Account("a")) != 0 || len(r.fifo)-r.head > 2*5+64 {
		t.Fatalf("%d kept, fifo %d", r.Len(), len(r.fifo)-r.head)
	}
}

func TestWebRecentIsSafeForConcurrentUse(t *testing.T) {
	r := NewRecent(4, 50)
	done := make(chan struct{})
	for w := range 4 {
		go func() {
			defer func() { done <- struct{}{} }()
			for i := range 500 {
				id := fmt.Sprint("acct", i%20)
				r.Write(context.Background(), &engine.Batch{Transitions: []rules.Transition{{ID: fmt.Sprint(w, i), AccountID: id}}})
				r.Account(id)
			}
		}()
	}
	for range 4 {
		<-done
	}
	if r.Len() != 50 {
		t.Fatalf("%d kept, want 50", r.Len())
	}
}
