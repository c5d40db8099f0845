// Command scale measures Pulse at a million accounts and more on one
// machine, without storing the stream (17 GB of JSONL at 1 M accounts):
//
//   - `pulse gen | pulse replay --events -`: throughput, CPU and peak RSS
//     of the replay, and RSS per account;
//   - `pulse gen | ` a plain encoding/json decode of every line (a
//     baseline), side by side in the same run;
//   - checkpoint restore of every account: the same stream applied in
//     process to the same virtual partitions, checkpointed as the daemon
//     does, then restored from the files and timed, with the live heap per
//     account after the restore.
//
// It prints a Markdown table per account count. Give several counts
// (--accounts 1000000,3000000) to extrapolate memory to larger ones.
package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/pulsehq/pulse/engine"
	"github.com/pulsehq/pulse/engine/synth"
	"github.com/pulsehq/pulse/rules"
)

// end is a Friday midnight: both generated days are working days, as in
// the other harnesses.
const end = "2026-11-20T00:00:00Z"

func main() {
	pulse := flag.String("pulse", "./pulse", "pulse binary")
	rulesFile := flag.String("rules", "deploy/rules/example.yaml", "rules file")
	counts := flag.String("accounts", "1000000", "comma-separated account counts to measure")
	days := flag.Int("days", 2, "days to generate")
	baseline := flag.Bool("json", true, "also time the encoding/json baseline")
	restore := flag.Bool("restore", true, "also time a checkpoint restore of every account")
	dir := flag.String("dir", os.TempDir(), "where to write the checkpoints of the restore step")
	flag.Parse()

	fmt.Printf("## Pulse at scale (`pulse gen | pulse replay`, checkpoint restore)\n\n")
	fmt.Printf("Machine: %d CPUs (%s/%s), %s. Stream: `pulse gen --days %d --seed 1 --end %s`, piped; rules: %s.\n\n",
		runtime.NumCPU(), runtime.GOOS, runtime.GOARCH, runtime.Version(), *days, end, filepath.Base(*rulesFile))
	for _, s := range strings.Split(*counts, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n <= 0 {
			log.Fatalf("--accounts: %q is not a positive count", s)
		}
		gen := []string{"gen", "--accounts", strconv.Itoa(n), "--days", strconv.Itoa(*days), "--seed", "1", "--end", end}

		fmt.Printf("### %d accounts\n\n| step | wall time | events/s | CPU (user + sys) | peak RSS | per account |\n|---|---|---|---|---|---|\n", n)
		var events int
		if *baseline {
			d := decodeBaseline(*pulse, gen)
			events = d.events
			row("encoding/json decode of each line (baseline)", d.result, events, n, false)
		}
		rp := replay(*pulse, gen, *rulesFile)
		if events == 0 {
			events = rp.events
		}
		row("pulse replay (decode, apply, evaluation, output)", rp.result, events, n, true)
		if *restore {
			r := restoreStep(n, *days, *rulesFile, *dir)
			fmt.Printf("| checkpoint restore of %d accounts (%d partitions, %.0f MB) | %.2f s | — | %.2f s | — | %.0f B live heap |\n",
				r.accounts, r.partitions, float64(r.bytes)/1e6, r.wall.Seconds(), r.cpu.Seconds(), float64(r.heap)/float64(r.accounts))
		}
		fmt.Printf("\n%d events; replay printed %d account states.\n\n", events, rp.states)
	}
}

type result struct {
	wall, cpu time.Duration
	maxRSS    int64 // bytes; 0 = not measured
}

func row(step string, r result, events, accounts int, rss bool) {
	mem, per := "—", "—"
	if rss {
		mem = fmt.Sprintf("%.0f MB", float64(r.maxRSS)/1e6)
		per = fmt.Sprintf("%.0f B", float64(r.maxRSS)/float64(accounts))
	}
	fmt.Printf("| %s | %.1f s | %.2f M | %.1f s | %s | %s |\n", step, r.wall.Seconds(), float64(events)/r.wall.Seconds()/1e6, r.cpu.Seconds(), mem, per)
}

type replayResult struct {
	result
	events, states int
}

// replay pipes `pulse gen` into `pulse replay --events -` through this
// process, which counts the lines, and measures the replay process.
func replay(pulse string, gen []string, rulesFile string) replayResult {
	g := exec.Command(pulse, gen...)
	g.Stderr = os.Stderr
	out, err := g.StdoutPipe()
	if err != nil {
		log.Fatal(err)
	}
	r := exec.Command(pulse, "replay", "--rules", rulesFile, "--events", "-")
	in, err := r.StdinPipe()
	if err != nil {
		log.Fatal(err)
	}
	var errs strings.Builder
	r.Stderr = &errs
	states := &lineCounter{}
	r.Stdout = states
	start := time.Now()
	if err := r.Start(); err != nil {
		log.Fatal(err)
	}
	if err := g.Start(); err != nil {
		log.Fatal(err)
	}
	events := &lineCounter{}
	if _, err := io.Copy(io.MultiWriter(in, events), out); err != nil {
		log.Fatalf("piping gen into replay: %v\n%s", err, errs.String())
	}
	in.Close()
	if err := g.Wait(); err != nil {
		log.Fatalf("pulse gen: %v", err)
	}
	if err := r.Wait(); err != nil {
		log.Fatalf("pulse replay: %v\n%s", err, errs.String())
	}
	return replayResult{result: usage(r, time.Since(start)), events: events.n, states: states.n}
}

func usage(c *exec.Cmd, wall time.Duration) result {
	ru := c.ProcessState.SysUsage().(*syscall.Rusage)
	return result{wall: wall, cpu: c.ProcessState.UserTime() + c.ProcessState.SystemTime(), maxRSS: ru.Maxrss * 1024}
}

// jsonEvent has the fields `pulse gen` writes, for the baseline decode.
type jsonEvent struct {
	Ts        string         `json:"ts"`
	AccountID string         `json:"account_id"`
	Type      string         `json:"type"`
	UserID    string         `json:"user_id"`
	Platform  string         `json:"platform"`
	Module    string         `json:"module"`
	DurationS float64        `json:"duration_s"`
	Count     int64          `json:"count"`
	TicketID  string         `json:"ticket_id"`
	Value     float64        `json:"value"`
	Channel   string         `json:"channel"`
	ARR       float64        `json:"arr"`
	Attrs     map[string]any `json:"attrs"`
}

type decodeResult struct {
	result
	events int
}

// decodeBaseline pipes `pulse gen` into this process, which decodes each
// line with encoding/json: what any Go consumer of the stream pays at
// least. CPU is this process's.
func decodeBaseline(pulse string, gen []string) decodeResult {
	g := exec.Command(pulse, gen...)
	g.Stderr = os.Stderr
	out, err := g.StdoutPipe()
	if err != nil {
		log.Fatal(err)
	}
	var before syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &before)
	start := time.Now()
	if err := g.Start(); err != nil {
		log.Fatal(err)
	}
	sc := bufio.NewScanner(bufio.NewReaderSize(out, 1<<20))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	n := 0
	var ev jsonEvent
	for sc.Scan() {
		ev = jsonEvent{}
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			log.Fatalf("line %d: %v", n+1, err)
		}
		n++
	}
	if err := sc.Err(); err != nil {
		log.Fatal(err)
	}
	if err := g.Wait(); err != nil {
		log.Fatalf("pulse gen: %v", err)
	}
	wall := time.Since(start)
	var after syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &after)
	cpu := time.Duration(after.Utime.Nano()-before.Utime.Nano()) + time.Duration(after.Stime.Nano()-before.Stime.Nano())
	return decodeResult{result: result{wall: wall, cpu: cpu}, events: n}
}

type restoreResult struct {
	accounts, partitions int
	bytes                int64
	wall, cpu            time.Duration
	heap                 uint64 // live heap after the restore, bytes
}

// restoreStep applies the same stream in this process to the replay's
// virtual partitions, writes each partition's checkpoint as the daemon
// does, drops the state, and times reading and restoring every file.
func restoreStep(accounts, days int, rulesFile, dir string) restoreResult {
	data, err := os.ReadFile(rulesFile)
	if err != nil {
		log.Fatal(err)
	}
	rs, err := rules.Load(rulesFile, data, rules.LoadOptions{LookupEnv: os.LookupEnv})
	if err != nil {
		log.Fatal(err)
	}
	endT, _ := time.Parse(time.RFC3339, end)
	const partitions = 8 // pulse replay's default, as the topic has
	files := make([]string, partitions)
	var total int64
	{
		rp := engine.NewReplayer(rs, engine.Config{}, partitions, 0, 0)
		g := synth.New(synth.Options{Accounts: accounts, Days: days, Seed: 1, End: endT})
		line := 0
		for d := range g.Days() {
			r, err := g.OpenDay(d)
			if err != nil {
				log.Fatal(err)
			}
			for r.Next() {
				line++
				rp.Line(line, r.Line())
			}
			if err := r.Err(); err != nil {
				log.Fatal(err)
			}
			r.Close()
		}
		var buf []byte
		for i, p := range rp.Partitions() {
			buf = p.AppendCheckpoint(buf[:0], int64(line))
			files[i] = filepath.Join(dir, fmt.Sprintf("pulse-scale-%d.ckpt", i))
			if err := engine.WriteCheckpointFile(files[i], buf); err != nil {
				log.Fatal(err)
			}
			total += int64(len(buf))
		}
	}
	defer func() {
		for _, f := range files {
			os.Remove(f)
		}
	}()
	runtime.GC()
	debug.FreeOSMemory()

	var before syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &before)
	start := time.Now()
	parts := make([]*engine.Partition, partitions)
	restored := 0
	for i, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			log.Fatal(err)
		}
		p, _, err := engine.RestorePartition(data, rs, engine.Config{})
		if err != nil {
			log.Fatalf("%s: %v", f, err)
		}
		parts[i] = p
		restored += p.Len()
	}
	wall := time.Since(start)
	var after syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &after)
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	runtime.KeepAlive(parts)
	cpu := time.Duration(after.Utime.Nano()-before.Utime.Nano()) + time.Duration(after.Stime.Nano()-before.Stime.Nano())
	return restoreResult{accounts: restored, partitions: partitions, bytes: total, wall: wall, cpu: cpu, heap: ms.HeapAlloc}
}

type lineCounter struct{ n int }

func (c *lineCounter) Write(p []byte) (int, error) {
	c.n += bytes.Count(p, []byte{'\n'})
	return len(p), nil
}
