// Command consume is the end-to-end streaming benchmark: with a broker in
// its own process (`pulse broker`) and a pre-filled topic, it measures a
// bare kafka-go grouped consume of the topic, `pulse run` with no sinks and
// `pulse run` with every sink (a ClickHouse server of its own, a webhook
// receiver, the transitions file) on the same topic, in the same run, with
// the CPU each process spent, and prints a Markdown table.
package main

import (
	"cmp"
	"context"
	"flag"
	"fmt"
	"io"
	"log"
	"math"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/pulsehq/pulse/bench"
	"github.com/pulsehq/pulse/sinks/clickhouse/chtest"
)

func main() {
	pulse := flag.String("pulse", "./pulse", "pulse binary")
	rulesFile := flag.String("rules", "deploy/rules/example.yaml", "rules file")
	accounts := flag.Int("accounts", 40000, "accounts to generate")
	days := flag.Int("days", 2, "days to generate")
	runs := flag.Int("runs", 3, "runs of each consumer, in rotation; the table shows medians")
	only := flag.String("only", "", "run only this consumer (bare, nosinks, all), for experiments")
	flag.StringVar(&cpuProfile, "cpuprofile", "", "write a CPU profile of `pulse run` with all sinks (10 s, from 10% of the events) to this file")
	flag.Parse()
	absRules, _ := filepath.Abs(*rulesFile)

	port := freePort()
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	broker := exec.Command(*pulse, "broker", "--port", strconv.Itoa(port), "--partitions", "8", "--topics", "events")
	must(broker.Start())
	stopBroker = func() { broker.Process.Signal(syscall.SIGTERM) }
	defer stopBroker()
	waitPort(addr)

	n, err := bench.Fill(addr, *accounts, *days, nil)
	must(err)
	// Each consumer runs several times, in rotation, each in a new group:
	// on a small machine a single run moves by ±15%.
	var bares, noSinks, alls []result
	for i := range *runs {
		if *only == "" || *only == "bare" {
			bares = append(bares, bareConsume(addr, n, fmt.Sprintf("bare-%d", i), broker.Process.Pid))
		}
		if *only == "" || *only == "nosinks" {
			noSinks = append(noSinks, runPulse(*pulse, addr, absRules, n, fmt.Sprintf("pulse-bench-%d", i), "output: {transitions_file: \"\"}\n", map[string]int{"broker": broker.Process.Pid}))
		}
		if *only == "" || *only == "all" {
			alls = append(alls, allSinks(*pulse, addr, absRules, n, broker.Process.Pid, fmt.Sprintf("pulse-bench-all-%d", i)))
		}
	}
	if *only != "" {
		for _, rs := range [][]result{bares, noSinks, alls} {
			for _, r := range rs {
				fmt.Printf("%.3f M/s, %.1f s; CPU s per M events %v; page faults per M events %v; %.0f rows in %.0f INSERTs\n", r.rate/1e6, r.wall.Seconds(), perMillion(r.cpu, n), perMillion(r.faults, n), r.scoreRows, r.inserts)
			}
		}
		return
	}
	bare, pulseRun, all := median(bares), median(noSinks), median(alls)

	fmt.Printf("## End-to-end streaming (`pulse run`, broker in its own process)\n\n")
	fmt.Printf("Machine: %d CPUs (%s/%s), %s. Topic: 8 partitions, %d events from `pulse gen` (%d accounts, %d days), pre-filled; rules: %s (plus a webhook notifier for the all-sinks run). Each consumer ran %d times in rotation; the table shows the median run, and the runs' rates.\n\n",
		runtime.NumCPU(), runtime.GOOS, runtime.GOARCH, runtime.Version(), n, *accounts, *days, filepath.Base(*rulesFile), *runs)
	fmt.Printf("| consumer | events/s | vs bare | runs (M events/s) |\n|---|---|---|---|\n")
	fmt.Printf("| bare kafka-go grouped Reader (MaxWait 250ms, QueueCapacity 1000, MaxBytes 16 MiB, CommitInterval 1s) | %.2f M | 1.00× | %s |\n", bare.rate/1e6, rates(bares))
	fmt.Printf("| `pulse run`, no sinks: fetch, decode, apply, evaluate, checkpoint, commit | %.2f M | %.2f× | %s |\n", pulseRun.rate/1e6, pulseRun.rate/bare.rate, rates(noSinks))
	fmt.Printf("| `pulse run`, all sinks: ClickHouse (scores, alerts), webhooks, transitions file, Prometheus | %.2f M | %.2f× | %s |\n", all.rate/1e6, all.rate/bare.rate, rates(alls))
	fmt.Printf("\n`pulse run` took %.1f s (no sinks) and %.1f s (all sinks) from start to the last event, group join included; every rate is measured between 10%% and 90%% of the events.\n", pulseRun.wall.Seconds(), all.wall.Seconds())
	fmt.Printf("With all sinks, ClickHouse received %.0f score rows in %.0f INSERTs (%.0f rows each on average).\n", all.scoreRows, all.inserts, all.scoreRows/max(all.inserts, 1))
	fmt.Printf("\nCPU seconds per million events in the same window (the machine has %d CPUs to share; the harness is this program: the bare Reader, and the webhook receiver of the all-sinks run; machine is every processor's busy time, kernel included). When the machine is busy throughout, rates stand in the inverse ratio of the machine column.\n\n| run | pulse | broker | clickhouse-server | harness | machine |\n|---|---|---|---|---|---|\n", runtime.NumCPU())
	summary := []struct {
		name string
		res  result
	}{{"bare", bare}, {"no sinks", pulseRun}, {"all sinks", all}}
	row := func(name string, m map[string]float64, format string) {
		cell := func(proc string) string {
			if v, ok := m[proc]; ok {
				return fmt.Sprintf(format, v)
			}
			return "–"
		}
		fmt.Printf("| %s | %s | %s | %s | %s | %s |\n", name, cell("pulse"), cell("broker"), cell("clickhouse"), cell("harness"), cell("machine"))
	}
	for _, r := range summary {
		row(r.name, perMillion(r.res.cpu, n), "%.2f")
	}
	fmt.Printf("\nMinor page faults (first touches of memory) per million events, in thousands:\n\n| run | pulse | broker | clickhouse-server | harness | – |\n|---|---|---|---|---|---|\n")
	for _, r := range summary {
		k := map[string]float64{}
		for p, v := range perMillion(r.res.faults, n) {
			k[p] = v / 1000
		}
		row(r.name, k, "%.1f")
	}
}

// perMillion turns CPU seconds spent on 80% of n events into seconds per
// million events.
func perMillion(cpu map[string]float64, n int) map[string]float64 {
	out := map[string]float64{}
	for k, v := range cpu {
		out[k] = math.Round(v/(float64(n*8/10)/1e6)*100) / 100
	}
	return out
}

func median(rs []result) result {
	sorted := slices.Clone(rs)
	slices.SortFunc(sorted, func(a, b result) int { return cmp.Compare(a.rate, b.rate) })
	return sorted[len(sorted)/2]
}

func rates(rs []result) string {
	var out []string
	for _, r := range rs {
		out = append(out, fmt.Sprintf("%.2f", r.rate/1e6))
	}
	return strings.Join(out, ", ")
}

var cpuProfile string

// result is one `pulse run`: its rate between 10% and 90% of the events,
// its wall time, and the CPU seconds each process spent in that window.
type result struct {
	rate               float64
	wall               time.Duration
	cpu                map[string]float64
	faults             map[string]float64 // minor page faults
	scoreRows, inserts float64            // score rows written to ClickHouse, and INSERTs that held them
}

func bareConsume(addr string, n int, group string, brokerPid int) result {
	r := kafka.NewReader(kafka.ReaderConfig{Brokers: []string{addr}, GroupID: group, Topic: "events",
		MaxWait: 250 * time.Millisecond, QueueCapacity: 1000, MaxBytes: 16 << 20, CommitInterval: time.Second})
	defer r.Close()
	ctx := context.Background()
	began := time.Now()
	w := newWindow(map[string]int{"broker": brokerPid, "harness": os.Getpid()})
	for i := range n {
		if _, err := r.ReadMessage(ctx); err != nil {
			must(err)
		}
		w.passed(i+1, n)
	}
	return w.result(n, began)
}

// window measures a run between 10% and 90% of its events: the time and
// what each process (and the whole machine) spent on them.
type window struct {
	pids        map[string]int
	t10, t90    time.Time
	cpu, faults map[string]float64
}

func newWindow(pids map[string]int) *window {
	return &window{pids: pids, cpu: map[string]float64{}, faults: map[string]float64{}}
}

// passed notes that seen of n events are done; it reports whether the
// window just opened.
func (w *window) passed(seen, n int) bool {
	switch {
	case w.t10.IsZero() && seen >= n/10:
		w.t10 = time.Now()
		w.sample(-1)
		return true
	case w.t90.IsZero() && seen >= n*9/10:
		w.t90 = time.Now()
		w.sample(1)
	}
	return false
}

func (w *window) sample(sign float64) {
	for k, pid := range w.pids {
		c, f := bench.ProcessUsage(pid)
		w.cpu[k] += sign * c
		w.faults[k] += sign * f
	}
	w.cpu["machine"] += sign * bench.MachineBusy()
}

func (w *window) result(n int, began time.Time) result {
	return result{rate: float64(n*8/10) / w.t90.Sub(w.t10).Seconds(), wall: time.Since(began), cpu: w.cpu, faults: w.faults}
}

// runPulse runs the daemon on the topic until it has applied n events and
// returns its rate between 10% and 90% of them, and the whole wall time.
func runPulse(bin, addr, rulesFile string, n int, group, extra string, others map[string]int) result {
	dir, _ := os.MkdirTemp("", "pulse-bench-")
	defer os.RemoveAll(dir)
	port := freePort()
	cfg := filepath.Join(dir, "pulse.yaml")
	os.WriteFile(cfg, fmt.Appendf(nil, "listen: 127.0.0.1:%d\nrules: %s\nkafka: {brokers: [%s], group: %s}\nengine: {idle_advance: \"0\"}\ncheckpoint: {dir: %s, interval: 30s}\nlog: {level: warn}\n%s",
		port, rulesFile, addr, group, filepath.Join(dir, "ckpt"), extra), 0o644)
	cmd := exec.Command(bin, "run", "--config", cfg)
	cmd.Stderr = os.Stderr
	must(cmd.Start())
	defer func() { cmd.Process.Signal(syscall.SIGTERM); cmd.Wait() }()
	began := time.Now()
	pids := map[string]int{"pulse": cmd.Process.Pid, "harness": os.Getpid()}
	for k, v := range others {
		pids[k] = v
	}
	w := newWindow(pids)
	for {
		seen := eventsSeen(port)
		if w.passed(seen, n) && cpuProfile != "" && others["clickhouse"] != 0 {
			go profile(port, cpuProfile)
		}
		if seen >= n {
			res := w.result(n, began)
			if others["clickhouse"] != 0 {
				// The last rows are stored up to a flush interval later.
				time.Sleep(2 * time.Second)
				res.scoreRows = bench.MetricSum(port, `pulse_clickhouse_insert_rows_sum{table="scores"}`)
				res.inserts = bench.MetricSum(port, `pulse_clickhouse_insert_rows_count{table="scores"}`)
			}
			return res
		}
		time.Sleep(250 * time.Millisecond) // a scrape visits every account: keep it rare
	}
}

// allSinks runs the daemon with every sink: a ClickHouse server of its own,
// a webhook receiver on every transition, the transitions file.
func allSinks(bin, addr, rulesFile string, n int, brokerPid int, group string) result {
	dir, _ := os.MkdirTemp("", "pulse-bench-all-")
	defer os.RemoveAll(dir)
	ch, err := chtest.Launch(dir)
	must(err)
	defer ch.Stop()
	var hooks atomic.Int64
	receiver := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		hooks.Add(1)
	})}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	must(err)
	go receiver.Serve(ln)
	defer receiver.Close()
	rules, err := os.ReadFile(rulesFile)
	must(err)
	withNotify := filepath.Join(dir, "rules.yaml")
	os.WriteFile(withNotify, append(rules, fmt.Appendf(nil, "\nnotify:\n  - {name: all, type: webhook, url: \"http://%s/\", send_resolved: true}\n", ln.Addr())...), 0o644)
	extra := fmt.Sprintf("clickhouse: {addr: [%s]}\nwebhooks: {state_file: %s}\n", ch.Addr(), filepath.Join(dir, "webhooks.state"))
	res := runPulse(bin, addr, withNotify, n, group, extra+fmt.Sprintf("output: {transitions_file: %s}\n", filepath.Join(dir, "transitions.jsonl")),
		map[string]int{"broker": brokerPid, "clickhouse": ch.Pid()})
	log.Printf("all sinks: %d webhook deliveries", hooks.Load())
	return res
}

// eventsSeen sums pulse_events_total from the daemon's /metrics.
func eventsSeen(port int) int { return int(bench.MetricSum(port, "pulse_events_total{")) }

// profile saves 10 s of the daemon's CPU profile.
func profile(port int, file string) {
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/debug/pprof/profile?seconds=10", port))
	if err != nil {
		log.Printf("cpu profile: %v", err)
		return
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if err := os.WriteFile(file, b, 0o644); err != nil {
		log.Printf("cpu profile: %v", err)
	}
}

func freePort() int {
	port, err := bench.FreePort()
	must(err)
	return port
}

func waitPort(addr string) { must(bench.WaitPort(addr)) }

var stopBroker = func() {}

func must(err error) {
	if err != nil {
		stopBroker()
		log.Fatalf("%.500s", err.Error())
	}
}
