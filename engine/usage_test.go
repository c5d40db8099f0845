package engine

import (
	"fmt"
	"math/rand/v2"
	"os"
	"testing"
	"time"
	"unsafe"

	"github.com/cespare/xxhash/v2"

	"github.com/pulsehq/pulse/rules"
)

// Every engine test checks the cached day-bucket metrics against a fresh
// computation wherever they are used.
func TestMain(m *testing.M) {
	verifyUsage = true
	os.Exit(m.Run())
}

// The cached day-bucket metrics follow every kind of event exactly: in
// order and late, new and returning users, mobile, modules entering the
// window and a full module list, API counts that saturate, a new day and
// a rules change that reclassifies modules. verifyUsage panics on the
// first drift; the test also checks that the cache is really used.
func TestCachedDayMetricsFollowEvents(t *testing.T) {
	rs := exampleRules(t)
	p := NewPartition(0, rs, Config{EvalInterval: time.Nanosecond})
	var d Decoder
	var ev Event
	r := rand.New(rand.NewPCG(1, 2))
	modules := []string{"reports", "dashboards", "workflows", "contacts", "api_builder", "billing"}
	start := nov20.AddDate(0, 0, -40)
	var tracked int
	apply := func(line string) {
		t.Helper()
		if res := d.Decode([]byte(line), &ev); res != ReasonOK {
			t.Fatalf("%s: %s", line, res)
		}
		if res := p.Apply(&ev, 0); res != ReasonOK {
			t.Fatalf("%s: %s", line, res)
		}
		if a := p.accounts[xxhash.Sum64String("acme")]; a != nil && a.usage.dayPlus1 != 0 {
			tracked++
		}
	}
	ts := start
	for i := range 4000 {
		ts = ts.Add(time.Duration(r.IntN(40)) * time.Minute)
		at := ts
		if r.IntN(20) == 0 { // late: a few days back
			at = ts.Add(-time.Duration(1+r.IntN(5*24)) * time.Hour)
		}
		user := fmt.Sprintf("u%d", r.IntN(60))
		stamp := at.Format(time.RFC3339Nano)
		switch k := r.IntN(10); {
		case k < 3:
			platform := "web"
			if r.IntN(4) == 0 {
				platform = "mobile"
			}
			apply(fmt.Sprintf(`{"ts":%q,"account_id":"acme","type":"login","user_id":%q,"platform":%q}`, stamp, user, platform))
		case k < 6:
			module := modules[r.IntN(len(modules))]
			if i < 1200 || r.IntN(10) == 0 {
				module = fmt.Sprintf("custom_%d", i) // fills the module list past its cap
			}
			apply(fmt.Sprintf(`{"ts":%q,"account_id":"acme","type":"feature","user_id":%q,"module":%q}`, stamp, user, module))
		case k < 8:
			apply(fmt.Sprintf(`{"ts":%q,"account_id":"acme","type":"session","user_id":%q,"duration_s":%d}`, stamp, user, r.IntN(4000)))
		case k < 9:
			count := r.IntN(500)
			if r.IntN(50) == 0 {
				count = 4_000_000_000 // saturates the day's counter
			}
			apply(fmt.Sprintf(`{"ts":%q,"account_id":"acme","type":"api","count":%d}`, stamp, count))
		default:
			apply(fmt.Sprintf(`{"ts":%q,"account_id":"acme","type":"ticket_opened","ticket_id":"t%d"}`, stamp, i))
		}
		if i == 2000 { // reclassify the modules: cached counts must follow
			p.SetRules(fixedRules(t))
		}
	}
	p.AdvanceTo(ts.Add(36 * time.Hour).UnixNano())
	if tracked < 1000 {
		t.Fatalf("the cache followed only %d of 4000 events: it is not used", tracked)
	}
}

// The check itself catches a drift.
func TestCachedDayMetricsDriftIsCaught(t *testing.T) {
	p := NewPartition(0, exampleRules(t), Config{})
	var d Decoder
	var ev Event
	d.Decode([]byte(`{"ts":"2026-11-20T10:00:00Z","account_id":"acme","type":"login","user_id":"u"}`), &ev)
	p.Apply(&ev, 0)
	a := p.accounts[xxhash.Sum64String("acme")]
	if a.usage.dayPlus1 == 0 {
		t.Fatal("no cached day metrics after an evaluation")
	}
	a.usage.dau += 3
	defer func() {
		if recover() == nil {
			t.Fatal("a drifted cache went unnoticed")
		}
	}()
	var v rules.Values
	a.metrics(p.clock, &p.classes, &v)
}

// The account record stays within the 768-byte allocation size class: at
// a million accounts each byte over it costs the next class (896 bytes)
// for every account. Grow it only on purpose, and say so in the memory
// results of bench/.
func TestAccountFitsItsSizeClass(t *testing.T) {
	if n := unsafe.Sizeof(account{}); n > 768 {
		t.Fatalf("account is %d bytes, over the 768-byte size class", n)
	}
}
