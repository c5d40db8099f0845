// Command replay is the end-to-end replay benchmark: it runs the real
// pulse binary to generate a synthetic stream (≥ 5 M events, ≥ 100 k
// accounts) and to replay it on the example rules, and reports throughput
// and peak memory of each step as a Markdown table.
package main

import (
	"bufio"
	"bytes"
	"flag"
	"fmt"
	"io"
	"log"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"syscall"
	"time"
)

func main() {
	pulse := flag.String("pulse", "./pulse", "pulse binary")
	rulesFile := flag.String("rules", "deploy/rules/example.yaml", "rules file")
	accounts := flag.Int("accounts", 100000, "accounts to generate")
	days := flag.Int("days", 2, "days to generate")
	dir := flag.String("dir", os.TempDir(), "where to write the generated stream")
	flag.Parse()

	events := filepath.Join(*dir, "pulse-bench-events.jsonl")
	defer os.Remove(events)
	end := "2026-11-20T00:00:00Z" // a Friday: both days are working days

	gen := measure(*pulse, io.Discard, "gen", "--accounts", fmt.Sprint(*accounts), "--days", fmt.Sprint(*days), "--seed", "1", "--end", end, "--out", events)
	lines, bytesIn := countLines(events)

	states := &lineCounter{}
	replay := measure(*pulse, states, "replay", "--rules", *rulesFile, "--events", events)
	// The same replay with evaluation pushed past the end of the stream:
	// decode + apply alone (plus one final evaluation of every account).
	applyOnly := measure(*pulse, io.Discard, "replay", "--rules", *rulesFile, "--events", events, "--eval-interval", "96000h", "--sweep-interval", "96000h")

	fmt.Printf("## End-to-end replay (`pulse gen | pulse replay`)\n\n")
	fmt.Printf("Machine: %d CPUs (%s/%s), %s. Stream: %d accounts, %d days, %d events (%.0f MB JSONL, %.0f bytes/event); rules: %s.\n\n",
		runtime.NumCPU(), runtime.GOOS, runtime.GOARCH, runtime.Version(), *accounts, *days, lines, float64(bytesIn)/1e6, float64(bytesIn)/float64(lines), filepath.Base(*rulesFile))
	fmt.Printf("| step | wall time | events/s | peak RSS | RSS per account |\n|---|---|---|---|---|\n")
	fmt.Printf("| pulse gen | %.2f s | %.2f M | %.0f MB | — |\n", gen.wall.Seconds(), float64(lines)/gen.wall.Seconds()/1e6, float64(gen.maxRSS)/1e6)
	fmt.Printf("| pulse replay (decode, apply, throttled evaluation, output) | %.2f s | %.2f M | %.0f MB | %.0f B |\n",
		replay.wall.Seconds(), float64(lines)/replay.wall.Seconds()/1e6, float64(replay.maxRSS)/1e6, float64(replay.maxRSS)/float64(*accounts))
	fmt.Printf("| pulse replay, evaluation off (decode, apply, one final evaluation, output) | %.2f s | %.2f M | %.0f MB | %.0f B |\n",
		applyOnly.wall.Seconds(), float64(lines)/applyOnly.wall.Seconds()/1e6, float64(applyOnly.maxRSS)/1e6, float64(applyOnly.maxRSS)/float64(*accounts))
	fmt.Printf("\nReplay printed %d account states. CPU time of the replay: %.2f s user, %.2f s system.\n", states.n, replay.user.Seconds(), replay.sys.Seconds())
}

type result struct {
	wall, user, sys time.Duration
	maxRSS          int64
}

func measure(bin string, stdout io.Writer, args ...string) result {
	cmd := exec.Command(bin, args...)
	cmd.Stdout = stdout
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	start := time.Now()
	if err := cmd.Run(); err != nil {
		log.Fatalf("%s %v: %v\n%s", bin, args, err, stderr.String())
	}
	wall := time.Since(start)
	ru := cmd.ProcessState.SysUsage().(*syscall.Rusage)
	return result{wall: wall, user: cmd.ProcessState.UserTime(), sys: cmd.ProcessState.SystemTime(), maxRSS: ru.Maxrss * 1024}
}

func countLines(path string) (lines, size int) {
	f, err := os.Open(path)
	if err != nil {
		log.Fatal(err)
	}
	defer f.Close()
	r := bufio.NewReaderSize(f, 1<<20)
	buf := make([]byte, 1<<20)
	for {
		n, err := r.Read(buf)
		size += n
		lines += bytes.Count(buf[:n], []byte{'\n'})
		if err == io.EOF {
			return lines, size
		}
		if err != nil {
			log.Fatal(err)
		}
	}
}

type lineCounter struct{ n int }

func (c *lineCounter) Write(p []byte) (int, error) {
	c.n += bytes.Count(p, []byte{'\n'})
	return len(p), nil
}
