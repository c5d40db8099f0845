package main

import (
	"crypto/tls"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pulsehq/pulse/engine/stream"
	"github.com/pulsehq/pulse/rules"
	"github.com/pulsehq/pulse/sinks"
	"github.com/pulsehq/pulse/sinks/clickhouse"
	"github.com/pulsehq/pulse/sinks/clickhouse/chtest"
)

func noEnv(string) string { return "" }

// loadOutputs returns every registered output at its defaults.
func loadOutputs() []sinks.Loaded {
	var out []sinks.Loaded
	for _, o := range outputs {
		out = append(out, o.Load())
	}
	return out
}

// checkedConfig is the config the output named name was checked into.
func checkedConfig(t *testing.T, rc *runConfig, name string) any {
	t.Helper()
	for _, o := range rc.outputs {
		if o.Name() == name {
			return o.Config()
		}
	}
	t.Fatalf("no output %s", name)
	return nil
}

// builtinPlan is what the daemon runs with rc and the model built into
// the binary: the outputs that are on, by name, and whether the engine
// emits score rows.
func builtinPlan(t *testing.T, rc *runConfig) (on map[string]bool, scoreRows bool) {
	t.Helper()
	rs, err := loadRules("")
	if err != nil {
		t.Fatal(err)
	}
	outs, sc := rc.plan(rs)
	on = map[string]bool{}
	for _, o := range outs {
		on[o.Name()] = true
	}
	return on, sc.Engine.ScoreRows
}

func TestDefaultConfigIsTheEmbeddedDefault(t *testing.T) {
	rc, err := loadConfig("", noEnv)
	if err != nil {
		t.Fatal(err)
	}
	on, scoreRows := builtinPlan(t, rc)
	if !rc.embedded || rc.web.Listen != "127.0.0.1:8080" || rc.stream.Brokers[0] != "127.0.0.1:9092" ||
		rc.stream.Topic != "events" || rc.file.Embedded.Partitions != 8 || rc.stream.Engine.EvalInterval != time.Minute ||
		on["clickhouse"] || !on["file"] || scoreRows || rc.stream.Engine.ScoreInterval != time.Hour {
		t.Fatalf("default config %+v, outputs %v", rc, on)
	}
}

func TestConfigFileAndEnvironment(t *testing.T) {
	path := filepath.Join(t.TempDir(), "pulse.yaml")
	os.WriteFile(path, []byte(`
listen: 0.0.0.0:9999
kafka:
  brokers: [k1:9092]
  group: csm
  sasl: {mechanism: scram-sha-512, username: pulse}
engine: {retention: 60d, idle_advance: "0"}
`), 0o644)
	env := map[string]string{"PULSE_KAFKA_SASL_PASSWORD": "s3cret", "PULSE_KAFKA_BROKERS": "a:1,b:2", "PULSE_CLICKHOUSE_ADDR": "ch:9000", "PULSE_CLICKHOUSE_PASSWORD": "pw"}
	rc, err := loadConfig(path, func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	ch := checkedConfig(t, rc, "clickhouse").(clickhouse.Config)
	on, scoreRows := builtinPlan(t, rc)
	if rc.embedded || strings.Join(rc.stream.Brokers, ",") != "a:1,b:2" || rc.stream.Group != "csm" ||
		rc.file.Kafka.SASL.Password != "s3cret" || rc.stream.Dialer.SASLMechanism == nil ||
		rc.stream.Engine.Retention != 60*24*time.Hour || rc.stream.IdleAdvance != 0 ||
		!on["clickhouse"] || ch.Addr[0] != "ch:9000" || ch.Password != "pw" || !scoreRows {
		t.Fatalf("config %+v, clickhouse %+v", rc, ch)
	}
}

// Each problem names the file, the line and the key, as a rules file's
// do (FILE:LINE: key: problem).
func TestBadConfigNamesTheKey(t *testing.T) {
	for src, want := range map[string]string{
		"kafka:\n  topik: x\n":                                        "bad.yaml:2: kafka.topik: unknown key",
		"engine:\n  eval_interval: soon\n":                            `bad.yaml:2: engine.eval_interval: "soon" is not a positive duration`,
		"engine:\n  retention: 7d\n":                                  "bad.yaml:2: engine.retention: 7d is too short",
		"engine:\n  sweep_interval: 10s\n":                            "bad.yaml:2: engine.sweep_interval: 10s must be at least eval_interval",
		"engine:\n  sweep_interval: 7m\n":                             "bad.yaml:2: engine.sweep_interval: 7m must divide 24h or be whole days",
		"engine:\n  max_accounts: -1\n":                               "bad.yaml:2: engine.max_accounts: -1 must be positive",
		"kafka:\n  start: middle\n":                                   `bad.yaml:2: kafka.start: "middle" must be earliest, latest or committed`,
		"kafka:\n  sasl: {mechanism: kerberos}\n":                     `bad.yaml:2: kafka.sasl.mechanism: "kerberos"`,
		"checkpoint:\n  interval: -1s\n":                              "bad.yaml:2: checkpoint.interval",
		"log:\n  level: loud\n":                                       "bad.yaml:2: log.level",
		"log:\n  format: xml\n":                                       `bad.yaml:2: log.format: "xml" must be text or json`,
		"kafka:\n  tls: {enabled: true, ca_file: /nonexistent.pem}\n": "bad.yaml:2: kafka.tls.ca_file",
		"embedded:\n  partitions: 0\n":                                "bad.yaml:2: embedded.partitions: 0 must be ≥ 1",
		"listen: [1, 2]\n":                                            "bad.yaml:1: listen: bad value: cannot unmarshal",
		"kafka:\n  topic: ../outside\n":                               `bad.yaml:2: kafka.topic: "../outside" is not a Kafka topic name`,
		"kafka:\n  topic: ..\n":                                       `bad.yaml:2: kafka.topic: ".." is not a Kafka topic name`,
		"kafka:\n  topic: " + strings.Repeat("t", 250) + "\n":         "bad.yaml:2: kafka.topic: ",
		"kafka:\n  dead_letter_topic: dead/letters\n":                 `bad.yaml:2: kafka.dead_letter_topic: "dead/letters" is not a Kafka topic name`,
		"checkpoint:\n  store: disk\n":                                `bad.yaml:2: checkpoint.store: "disk" must be dir or kafka`,
		"checkpoint:\n  store: kafka\n  topic: a/b\n":                 `bad.yaml:3: checkpoint.topic: "a/b" is not a Kafka topic name`,
		"checkpoint:\n  store: kafka\n  topic: events\n":              `bad.yaml:3: checkpoint.topic: "events" is the events or the dead-letter topic`,
		"kafka:\n  session_timeout: 1ms\n":                            "bad.yaml:2: kafka.session_timeout: 1ms must be between 3s",
		"kafka:\n  session_timeout: 2h\n":                             "bad.yaml:2: kafka.session_timeout: 2h0m0s must be between",
		"embedded: {demo: {speed: 0.5}}\n":                            "bad.yaml:1: embedded.demo.speed: 0.5 must be ≥ 1",
		"clickhouse:\n  addr: [ch:9440]\n  tls: {enabled: true, ca_file: /nonexistent.pem}\n":   "bad.yaml:3: clickhouse.tls.ca_file",
		"clickhouse:\n  addr: [ch:9440]\n  tls: {enabled: true, cert_file: /nonexistent.pem}\n": "bad.yaml:3: clickhouse.tls.cert_file: with key_file",
		"kafka_out:\n  scores_topic: a/b\n":                                                     `bad.yaml:2: kafka_out.scores_topic: "a/b" is not a Kafka topic name`,
		"kafka_out:\n  brokers: [k:9092]\n":                                                     "bad.yaml:1: kafka_out: scores_topic or transitions_topic is required",
		"kafka_out: {scores_topic: pulse, transitions_topic: pulse}\n":                          `bad.yaml:1: kafka_out.transitions_topic: "pulse" is scores_topic too`,
		"kafka_out:\n  topic: x\n":                                                              "bad.yaml:2: kafka_out.topic: unknown key",
		"clickhouse:\n  flush_interval: soon\n":                                                 `bad.yaml:2: clickhouse.flush_interval: "soon" is not a positive duration`,
		"kafka:\n  fetch_max_bytes: 512KiB\n":                                                   "bad.yaml:2: kafka.fetch_max_bytes: 524288 is below 1 MiB",
	} {
		path := filepath.Join(t.TempDir(), "bad.yaml")
		os.WriteFile(path, []byte(src), 0o644)
		_, err := loadConfig(path, noEnv)
		if err == nil || !strings.HasPrefix(err.Error(), filepath.Dir(path)+string(filepath.Separator)+want) {
			t.Errorf("%q: got %v, want an error starting with the file and %q", src, err, want)
		}
	}
}

// Every problem of a config is reported at once, one FILE:LINE: key:
// problem per line sorted by line: unknown keys, values of the wrong
// type, bad values, problems between keys, credentials the environment
// lacks and the rules file's own problems. pulse config check exits 1 with
// them; pulse run --config reports the same list (and exits 2) before it
// starts anything.
func TestConfigCheckReportsEveryProblem(t *testing.T) {
	dir := t.TempDir()
	rulesFile := filepath.Join(dir, "rules.yaml")
	os.WriteFile(rulesFile, []byte("alerts:\n  - name: a\n    when: nosuch > 1\n"), 0o644)
	cfg := writeConfig(t, dir, fmt.Sprintf(`listen: 0.0.0.0:8080
rules: %s
kafka:
  topik: events
  start: middle
  session_timeout: 1ms
engine:
  retention: 7d
  eval_interval: soon
checkpoint: {interval: -1s}
log: {level: loud}
http:
  read: {token_env: PULSE_TEST_UNSET_TOKEN}
clickhouse:
  addr: [ch:9000]
  batch_rows: lots
`, rulesFile))
	want := []string{
		cfg + ":1: listen: 0.0.0.0:8080 is not a loopback address and http.read sets no credentials",
		cfg + ":4: kafka.topik: unknown key",
		cfg + `:5: kafka.start: "middle" must be earliest, latest or committed`,
		cfg + ":6: kafka.session_timeout: 1ms must be between 3s",
		cfg + ":8: engine.retention: 7d is too short",
		cfg + `:9: engine.eval_interval: "soon" is not a positive duration`,
		cfg + `:10: checkpoint.interval: "-1s" is not a positive duration`,
		cfg + `:11: log.level: "loud" must be debug, info, warn or error`,
		cfg + ":13: http.read.token_env: the environment variable PULSE_TEST_UNSET_TOKEN is not set or empty",
		cfg + ":16: clickhouse.batch_rows: bad value: cannot unmarshal !!str `lots` into int",
		rulesFile + ":3: alerts[0].when: unknown metric",
	}
	code, out, errs := pulse(t, "", "config", "check", cfg)
	lines := strings.Split(strings.TrimSuffix(errs, "\n"), "\n")
	if code != 1 || out != "" || len(lines) != len(want) {
		t.Fatalf("exit %d, stdout %q, %d problems, want exit 1 and %d:\n%s", code, out, len(lines), len(want), errs)
	}
	for i, w := range want {
		if !strings.HasPrefix(lines[i], w) {
			t.Errorf("problem %d:\n got %s\nwant %s…", i+1, lines[i], w)
		}
	}
	code, _, runErrs := pulse(t, "", "run", "--config", cfg)
	if code != 2 || runErrs != errs {
		t.Fatalf("pulse run --config: exit %d, reported\n%s\nwant exit 2 and what config check reported:\n%s", code, runErrs, errs)
	}

	good := writeConfig(t, t.TempDir(), "listen: 127.0.0.1:9999\nengine: {retention: 120d, sweep_interval: 1d}\n")
	if code, out, errs := pulse(t, "", "config", "check", good); code != 0 || errs != "" || !strings.HasPrefix(out, good+": ok (") || strings.Count(out, "\n") != 1 {
		t.Fatalf("a good config: exit %d, stdout %q, stderr %q", code, out, errs)
	}
	for _, args := range [][]string{{"config", "check"}, {"config", "check", good, good}, {"config"}} {
		if code, _, _ := pulse(t, "", args...); code != 2 {
			t.Errorf("%v: exit %d, want 2", args, code)
		}
	}
	if code, _, errs := pulse(t, "", "config", "check", filepath.Join(dir, "missing.yaml")); code != 1 || !strings.Contains(errs, "missing.yaml") {
		t.Errorf("a missing file: exit %d, %s", code, errs)
	}
	syntax := writeConfig(t, t.TempDir(), "kafka: [brokers\n")
	if code, _, errs := pulse(t, "", "config", "check", syntax); code != 1 || !strings.HasPrefix(errs, syntax+":") || !strings.Contains(errs, "not valid YAML") {
		t.Errorf("a YAML syntax error: exit %d, %s", code, errs)
	}
}

// A topic of Kafka's longest name and the session timeouts at the bounds
// are accepted.
func TestConfigBoundsAccepted(t *testing.T) {
	for _, src := range []string{
		"kafka:\n  topic: " + strings.Repeat("t", 249) + "\n",
		"kafka:\n  topic: a.b_c-D9\n  dead_letter_topic: dead.letters\n",
		"kafka:\n  session_timeout: 3s\n",
		"kafka:\n  session_timeout: 30m\n",
		"kafka:\n  fetch_max_bytes: 1MiB\n",
	} {
		path := filepath.Join(t.TempDir(), "good.yaml")
		os.WriteFile(path, []byte(src), 0o644)
		if _, err := loadConfig(path, noEnv); err != nil {
			t.Errorf("%q: %v", src, err)
		}
	}
}

// clickhouse.tls builds the same TLS client configuration as kafka.tls:
// the CA of ca_file, TLS 1.2 at least.
func TestClickHouseTLSConfig(t *testing.T) {
	dir := t.TempDir()
	caFile, _, _ := chtest.SelfSigned(t, dir)
	path := filepath.Join(dir, "pulse.yaml")
	os.WriteFile(path, []byte(fmt.Sprintf(`
kafka: {brokers: [k:9092], tls: {enabled: true, ca_file: %[1]s}}
clickhouse: {addr: [ch:9440], tls: {enabled: true, ca_file: %[1]s}}
`, caFile)), 0o644)
	rc, err := loadConfig(path, noEnv)
	if err != nil {
		t.Fatal(err)
	}
	for name, tc := range map[string]*tls.Config{"clickhouse": checkedConfig(t, rc, "clickhouse").(clickhouse.Config).TLS, "kafka": rc.stream.Dialer.TLS} {
		if tc == nil || tc.RootCAs == nil || tc.MinVersion != tls.VersionTLS12 || tc.InsecureSkipVerify {
			t.Errorf("%s TLS config %+v", name, tc)
		}
	}
	rc, err = loadConfig("", func(k string) string { return map[string]string{"PULSE_CLICKHOUSE_ADDR": "ch:9000"}[k] })
	if err != nil {
		t.Fatal(err)
	}
	if ch := checkedConfig(t, rc, "clickhouse").(clickhouse.Config); ch.Addr == nil || ch.TLS != nil {
		t.Fatalf("without clickhouse.tls: %+v", ch)
	}
}

// checkpoint.store kafka keeps checkpoints in <kafka.topic>.pulse-checkpoints
// (or checkpoint.topic), through the consumer's brokers and dialer, and
// creates no checkpoint directory; dir, the default, keeps the files.
func TestCheckpointStoreConfig(t *testing.T) {
	path := filepath.Join(t.TempDir(), "pulse.yaml")
	os.WriteFile(path, []byte("kafka: {brokers: [k:9092], topic: usage, group: g}\ncheckpoint: {store: kafka}\n"), 0o644)
	rc, err := loadConfig(path, noEnv)
	if err != nil {
		t.Fatal(err)
	}
	if sc := rc.stream; sc.CheckpointStore != stream.CheckpointsInKafka || sc.CheckpointTopic != "" || stream.DefaultCheckpointTopic(sc.Topic) != "usage.pulse-checkpoints" ||
		!slices.Equal(sc.Brokers, []string{"k:9092"}) || sc.Dialer == nil {
		t.Fatalf("consumer config %+v", sc)
	}
	for _, d := range rc.dataDirs(&rules.Ruleset{}) {
		if d.key == "checkpoint.dir" {
			t.Error("checkpoint.dir is created with store kafka")
		}
	}
	os.WriteFile(path, []byte("checkpoint: {store: kafka, topic: my.checkpoints}\n"), 0o644)
	if rc, err = loadConfig(path, noEnv); err != nil || rc.stream.CheckpointTopic != "my.checkpoints" || rc.stream.Brokers[0] != "127.0.0.1:9092" {
		t.Fatalf("checkpoint.topic with the embedded broker: %v %+v", err, rc.stream)
	}
	if rc, err = loadConfig("", noEnv); err != nil || rc.stream.CheckpointStore != stream.CheckpointsInDir || rc.file.Checkpoint.Store != "dir" {
		t.Fatalf("the default store: %v %+v", err, rc.stream)
	}
	// A long events topic leaves no room for the default name.
	os.WriteFile(path, []byte("kafka: {topic: "+strings.Repeat("t", 240)+"}\ncheckpoint: {store: kafka}\n"), 0o644)
	if _, err := loadConfig(path, noEnv); err == nil || !strings.HasPrefix(err.Error(), path+":2: checkpoint.topic: the default, ttt") {
		t.Fatalf("a default topic name too long: %v", err)
	}
}
