package main

import (
	"bufio"
	"bytes"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// readThenClose runs the binary with args, reads three lines of its
// standard output and closes the pipe, as head -3 does; it returns the
// exit code and what the command wrote on stderr.
func readThenClose(t *testing.T, stdin string, args ...string) (int, string) {
	t.Helper()
	cmd := exec.Command(pulseBin, args...)
	if stdin != "" {
		f, err := os.Open(stdin)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		cmd.Stdin = f
	}
	var errb bytes.Buffer
	cmd.Stderr = &errb
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	r := bufio.NewReader(out)
	for range 3 {
		if _, err := r.ReadString('\n'); err != nil {
			t.Fatalf("reading %v: %v", args, err)
		}
	}
	out.Close() // the reader goes away; the command has far more to write
	cmd.Wait()
	return cmd.ProcessState.ExitCode(), errb.String()
}

// `pulse gen | pulse replay | head -3` exits 0: gen and replay end quietly
// with status 0 when their reader goes away (EPIPE), instead of dying of
// SIGPIPE.
func TestBrokenPipeIsANormalEnd(t *testing.T) {
	events := writeFile(t, "events.jsonl", "")
	if code, _, errs := pulse(t, "", "gen", "--accounts", "200", "--days", "10", "--seed", "2", "--end", "2026-11-20T00:00:00Z", "--out", events); code != 0 {
		t.Fatalf("gen: exit %d %s", code, errs)
	}
	// Hundreds of kilobytes of output, far beyond a pipe's buffer.
	if code, errs := readThenClose(t, "", "gen", "--accounts", "200", "--days", "10"); code != 0 || errs != "" {
		t.Errorf("gen | head -3: exit %d, stderr %q", code, errs)
	}
	if code, errs := readThenClose(t, events, "replay", "--rules", exampleRules, "--events", "-"); code != 0 || errs != "" {
		t.Errorf("replay | head -3: exit %d, stderr %q", code, errs)
	}

	// The README's pipeline, in a shell that reports any failing stage.
	bash, err := exec.LookPath("bash")
	if err != nil {
		t.Skip("no bash for the pipeline with pipefail")
	}
	script := `set -o pipefail; "$0" gen --accounts 200 --days 10 | "$0" replay --rules "$1" --events - | head -3`
	out, err := exec.Command(bash, "-c", script, pulseBin, exampleRules).CombinedOutput()
	if err != nil || strings.Count(string(out), "\n") != 3 || !strings.HasPrefix(string(out), `{"account_id":`) {
		t.Fatalf("gen | replay | head -3: %v\n%.500s", err, out)
	}
}
