// Command latency measures event-to-alert latency on the daemon: `pulse
// run` consumes a steady background load from a broker in its own process
// while the harness produces threshold-crossing bursts (five tickets opened
// at once, for a rule that fires at five open tickets) and times each from
// its produce to the webhook delivery of its firing transition. It runs
// once per eval_interval and prints a Markdown table of p50, p99 and max.
package main

import (
	"context"
	"encoding/json"
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
	"slices"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/pulsehq/pulse/bench"
	"github.com/pulsehq/pulse/engine/stream"
)

const rulesTemplate = `score:
  factors:
    - {name: recency, metric: days_since_active, weight: 1, points: [[1, 100], [14, 0]]}
alerts:
  - name: backlog
    when: open_tickets >= 5
    severity: high
notify:
  - {name: bench, type: webhook, url: "http://%s/"}
`

func main() {
	pulse := flag.String("pulse", "./pulse", "pulse binary")
	rate := flag.Int("rate", 100_000, "background events per second")
	accounts := flag.Int("accounts", 20_000, "background accounts")
	every := flag.Duration("every", 250*time.Millisecond, "time between threshold-crossing bursts")
	flag.Parse()

	broker, err := bench.StartBroker(*pulse)
	must(err)
	defer broker.Stop()
	addr := broker.Addr

	fmt.Printf("## Event-to-alert latency (`pulse run`, broker in its own process)\n\n")
	fmt.Printf("Machine: %d CPUs (%s/%s), %s. Background load: %d events/s of logins over %d accounts, produced live (ts = now) to 8 partitions; "+
		"a burst of five `ticket_opened` events every %v for a new account, and a rule firing at five open tickets, delivered by a generic webhook to this harness. "+
		"Latency is wall time from producing the burst to receiving its firing transition.\n\n",
		runtime.NumCPU(), runtime.GOOS, runtime.GOARCH, runtime.Version(), *rate, *accounts, *every)
	fmt.Printf("| eval_interval | bursts | p50 | p99 | max | goal (p99) |\n|---|---|---|---|---|---|\n")
	for i, c := range []struct {
		interval, run time.Duration
		goal          time.Duration
	}{
		{time.Second, 30 * time.Second, 2 * time.Second},
		{time.Minute, 100 * time.Second, time.Minute + time.Second},
	} {
		lat := measure(*pulse, addr, fmt.Sprintf("latency-%d", i), c.interval, c.run, *rate, *accounts, *every)
		slices.Sort(lat)
		if len(lat) == 0 {
			log.Fatalf("eval_interval %v: no transition arrived", c.interval)
		}
		pct := func(p float64) time.Duration { return lat[min(len(lat)-1, int(float64(len(lat))*p))] }
		verdict := "met"
		if pct(0.99) > c.goal {
			verdict = "missed"
		}
		fmt.Printf("| %v | %d | %.2f s | %.2f s | %.2f s | ≤ %v: %s |\n", c.interval, len(lat), pct(0.5).Seconds(), pct(0.99).Seconds(), lat[len(lat)-1].Seconds(), c.goal, verdict)
	}
}

// measure runs the daemon with eval_interval for run, producing the load and
// the bursts, and returns the latency of every burst whose transition came.
func measure(bin, broker, group string, interval, run time.Duration, rate, accounts int, every time.Duration) []time.Duration {
	var mu sync.Mutex
	sent := map[string]time.Time{}
	var lat []time.Duration
	receiver := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		at := time.Now()
		body, _ := io.ReadAll(r.Body)
		id := jsonField(body, "account_id")
		mu.Lock()
		if t, ok := sent[id]; ok {
			lat = append(lat, at.Sub(t))
			delete(sent, id)
		}
		mu.Unlock()
	})}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	must(err)
	go receiver.Serve(ln)
	defer receiver.Close()

	dir, _ := os.MkdirTemp("", "pulse-latency-")
	defer os.RemoveAll(dir)
	rulesFile := filepath.Join(dir, "rules.yaml")
	must(os.WriteFile(rulesFile, fmt.Appendf(nil, rulesTemplate, ln.Addr()), 0o644))
	cfg := filepath.Join(dir, "pulse.yaml")
	must(os.WriteFile(cfg, fmt.Appendf(nil, "listen: 127.0.0.1:%d\nrules: %s\nkafka: {brokers: [%s], group: %s, start: latest}\nengine: {eval_interval: %s}\ncheckpoint: {dir: %s}\noutput: {transitions_file: \"\"}\nwebhooks: {state_file: %s}\nlog: {level: warn}\n",
		freePort(), rulesFile, broker, group, interval, filepath.Join(dir, "ckpt"), filepath.Join(dir, "webhooks.state")), 0o644))
	cmd := exec.Command(bin, "run", "--config", cfg)
	cmd.Stderr = os.Stderr
	must(cmd.Start())
	defer func() { cmd.Process.Signal(syscall.SIGTERM); cmd.Wait() }()
	time.Sleep(3 * time.Second) // join the group before the load starts

	ctx, cancel := context.WithTimeout(context.Background(), run)
	defer cancel()
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); load(ctx, broker, rate, accounts) }()
	go func() {
		defer wg.Done()
		w := writer(broker)
		defer w.Close()
		tick := time.NewTicker(every)
		defer tick.Stop()
		// Bursts stop an interval and a half before the end, so each has
		// time to come through.
		stop := time.Now().Add(run - interval*3/2 - 2*time.Second)
		for i := 0; time.Now().Before(stop); i++ {
			<-tick.C
			id := fmt.Sprintf("burst-%s-%d", group, i)
			var msgs []kafka.Message
			now := time.Now()
			for k := range 5 {
				msgs = append(msgs, message(id, fmt.Sprintf(`{"ts":%q,"account_id":%q,"type":"ticket_opened","ticket_id":"t%d"}`, now.UTC().Format(time.RFC3339Nano), id, k)))
			}
			mu.Lock()
			sent[id] = now
			mu.Unlock()
			must(w.WriteMessages(context.Background(), msgs...))
		}
	}()
	wg.Wait()
	mu.Lock()
	defer mu.Unlock()
	return slices.Clone(lat)
}

// load produces rate logins a second, ts = now, until ctx ends.
func load(ctx context.Context, broker string, rate, accounts int) {
	w := writer(broker)
	defer w.Close()
	const tick = 20 * time.Millisecond
	per := max(1, rate*int(tick)/int(time.Second))
	t := time.NewTicker(tick)
	defer t.Stop()
	n := 0
	for ctx.Err() == nil {
		<-t.C
		now := time.Now().UTC().Format(time.RFC3339Nano)
		msgs := make([]kafka.Message, 0, per)
		for range per {
			id := "acct-" + strconv.Itoa(n%accounts)
			msgs = append(msgs, message(id, `{"ts":"`+now+`","account_id":"`+id+`","type":"login","user_id":"u`+strconv.Itoa(n%7)+`"}`))
			n++
		}
		if err := w.WriteMessages(ctx, msgs...); err != nil && ctx.Err() == nil {
			log.Fatal(err)
		}
	}
}

func writer(broker string) *kafka.Writer {
	return &kafka.Writer{Addr: kafka.TCP(broker), Topic: "events", Balancer: stream.AccountBalancer{},
		BatchSize: 5000, BatchTimeout: 2 * time.Millisecond, RequiredAcks: kafka.RequireOne}
}

func message(account, value string) kafka.Message {
	return kafka.Message{Key: []byte(account), Value: []byte(value)}
}

// jsonField reads one top-level string field of a generic webhook body.
func jsonField(body []byte, key string) string {
	var m map[string]any
	json.Unmarshal(body, &m)
	s, _ := m[key].(string)
	return s
}

func freePort() int {
	port, err := bench.FreePort()
	must(err)
	return port
}

func must(err error) {
	if err != nil {
		log.Fatalf("%.500s", err.Error())
	}
}
