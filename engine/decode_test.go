package engine

import (
	"strings"
	"testing"
	"time"

	"github.com/pulsehq/pulse/rules"
)

func TestDecodeValid(t *testing.T) {
	var d Decoder
	var ev Event
	line := `{"ts":"2026-11-20T10:00:00.5+02:00","account_id":"acme","type":"feature","user_id":"u\u00e9","module":"reports","platform":"mobile","extra":{"x":[1,2]}}`
	if r := d.Decode([]byte(line), &ev); r != ReasonOK {
		t.Fatalf("rejected: %s (%s)", r, d.Detail())
	}
	want := time.Date(2026, 11, 20, 8, 0, 0, 5e8, time.UTC).UnixNano()
	if ev.Ts != want || ev.Type != TypeFeature || string(ev.Account) != "acme" || string(ev.User) != "ué" ||
		string(ev.Module) != "reports" || ev.Platform != PlatformMobile {
		t.Fatalf("decoded %+v", ev)
	}
	line = `{"ts":1763632800123,"account_id":"a","type":"api"}`
	if r := d.Decode([]byte(line), &ev); r != ReasonOK || ev.Count != 1 || ev.Ts != 1763632800123*1e6 {
		t.Fatalf("api: %s %+v", r, ev)
	}
	line = `{"ts":"2026-11-20T10:00:00Z","account_id":"a","type":"account","attrs":{"seats":"25","segment":"strategic","region":7,"renewal_date":"2027-02-28","unknown":"x"}}`
	if r := d.Decode([]byte(line), &ev); r != ReasonOK {
		t.Fatalf("account: %s %s", r, d.Detail())
	}
	if !ev.Attrs.HasSeats || ev.Attrs.Seats != 25 || string(ev.Attrs.Values[rules.Segment]) != "strategic" ||
		string(ev.Attrs.Values[rules.Region]) != "7" || ev.Attrs.RenewalNs != time.Date(2027, 2, 28, 0, 0, 0, 0, time.UTC).UnixNano() {
		t.Fatalf("attrs %+v", ev.Attrs)
	}
}

func TestDecodeRejects(t *testing.T) {
	base := `"ts":"2026-11-20T10:00:00Z","account_id":"a"`
	long := strings.Repeat("x", 257)
	for _, c := range []struct {
		line string
		want Reason
	}{
		{`{"ts":`, ReasonJSON},
		{`[1,2]`, ReasonNotObject},
		{`{"account_id":"a","type":"login","user_id":"u"}`, ReasonTs},
		{`{"ts":"2026-11-20","account_id":"a","type":"login","user_id":"u"}`, ReasonTs},
		{`{"ts":"2026-02-30T10:00:00Z","account_id":"a","type":"login","user_id":"u"}`, ReasonTs},
		{`{"ts":"2026-11-20T25:00:00Z","account_id":"a","type":"login","user_id":"u"}`, ReasonTs},
		{`{"ts":1.5,"account_id":"a","type":"login","user_id":"u"}`, ReasonTs},
		{`{"ts":-5,"account_id":"a","type":"login","user_id":"u"}`, ReasonTs},
		{`{"ts":true,"account_id":"a","type":"login","user_id":"u"}`, ReasonTs},
		{`{"ts":"2026-11-20T10:00:00Z","type":"login","user_id":"u"}`, ReasonAccount},
		{`{"ts":"2026-11-20T10:00:00Z","account_id":"","type":"login","user_id":"u"}`, ReasonAccount},
		{`{"ts":"2026-11-20T10:00:00Z","account_id":"` + long + `","type":"login","user_id":"u"}`, ReasonAccount},
		{`{"ts":"2026-11-20T10:00:00Z","account_id":5,"type":"login","user_id":"u"}`, ReasonAccount},
		{"{\"ts\":\"2026-11-20T10:00:00Z\",\"account_id\":\"a\xff\",\"type\":\"login\",\"user_id\":\"u\"}", ReasonAccount},
		{`{` + base + `}`, ReasonType},
		{`{` + base + `,"type":"click"}`, ReasonType},
		{`{` + base + `,"type":"login"}`, ReasonUser},
		{`{` + base + `,"type":"login","user_id":"` + long + `"}`, ReasonUser},
		{`{` + base + `,"type":"feature","user_id":"u"}`, ReasonModule},
		{`{` + base + `,"type":"feature","user_id":"u","module":"` + long[:129] + `"}`, ReasonModule},
		{`{` + base + `,"type":"login","user_id":"u","platform":"tv"}`, ReasonPlatform},
		{`{` + base + `,"type":"session","user_id":"u"}`, ReasonDuration},
		{`{` + base + `,"type":"session","user_id":"u","duration_s":-1}`, ReasonDuration},
		{`{` + base + `,"type":"session","user_id":"u","duration_s":86401}`, ReasonDuration},
		{`{` + base + `,"type":"session","user_id":"u","duration_s":"60"}`, ReasonDuration},
		{`{` + base + `,"type":"api","count":0}`, ReasonCount},
		{`{` + base + `,"type":"api","count":2.5}`, ReasonCount},
		{`{` + base + `,"type":"ticket_opened"}`, ReasonTicket},
		{`{` + base + `,"type":"nps","user_id":"u"}`, ReasonValue},
		{`{` + base + `,"type":"nps","user_id":"u","value":11}`, ReasonValue},
		{`{` + base + `,"type":"account"}`, ReasonAttrs},
		{`{` + base + `,"type":"account","attrs":[1]}`, ReasonAttrs},
		{`{` + base + `,"type":"account","attrs":{"seats":-3}}`, ReasonAttrs},
		{`{` + base + `,"type":"account","attrs":{"seats":"many"}}`, ReasonAttrs},
		{`{` + base + `,"type":"account","attrs":{"renewal_date":"next year"}}`, ReasonAttrs},
		{`{` + base + `,"type":"account","attrs":{"segment":["a"]}}`, ReasonAttrs},
	} {
		var d Decoder
		var ev Event
		if got := d.Decode([]byte(c.line), &ev); got != c.want {
			t.Errorf("%.80s: got %s (%s), want %s", c.line, got, d.Detail(), c.want)
		} else if d.Detail() == "" {
			t.Errorf("%.80s: no detail", c.line)
		}
	}
}

func TestRFC3339MatchesTimePackage(t *testing.T) {
	for _, s := range []string{
		"2026-11-20T10:00:00Z", "2026-11-20t10:00:00z", "2026-11-20 10:00:00Z",
		"2026-11-20T10:00:00.123456789Z", "2026-11-20T10:00:00.1-05:30", "2024-02-29T23:59:59+14:00",
		"1970-01-01T00:00:00Z", "2199-12-31T23:59:59.999Z",
	} {
		got, ok := parseRFC3339([]byte(s))
		norm := strings.NewReplacer("t", "T", "z", "Z", " ", "T").Replace(s)
		want, err := time.Parse(time.RFC3339Nano, norm)
		if !ok || err != nil || got != want.UnixNano() {
			t.Errorf("%s: got %d %v, want %d %v", s, got, ok, want.UnixNano(), err)
		}
	}
	for _, s := range []string{"2026-11-20T10:00:00", "2026-11-20T10:00Z", "2026-13-01T00:00:00Z", "2026-11-20T10:00:00.Z", "2026-11-20T10:00:00+0200", "2025-02-29T00:00:00Z"} {
		if _, ok := parseRFC3339([]byte(s)); ok {
			t.Errorf("%s parsed", s)
		}
	}
}

func TestDayBuckets(t *testing.T) {
	mid := time.Date(2026, 11, 20, 0, 0, 0, 0, time.UTC).UnixNano()
	if dayOf(mid) != dayOf(mid-1) || dayOf(mid+1) != dayOf(mid)+1 {
		t.Fatal("a bucket must hold (midnight − 24h, midnight]")
	}
}

func TestDecodeDoesNotAllocate(t *testing.T) {
	var d Decoder
	var ev Event
	line := []byte(`{"ts":"2026-11-20T10:00:00.5+02:00","account_id":"acme","type":"feature","user_id":"u1","module":"reports","platform":"web"}`)
	d.Decode(line, &ev)
	if n := testing.AllocsPerRun(100, func() { d.Decode(line, &ev) }); n != 0 {
		t.Fatalf("Decode allocates %.1f times per event", n)
	}
}

// FuzzDecode: any input is decoded or rejected with a reason — never a
// panic — and an accepted event satisfies SPEC §1's limits.
func FuzzDecode(f *testing.F) {
	for _, s := range []string{
		`{"ts":"2026-11-20T10:00:00Z","account_id":"a","type":"login","user_id":"u"}`,
		`{"ts":1763632800123,"account_id":"a","type":"api","count":3}`,
		`{"ts":"2026-11-20T10:00:00.5+02:00","account_id":"a","type":"session","user_id":"u","duration_s":60.5,"platform":"mobile"}`,
		`{"ts":"2026-11-20T10:00:00Z","account_id":"a","type":"account","attrs":{"seats":10,"segment":"micro","renewal_date":"2027-01-01"}}`,
		`{"ts":"2026-11-20T10:00:00Z","account_id":"a","type":"nps","user_id":"u","value":9}`,
		`{"ts":"2026-11-20T10:00:00Z","account_id":"a","type":"ticket_opened","ticket_id":"T1"}`,
		`{"ts":"2026-11-20T10:00:00Z","account_id":"a\u0000","type":"feature","user_id":"u","module":"m"}`,
		`{"ts":NaN}`, `[]`, `{`, "", `{"ts":"9999-99-99T99:99:99Z"}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, line []byte) {
		var d Decoder
		var ev Event
		if d.Decode(line, &ev) != ReasonOK {
			if d.Detail() == "" {
				t.Fatal("rejected without a detail")
			}
			return
		}
		if len(ev.Account) == 0 || len(ev.Account) > maxAccountLen || ev.Type == 0 || ev.Ts < minTsNs || ev.Ts >= maxTsNs {
			t.Fatalf("accepted an invalid event: %+v", ev)
		}
		if ev.Type.userActivity() && len(ev.User) == 0 {
			t.Fatalf("user activity without a user: %+v", ev)
		}
		if ev.Duration < 0 || ev.Duration > maxDuration || ev.Value < 0 || ev.Value > 10 {
			t.Fatalf("out-of-range number accepted: %+v", ev)
		}
	})
}

// FuzzRFC3339 checks the hand-written parser against the time package on
// every input both accept.
func FuzzRFC3339(f *testing.F) {
	f.Add("2026-11-20T10:00:00Z")
	f.Add("2026-11-20T10:00:00.123+05:30")
	f.Add("2000-02-29T23:59:59-12:00")
	f.Fuzz(func(t *testing.T, s string) {
		got, ok := parseRFC3339([]byte(s))
		want, err := time.Parse(time.RFC3339Nano, s)
		if ok && err == nil && got != want.UnixNano() {
			t.Fatalf("%q: got %d, time.Parse %d", s, got, want.UnixNano())
		}
		if ok && err != nil && !strings.ContainsAny(s, "tz ") {
			t.Fatalf("%q accepted, time.Parse says %v", s, err)
		}
	})
}
