package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
)

// instance is one `pulse run` of a group whose instances share nothing
// but the broker: each has its own directory, port and transitions file,
// and checkpoints to the Kafka changelog topic.
type instance struct {
	t      *testing.T
	dir    string
	base   string // http://127.0.0.1:PORT
	config string
	procs  []*proc // every start, the current one last
}

func newInstance(t *testing.T, broker string, n int) *instance {
	dir := filepath.Join(t.TempDir(), fmt.Sprintf("instance-%d", n))
	os.MkdirAll(dir, 0o755)
	port := freePort(t)
	cfg := writeConfig(t, dir, fmt.Sprintf(`
listen: 127.0.0.1:%d
rules: %s
kafka: {brokers: [%s], topic: events, group: three, session_timeout: 6s}
engine: {idle_advance: "0"}
checkpoint: {store: kafka, dir: %s, interval: 100ms}
output: {transitions_file: %s}
`, port, exampleRules, broker, filepath.Join(dir, "ckpt"), filepath.Join(dir, "transitions.jsonl")))
	return &instance{t: t, dir: dir, base: fmt.Sprintf("http://127.0.0.1:%d", port), config: cfg}
}

func (in *instance) start() {
	in.procs = append(in.procs, startPulse(in.t, "run", "--config", in.config))
}

func (in *instance) running() bool { return len(in.procs) > 0 && !in.procs[len(in.procs)-1].exited() }

// kill stops the instance with SIGKILL (no final checkpoint, no commit,
// no goodbye: its partitions move once the session times out), or with
// SIGTERM (it saves, commits and leaves the group at once).
func (in *instance) kill(graceful bool) {
	p := in.procs[len(in.procs)-1]
	if !graceful {
		p.kill()
		return
	}
	if code := p.stop(in.t); code != 0 {
		in.t.Fatalf("exit %d after SIGTERM:\n%s", code, p.output())
	}
}

// takeOn is a partition taken on by an instance, from its log.
type takeOn struct {
	at             time.Time
	partition      string
	fromCheckpoint bool
	offset         string
}

var takeOnLine = regexp.MustCompile(`(?m)^time=(\S+) level=INFO msg="(restored from checkpoint|no checkpoint; starting fresh)" partition=(\d+)(?: accounts=\d+ offset=(\d+))?`)

func takeOns(log string) []takeOn {
	var out []takeOn
	for _, m := range takeOnLine.FindAllStringSubmatch(log, -1) {
		at, _ := time.Parse(time.RFC3339Nano, m[1])
		out = append(out, takeOn{at, m[3], m[2] == "restored from checkpoint", m[4]})
	}
	return out
}

// settled reports whether the running instances own every partition
// between them, each ready: the last rebalance is over.
func settled(t *testing.T, ins []*instance) bool {
	owned := 0.0
	for _, in := range ins {
		if !in.running() {
			continue
		}
		if code, _ := httpGet(in.base + "/readyz"); code != 200 {
			return false
		}
		n, _ := metricSum(t, in.base, "pulse_partition_owned")
		owned += n
	}
	return owned == 8
}

// settle waits for the group to settle, or fails saying where each
// instance stands.
func settle(t *testing.T, ins []*instance, after string) {
	t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	for !settled(t, ins) {
		if time.Now().After(deadline) {
			for n, in := range ins {
				code, _ := httpGet(in.base + "/readyz")
				owned, _ := metricSum(t, in.base, "pulse_partition_owned")
				out := in.procs[len(in.procs)-1].output()
				t.Logf("instance %d: running %v, /readyz %d, owns %v; its log ends:\n%s", n, in.running(), code, owned, out[max(0, len(out)-3000):])
			}
			t.Fatalf("the group did not settle within 90 s after %s", after)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Shared-nothing scale-out: three `pulse run` processes in one group,
// each with a local directory of its own, checkpointing to the Kafka
// changelog topic, are killed with SIGKILL and stopped with SIGTERM
// repeatedly — alone and two at a time, each stop and start a rebalance —
// in the middle of the stream, and started again. Partitions that move
// are restored from the topic: once a partition has been restored from a
// checkpoint, it is never started afresh again, whichever instance takes
// it on (a local directory would not have its checkpoint), and no
// checkpoint file is ever written. At the end the three serve the
// account states of `pulse replay` on the same events, and their
// transitions files together hold replay's transitions.
//
// Each step waits for the group to settle before the next: kfake, the
// test broker, restarts its rebalance timer at every join, so a member
// killed while a rebalance is being prepared, with the others rejoining
// after kafka-go's join deadline, can hold the group in rebalance for
// minutes (a real Kafka broker does not reset that timer).
func TestThreeInstancesShareNothingButKafka(t *testing.T) {
	broker := startBrokerProcess(t)
	lines, _ := fencedStream(60, 35)
	ins := []*instance{newInstance(t, broker, 0), newInstance(t, broker, 1), newInstance(t, broker, 2)}
	for _, in := range ins {
		in.start()
	}
	settle(t, ins, "the start")
	p := newProducer([]string{broker}, "events")
	defer p.Close()

	// Each step stops (SIGKILL, or SIGTERM when graceful) or starts
	// instances half-way through its share of the stream.
	type action struct {
		instance int
		stop     bool
		graceful bool
	}
	steps := [][]action{
		{{0, true, false}}, {{0, false, false}},
		{{1, true, true}}, {{1, false, false}},
		{{2, true, false}}, {{2, false, false}},
		{{0, true, false}, {1, true, false}}, {{0, false, false}, {1, false, false}},
		{{2, true, true}}, {{2, false, false}},
		{{1, true, false}}, {{1, false, false}},
		nil,
	}
	size := len(lines)/len(steps) + 1
	for i, actions := range steps {
		part := lines[min(i*size, len(lines)):min((i+1)*size, len(lines))]
		slice := len(part)/10 + 1
		for k := 0; k*slice < len(part); k++ {
			if k == 5 {
				for _, a := range actions {
					if a.stop {
						ins[a.instance].kill(a.graceful)
					} else {
						ins[a.instance].start()
					}
				}
			}
			if err := p.write(context.Background(), part[k*slice:min((k+1)*slice, len(part))]); err != nil {
				t.Fatal(err)
			}
			time.Sleep(40 * time.Millisecond)
		}
		settle(t, ins, fmt.Sprintf("step %d", i+1))
	}

	// The three converge on replay's states: each serves the partitions
	// it owns once the last rebalance is over.
	wantStates, wantTransitions, _ := replayed(t, lines)
	var got []string
	union := func() []string {
		var all []string
		for _, in := range ins {
			if code, _ := httpGet(in.base + "/readyz"); code != 200 {
				return nil
			}
			all = append(all, apiStates(t, in.base)...)
		}
		slices.SortFunc(all, func(a, b string) int { return strings.Compare(accountOf(a), accountOf(b)) })
		return all
	}
	deadline := time.Now().Add(120 * time.Second)
	for got = union(); !slices.Equal(got, wantStates) && time.Now().Before(deadline); got = union() {
		time.Sleep(250 * time.Millisecond)
	}
	if !slices.Equal(got, wantStates) {
		for n, in := range ins {
			code, _ := httpGet(in.base + "/readyz")
			out := in.procs[len(in.procs)-1].output()
			t.Logf("instance %d: /readyz %d; its log ends:\n%s", n, code, out[max(0, len(out)-6000):])
		}
	}
	sameLines(t, "states served by the three instances", got, wantStates)

	var transitions []string
	var taken []takeOn
	for n, in := range ins {
		in.kill(true)
		data, _ := os.ReadFile(filepath.Join(in.dir, "transitions.jsonl"))
		transitions = append(transitions, strings.Split(strings.TrimSpace(string(data)), "\n")...)
		if files, _ := filepath.Glob(filepath.Join(in.dir, "ckpt", "*")); len(files) > 0 {
			t.Errorf("instance %d wrote checkpoint files: %v", n, files)
		}
		for _, pr := range in.procs {
			taken = append(taken, takeOns(pr.output())...)
		}
	}
	slices.Sort(transitions)
	sameLines(t, "transitions in the three transitions files", slices.Compact(transitions), wantTransitions)

	// Every restart and rebalance takes partitions on. Once a partition's
	// checkpoint is in the topic, each later owner resumes from it.
	slices.SortStableFunc(taken, func(a, b takeOn) int { return a.at.Compare(b.at) })
	checkpointed := map[string]bool{}
	restores := 0
	for _, to := range taken {
		switch {
		case to.fromCheckpoint:
			checkpointed[to.partition] = true
			restores++
		case checkpointed[to.partition]:
			t.Errorf("partition %s started afresh at %v after it had been restored from a checkpoint", to.partition, to.at)
		}
	}
	if len(checkpointed) != 8 || restores < 20 {
		t.Fatalf("%d partitions taken on from a checkpoint, %d of the 8 partitions: the handovers rebuilt instead", restores, len(checkpointed))
	}
	t.Logf("partitions taken on %d times, %d times from the changelog topic", len(taken), restores)
}

// A checkpoint topic that exists but is not compacted stops the start
// with an error that names it and says what to do.
func TestAnUncompactedCheckpointTopicStopsTheStart(t *testing.T) {
	broker := startBrokerProcess(t)
	tr := &kafka.Transport{}
	defer tr.CloseIdleConnections()
	c := &kafka.Client{Addr: kafka.TCP(broker), Transport: tr}
	resp, err := c.CreateTopics(context.Background(), &kafka.CreateTopicsRequest{Topics: []kafka.TopicConfig{{
		Topic: "events.pulse-checkpoints", NumPartitions: 8, ReplicationFactor: 1,
		ConfigEntries: []kafka.ConfigEntry{{ConfigName: "cleanup.policy", ConfigValue: "delete"}}}}})
	if err == nil {
		err = resp.Errors["events.pulse-checkpoints"]
	}
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	cfg := writeConfig(t, dir, fmt.Sprintf(`
listen: 127.0.0.1:%d
kafka: {brokers: [%s]}
checkpoint: {store: kafka}
output: {transitions_file: ""}
`, freePort(t), broker))
	d := startPulseIn(t, dir, "run", "--config", cfg)
	select {
	case <-d.done:
	case <-time.After(30 * time.Second):
		t.Fatalf("pulse run did not stop:\n%s", d.output())
	}
	want := "pulse run: checkpoint store: the checkpoint topic is not compacted: events.pulse-checkpoints has cleanup.policy=delete;"
	if code := d.cmd.ProcessState.ExitCode(); code != 2 || !strings.Contains(d.output(), want) || !strings.Contains(d.output(), "checkpoint.topic") {
		t.Fatalf("exit %d, output:\n%s\nwant exit 2 and %q", code, d.output(), want)
	}
}
