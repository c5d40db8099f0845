package kit

import (
	"net"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

// repoRoot is the repository's root directory: this package is
// deploy/tools/kit.
func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs(filepath.Join("..", "..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(filepath.Join(root, "go.mod"))
	if err != nil || !strings.HasPrefix(string(data), "module github.com/pulsehq/pulse\n") {
		t.Fatalf("%s is not Pulse's repository root (go.mod: %v)", root, err)
	}
	return root
}

// deployPath is a path under deploy/, in the repository.
func deployPath(t *testing.T, elem ...string) string {
	return filepath.Join(append([]string{repoRoot(t), "deploy"}, elem...)...)
}

// pulseConfig is the part of a Pulse config file the deployment files must
// agree with. The daemon's own loader validates the whole file (in
// cmd/pulse); this reads it loosely.
type pulseConfig struct {
	Listen     string `json:"listen"`
	Rules      string `json:"rules"`
	Checkpoint struct {
		Dir string `json:"dir"`
	} `json:"checkpoint"`
	Output struct {
		TransitionsFile *string `json:"transitions_file"`
	} `json:"output"`
	Webhooks struct {
		StateFile string `json:"state_file"`
	} `json:"webhooks"`
}

func readPulseConfig(t *testing.T, file string) pulseConfig {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var c pulseConfig
	if err := yaml.Unmarshal(data, &c); err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	return c
}

// port is the port of the config's listen address.
func (c pulseConfig) port(t *testing.T) int {
	t.Helper()
	_, p, err := net.SplitHostPort(c.Listen)
	n, err2 := strconv.Atoi(p)
	if err != nil || err2 != nil {
		t.Fatalf("listen: %q has no port", c.Listen)
	}
	return n
}

// writablePaths are the files and directories Pulse writes with config c,
// each absolute (a deployment must put them where it can write).
func (c pulseConfig) writablePaths(t *testing.T) map[string]string {
	t.Helper()
	paths := map[string]string{"checkpoint.dir": c.Checkpoint.Dir, "webhooks.state_file": c.Webhooks.StateFile}
	// Unset, the transitions file defaults to a relative path.
	if tf := c.Output.TransitionsFile; tf == nil {
		paths["output.transitions_file"] = "pulse-data/transitions.jsonl"
	} else if *tf != "" && *tf != "-" {
		paths["output.transitions_file"] = *tf
	}
	for key, p := range paths {
		if !path.IsAbs(p) {
			t.Errorf("%s: %q is relative: name a path on the deployment's state volume", key, p)
		}
	}
	return paths
}

// under reports whether p is dir or inside it (slash-separated, absolute).
func under(p, dir string) bool {
	p, dir = path.Clean(p), path.Clean(dir)
	return p == dir || strings.HasPrefix(p, strings.TrimSuffix(dir, "/")+"/")
}

// tool finds a command the test would like to run. Missing, it fails the
// test when the environment variable require is 1 (scripts/test.sh sets
// those it installs the tool for), and otherwise logs that the check is
// skipped.
func tool(t *testing.T, name, require string) (string, bool) {
	t.Helper()
	p, err := exec.LookPath(name)
	if err == nil {
		return p, true
	}
	if require != "" && os.Getenv(require) == "1" {
		t.Fatalf("%s is not installed and %s=1", name, require)
	}
	t.Logf("%s is not installed: skipping the check that runs it", name)
	return "", false
}
