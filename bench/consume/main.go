// Command consume is the end-to-end streaming benchmark: with a broker in
// its own process (`pulse broker`) and a pre-filled topic, it measures a
// bare kafka-go grouped consume of the topic and `pulse run` (no sinks)
// scoring the same topic, in the same run, and prints a Markdown table.
package main

import (
	"bufio"
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/pulsehq/pulse/engine"
	"github.com/pulsehq/pulse/engine/stream"
	"github.com/pulsehq/pulse/engine/synth"
	"github.com/pulsehq/pulse/sinks/clickhouse/chtest"
)

func main() {
	pulse := flag.String("pulse", "./pulse", "pulse binary")
	rulesFile := flag.String("rules", "deploy/rules/example.yaml", "rules file")
	accounts := flag.Int("accounts", 40000, "accounts to generate")
	days := flag.Int("days", 2, "days to generate")
	flag.Parse()
	absRules, _ := filepath.Abs(*rulesFile)

	port := freePort()
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	broker := exec.Command(*pulse, "broker", "--port", strconv.Itoa(port), "--partitions", "8", "--topics", "events")
	must(broker.Start())
	stopBroker = func() { broker.Process.Signal(syscall.SIGTERM) }
	defer stopBroker()
	waitPort(addr)

	n := fill(addr, *accounts, *days)
	bare := bareConsume(addr, n)
	pulseRate, pulseWall := runPulse(*pulse, addr, absRules, n, "pulse-bench", "output: {transitions_file: \"\"}\n")
	allRate, allWall := allSinks(*pulse, addr, absRules, n)

	fmt.Printf("## End-to-end streaming (`pulse run`, broker in its own process)\n\n")
	fmt.Printf("Machine: %d CPUs (%s/%s), %s. Topic: 8 partitions, %d events from `pulse gen` (%d accounts, %d days), pre-filled; rules: %s (plus a webhook notifier for the all-sinks run).\n\n",
		runtime.NumCPU(), runtime.GOOS, runtime.GOARCH, runtime.Version(), n, *accounts, *days, filepath.Base(*rulesFile))
	fmt.Printf("| consumer | events/s | vs bare |\n|---|---|---|\n")
	fmt.Printf("| bare kafka-go grouped Reader (MaxWait 250ms, QueueCapacity 1000, MaxBytes 16 MiB, CommitInterval 1s) | %.2f M | 1.00× |\n", bare/1e6)
	fmt.Printf("| `pulse run`, no sinks: fetch, decode, apply, evaluate, checkpoint, commit | %.2f M | %.2f× |\n", pulseRate/1e6, pulseRate/bare)
	fmt.Printf("| `pulse run`, all sinks: ClickHouse (scores, alerts), webhooks, transitions file, Prometheus | %.2f M | %.2f× |\n", allRate/1e6, allRate/bare)
	fmt.Printf("\n`pulse run` took %.1f s (no sinks) and %.1f s (all sinks) from start to the last event, group join included; rates are measured between 10%% and 90%% of the events.\n", pulseWall.Seconds(), allWall.Seconds())
}

// fill produces a generated stream to the topic and returns its size.
func fill(addr string, accounts, days int) int {
	// Ends on a Friday: working days only.
	g := synth.New(synth.Options{Accounts: accounts, Days: days, Seed: 1, End: time.Date(2026, 11, 20, 0, 0, 0, 0, time.UTC)})
	w := &kafka.Writer{Addr: kafka.TCP(addr), Topic: "events", Balancer: stream.AccountBalancer{}, BatchSize: 5000, BatchTimeout: 5 * time.Millisecond, RequiredAcks: kafka.RequireOne}
	defer w.Close()
	var dec engine.Decoder
	var ev engine.Event
	var msgs []kafka.Message
	n := 0
	flush := func() {
		if len(msgs) > 0 {
			must(w.WriteMessages(context.Background(), msgs...))
			msgs = msgs[:0]
		}
	}
	for d := range g.Days() {
		g.Day(d, func(l []byte) {
			dec.Decode(l, &ev)
			msgs = append(msgs, kafka.Message{Key: bytes.Clone(ev.Account), Value: bytes.Clone(l)})
			n++
			if len(msgs) == 50000 {
				flush()
			}
		})
	}
	flush()
	return n
}

func bareConsume(addr string, n int) float64 {
	r := kafka.NewReader(kafka.ReaderConfig{Brokers: []string{addr}, GroupID: "bare", Topic: "events",
		MaxWait: 250 * time.Millisecond, QueueCapacity: 1000, MaxBytes: 16 << 20, CommitInterval: time.Second})
	defer r.Close()
	ctx := context.Background()
	var start time.Time
	for i := range n {
		if _, err := r.ReadMessage(ctx); err != nil {
			must(err)
		}
		if i == 0 {
			start = time.Now()
		}
	}
	return float64(n-1) / time.Since(start).Seconds()
}

// runPulse runs the daemon on the topic until it has applied n events and
// returns its rate between 10% and 90% of them, and the whole wall time.
func runPulse(bin, addr, rulesFile string, n int, group, extra string) (float64, time.Duration) {
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
	var t10, t90 time.Time
	for {
		seen := eventsSeen(port)
		now := time.Now()
		if t10.IsZero() && seen >= n/10 {
			t10 = now
		}
		if t90.IsZero() && seen >= n*9/10 {
			t90 = now
		}
		if seen >= n {
			return float64(n*8/10) / t90.Sub(t10).Seconds(), now.Sub(began)
		}
		time.Sleep(250 * time.Millisecond) // a scrape visits every account: keep it rare
	}
}

// allSinks runs the daemon with every sink: a ClickHouse server of its own,
// a webhook receiver on every transition, the transitions file.
func allSinks(bin, addr, rulesFile string, n int) (float64, time.Duration) {
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
	rate, wall := runPulse(bin, addr, withNotify, n, "pulse-bench-all", extra+fmt.Sprintf("output: {transitions_file: %s}\n", filepath.Join(dir, "transitions.jsonl")))
	log.Printf("all sinks: %d webhook deliveries", hooks.Load())
	return rate, wall
}

// eventsSeen sums pulse_events_total from the daemon's /metrics.
func eventsSeen(port int) int {
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/metrics", port))
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	total := 0.0
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "pulse_events_total{") {
			f := strings.Fields(line)
			v, _ := strconv.ParseFloat(f[len(f)-1], 64)
			total += v
		}
	}
	return int(total)
}

func freePort() int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	must(err)
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func waitPort(addr string) {
	for range 200 {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	log.Fatalf("broker on %s did not start", addr)
}

var stopBroker = func() {}

func must(err error) {
	if err != nil {
		stopBroker()
		log.Fatalf("%.500s", err.Error())
	}
}
