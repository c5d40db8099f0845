package grafana

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// dir holds the committed dashboards, relative to this package.
var dir = filepath.Join("..", "..", "grafana", "dashboards")

// The committed JSON files are exactly what the code builds: a dashboard
// is changed in Go and regenerated (`go run ./grafana/gen` in
// deploy/tools), never edited by hand — and no file is left over from a
// dashboard that no longer exists.
func TestCommittedDashboardsAreGenerated(t *testing.T) {
	files, err := Files()
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range files {
		got, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Errorf("%v: run `go run ./grafana/gen` in deploy/tools", err)
			continue
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s differs from what the code builds (%s): change the Go code, not the file, and run `go run ./grafana/gen` in deploy/tools", name, firstDifference(got, want))
		}
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if _, ok := files[e.Name()]; !ok {
			t.Errorf("%s is not built by the code: delete it, or build it in package grafana", filepath.Join(dir, e.Name()))
		}
	}
}

func firstDifference(got, want []byte) string {
	gl, wl := bytes.Split(got, []byte("\n")), bytes.Split(want, []byte("\n"))
	for i := range min(len(gl), len(wl)) {
		if !bytes.Equal(gl[i], wl[i]) {
			return fmt.Sprintf("line %d: the file has %s, the code builds %s", i+1, bytes.TrimSpace(gl[i]), bytes.TrimSpace(wl[i]))
		}
	}
	return "lengths differ"
}

// Every panel has an id of its own and every target a datasource the
// provisioning file names, with a refId unique within its panel; the
// dashboards' uids differ.
func TestDashboardsAreWellFormed(t *testing.T) {
	ds, err := Dashboards()
	if err != nil {
		t.Fatal(err)
	}
	known := map[string]string{PrometheusUID: PrometheusType, ClickHouseUID: ClickHouseType}
	var uids []string
	for _, f := range ds {
		uids = append(uids, *f.Dashboard.Uid)
		raw, _ := json.Marshal(f.Dashboard)
		var d struct {
			Panels []struct {
				ID      int    `json:"id"`
				Type    string `json:"type"`
				Title   string `json:"title"`
				Targets []struct {
					RefID      string `json:"refId"`
					Datasource struct{ Type, UID string }
				} `json:"targets"`
			} `json:"panels"`
		}
		if err := json.Unmarshal(raw, &d); err != nil {
			t.Fatal(err)
		}
		ids := map[int]bool{}
		for _, p := range d.Panels {
			if p.ID == 0 || ids[p.ID] {
				t.Errorf("%s: panel %q has id %d, not unique", f.Name, p.Title, p.ID)
			}
			ids[p.ID] = true
			if p.Type == "row" {
				continue
			}
			if len(p.Targets) == 0 {
				t.Errorf("%s: panel %q has no query", f.Name, p.Title)
			}
			refs := map[string]bool{}
			for _, q := range p.Targets {
				if q.RefID == "" || refs[q.RefID] {
					t.Errorf("%s: panel %q: refId %q missing or repeated", f.Name, p.Title, q.RefID)
				}
				refs[q.RefID] = true
				if typ, ok := known[q.Datasource.UID]; !ok || typ != q.Datasource.Type {
					t.Errorf("%s: panel %q reads datasource %s (%s), which is not provisioned", f.Name, p.Title, q.Datasource.UID, q.Datasource.Type)
				}
			}
		}
	}
	slices.Sort(uids)
	if len(slices.Compact(uids)) != len(ds) {
		t.Errorf("dashboard uids repeat: %v", uids)
	}
}
