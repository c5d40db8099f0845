package web

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pulsehq/pulse/engine"
)

func post(t *testing.T, url, ctype, body string, headers ...string) (int, http.Header, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	req.Header.Set("Content-Type", ctype)
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var b strings.Builder
	buf := make([]byte, 1<<16)
	for {
		n, err := resp.Body.Read(buf)
		b.Write(buf[:n])
		if err != nil {
			break
		}
	}
	return resp.StatusCode, resp.Header, b.String()
}

func candidateFile(t *testing.T) string {
	t.Helper()
	data, err := os.ReadFile("../../engine/testdata/portfolio/candidate.yaml")
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

// POST /api/rules/preview answers the difference the engine's
// TestPreviewOfACandidate works out by hand (testdata/preview.json), and
// changes nothing the API shows.
func TestRulesPreview(t *testing.T) {
	ts, _ := portfolioServer(t)
	_, _, before := get(t, ts.URL+"/api/accounts")
	code, h, body := post(t, ts.URL+"/api/rules/preview", "application/yaml", candidateFile(t))
	want, err := os.ReadFile("testdata/preview.json")
	if err != nil {
		t.Fatal(err)
	}
	if code != 200 || h.Get("Content-Type") != "application/json" || body != string(want) {
		t.Fatalf("%d %v\n%s\nwant\n%s", code, h, body, want)
	}
	if _, _, after := get(t, ts.URL+"/api/accounts"); after != before {
		t.Errorf("the preview changed the accounts:\n%s\nwas\n%s", after, before)
	}

	// ids=1: the first id of each list, and every count.
	_, _, body = post(t, ts.URL+"/api/rules/preview?ids=1", "application/yaml", candidateFile(t))
	if !strings.Contains(body, `"newly_flagged_count": 2,`) || !strings.Contains(body, `"newly_flagged": [
        "a2"
      ],`) || !strings.Contains(body, `"changes_count": 3,`) || strings.Contains(body, `"a4",`) {
		t.Errorf("ids=1:\n%s", body)
	}
	// JSON is YAML: a rules file may come as JSON.
	if code, _, body := post(t, ts.URL+"/api/rules/preview", "application/json", `{"score":{"factors":[{"name":"s","metric":"seats","weight":1,"points":[[0,0],[100,100]]}]}}`); code != 200 || !strings.Contains(body, `"rule": "ticket_open",
      "old": {`) {
		t.Errorf("a JSON rules file: %d\n%s", code, body)
	}
}

func TestRulesPreviewRefusals(t *testing.T) {
	ts, src := portfolioServer(t, func(s *Server) {
		s.Auth = Auth{Write: Credentials{Token: "w"}}
	})
	url := ts.URL + "/api/rules/preview"
	auth := []string{"Authorization", "Bearer w"}
	for _, c := range []struct {
		name, ctype, body string
		headers           []string
		code              int
		says              string
	}{
		{"no credentials", "application/yaml", candidateFile(t), nil, 401, "authentication required"},
		{"read credentials only", "application/yaml", candidateFile(t), []string{"Authorization", "Bearer r"}, 401, ""},
		{"cross-site", "application/yaml", candidateFile(t), append([]string{"Sec-Fetch-Site", "cross-site"}, auth...), 403, "cross-origin"},
		{"text/plain", "text/plain", candidateFile(t), auth, 415, "Content-Type must be application/yaml"},
		{"a form", "application/x-www-form-urlencoded", "a=b", auth, 415, ""},
		{"bad file", "application/yaml", "alerts:\n  - name: x\n    when: no_such_metric > 1\n", auth, 400,
			"rules not previewed:\nrules.yaml:3: alerts[0].when: "},
		{"bad file, named", "application/yaml", "score: {}\nnope: 1\n", auth, 400, "candidate.yaml:2: nope: "},
		{"over 1 MiB", "application/yaml", "# " + strings.Repeat("x", 1<<20) + "\n", auth, 413, "at most 1048576 bytes"},
	} {
		u := url
		if c.name == "bad file, named" {
			u += "?file=candidate.yaml"
		}
		code, _, body := post(t, u, c.ctype, c.body, c.headers...)
		if code != c.code || !strings.Contains(body, c.says) {
			t.Errorf("%s: %d %q, want %d %q", c.name, code, body, c.code, c.says)
		}
	}
	if code, _, _ := post(t, url, "application/yaml", candidateFile(t), auth...); code != 200 {
		t.Errorf("with the write token: %d", code)
	}
	// Partitions that do not answer in time: 503, try again.
	src.previewErr = errors.New("preview incomplete: partition 1 did not answer in time")
	code, h, body := post(t, url, "application/yaml", candidateFile(t), auth...)
	if code != 503 || h.Get("Retry-After") == "" || !strings.Contains(body, "partition 1 did not answer in time") {
		t.Errorf("partitions late: %d %v %s", code, h, body)
	}
}

// The preview through the real consumer on a Kafka-protocol broker: it
// runs on every partition's goroutine and sees every account; a
// partition a sink holds back makes it answer 503 by its deadline, and it
// works again once the sink lets go.
func TestRulesPreviewOnLivePartitions(t *testing.T) {
	g := newGate()
	l := startLive(t, g, time.Second)
	defer g.open()
	srv := httptest.NewServer((&Server{View: l.c, PreviewTimeout: 2 * time.Second}).Handler())
	defer srv.Close()
	ts := time.Now().Add(-time.Hour).Truncate(time.Minute)
	var ids []string
	for i := range 24 {
		ids = append(ids, fmt.Sprintf("acct-%02d", i))
	}
	l.produce(t, accountEvents(ts, ids...))
	waitFor(t, "every account in /api/accounts", 60*time.Second, func() bool {
		r := fetch(t, l.url+"/api/accounts?limit=1000")
		return r.code == 200 && len(apiAccounts(t, r.body)) == len(ids)
	})

	data, err := os.ReadFile("../../deploy/rules/example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	candidate := strings.Replace(string(data), "alerts:\n", "alerts:\n  - name: everyone\n    when: seats >= 1\n", 1)
	var pv struct {
		Accounts int `json:"accounts"`
		Rules    []struct {
			Rule  string   `json:"rule"`
			Newly []string `json:"newly_flagged"`
		} `json:"rules"`
	}
	code, _, body := post(t, srv.URL+"/api/rules/preview", "application/yaml", candidate)
	if code != 200 || json.Unmarshal([]byte(body), &pv) != nil || pv.Accounts != len(ids) || len(pv.Rules) == 0 ||
		pv.Rules[0].Rule != "everyone" || !slices.Equal(pv.Rules[0].Newly, ids) {
		t.Fatalf("%d %+v\n%s", code, pv, body)
	}

	// One partition waits for its sink: the preview cannot run there.
	blocked := int32(engine.PartitionOf([]byte("acct-00"), streamPartitions))
	g.mu.Lock()
	g.blockWrites[blocked] = true
	g.mu.Unlock()
	l.produce(t, accountEvents(ts.Add(time.Minute), "acct-00"))
	waitFor(t, "the blocked write", 30*time.Second, func() bool {
		g.mu.Lock()
		defer g.mu.Unlock()
		return g.blocked[blocked]
	})
	// A write runs beside the next batch: the partition stops at its
	// second, which waits for the first.
	l.produce(t, accountEvents(ts.Add(2*time.Minute), "acct-00"))
	time.Sleep(500 * time.Millisecond)
	began := time.Now()
	code, h, body := post(t, srv.URL+"/api/rules/preview", "application/yaml", candidate)
	took := time.Since(began)
	if code != 503 || h.Get("Retry-After") == "" || !strings.Contains(body, fmt.Sprintf("partition %d did not answer in time", blocked)) {
		t.Errorf("with partition %d held back: %d %s", blocked, code, body)
	}
	if took > 3*time.Second {
		t.Errorf("with partition %d held back: answered after %v, want by the 2 s deadline", blocked, took)
	}
	g.open()
	waitFor(t, "the preview once the sink lets go", 30*time.Second, func() bool {
		code, _, _ := post(t, srv.URL+"/api/rules/preview", "application/yaml", candidate)
		return code == 200
	})
}
