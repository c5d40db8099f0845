// Command gen writes Pulse's Grafana dashboards, built by package
// grafana, to deploy/grafana/dashboards/ as the JSON files Grafana
// provisions. Run it from deploy/tools after changing a dashboard:
//
//	go run ./grafana/gen
//
// Files of dashboards that no longer exist are left for you to delete.
package main

import (
	"flag"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"

	"github.com/pulsehq/pulse/deploy/tools/grafana"
)

func main() {
	out := flag.String("out", filepath.Join("..", "grafana", "dashboards"), "directory of the dashboard JSON files (the default is right when run from deploy/tools)")
	flag.Parse()
	if err := write(*out); err != nil {
		fmt.Fprintln(os.Stderr, "gen:", err)
		os.Exit(1)
	}
}

func write(dir string) error {
	if st, err := os.Stat(filepath.Dir(dir)); err != nil || !st.IsDir() {
		return fmt.Errorf("%s is not there: run from deploy/tools, or name the directory with -out", filepath.Dir(dir))
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	files, err := grafana.Files()
	if err != nil {
		return err
	}
	for _, name := range slices.Sorted(maps.Keys(files)) {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, files[name], 0o644); err != nil {
			return err
		}
		fmt.Println("wrote", path)
	}
	return nil
}
