package main

import (
	"crypto/tls"
	"fmt"
	"github.com/pulsehq/pulse/sinks/clickhouse/chtest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func noEnv(string) string { return "" }

func TestDefaultConfigIsTheEmbeddedDefault(t *testing.T) {
	rc, err := loadConfig("", noEnv)
	if err != nil {
		t.Fatal(err)
	}
	if !rc.embedded || rc.file.Listen != "127.0.0.1:8080" || rc.stream.Brokers[0] != "127.0.0.1:9092" ||
		rc.stream.Topic != "events" || rc.file.Embedded.Partitions != 8 || rc.stream.Engine.EvalInterval != time.Minute ||
		rc.clickhouse != nil || rc.stream.Engine.ScoreRows || rc.stream.Engine.ScoreInterval != time.Hour {
		t.Fatalf("default config %+v", rc)
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
	if rc.embedded || strings.Join(rc.stream.Brokers, ",") != "a:1,b:2" || rc.stream.Group != "csm" ||
		rc.file.Kafka.SASL.Password != "s3cret" || rc.stream.Dialer.SASLMechanism == nil ||
		rc.stream.Engine.Retention != 60*24*time.Hour || rc.stream.IdleAdvance != 0 ||
		rc.clickhouse == nil || rc.clickhouse.Addr[0] != "ch:9000" || rc.clickhouse.Password != "pw" || !rc.stream.Engine.ScoreRows {
		t.Fatalf("config %+v", rc)
	}
}

func TestBadConfigNamesTheKey(t *testing.T) {
	for src, want := range map[string]string{
		"kafka:\n  topik: x\n":                                        "line 2: unknown key topik",
		"engine:\n  eval_interval: soon\n":                            `engine.eval_interval: "soon" is not a positive duration`,
		"engine:\n  retention: 7d\n":                                  "engine.retention: 168h0m0s is too short",
		"engine:\n  sweep_interval: 10s\n":                            "engine.sweep_interval: 10s must be at least eval_interval",
		"engine:\n  sweep_interval: 7m\n":                             "engine.sweep_interval: 7m0s must divide 24h or be whole days",
		"engine:\n  max_accounts: -1\n":                               "engine.max_accounts: -1 must be positive",
		"kafka:\n  start: middle\n":                                   `kafka.start: "middle" must be earliest, latest or committed`,
		"kafka:\n  sasl: {mechanism: kerberos}\n":                     `kafka.sasl.mechanism: "kerberos"`,
		"checkpoint:\n  interval: -1s\n":                              "checkpoint.interval",
		"log:\n  level: loud\n":                                       "log.level",
		"kafka:\n  tls: {enabled: true, ca_file: /nonexistent.pem}\n": "kafka.tls.ca_file",
		"embedded:\n  partitions: 0\n":                                "embedded.partitions: 0 must be ≥ 1",
		"listen: [1, 2]\n":                                            "line 1: cannot unmarshal",
		"kafka:\n  topic: ../outside\n":                               `kafka.topic: "../outside" is not a Kafka topic name`,
		"kafka:\n  topic: ..\n":                                       `kafka.topic: ".." is not a Kafka topic name`,
		"kafka:\n  topic: " + strings.Repeat("t", 250) + "\n":         "kafka.topic: ",
		"kafka:\n  dead_letter_topic: dead/letters\n":                 `kafka.dead_letter_topic: "dead/letters" is not a Kafka topic name`,
		"kafka:\n  session_timeout: 1ms\n":                            "kafka.session_timeout: 1ms must be between 3s",
		"kafka:\n  session_timeout: 2h\n":                             "kafka.session_timeout: 2h0m0s must be between",
		"clickhouse:\n  addr: [ch:9440]\n  tls: {enabled: true, ca_file: /nonexistent.pem}\n":   "clickhouse.tls.ca_file",
		"clickhouse:\n  addr: [ch:9440]\n  tls: {enabled: true, cert_file: /nonexistent.pem}\n": "clickhouse.tls.cert_file/key_file",
	} {
		path := filepath.Join(t.TempDir(), "bad.yaml")
		os.WriteFile(path, []byte(src), 0o644)
		_, err := loadConfig(path, noEnv)
		if err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "bad.yaml") {
			t.Errorf("%q: got %v, want an error naming the file and containing %q", src, err, want)
		}
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
	for name, tc := range map[string]*tls.Config{"clickhouse": rc.clickhouse.TLS, "kafka": rc.stream.Dialer.TLS} {
		if tc == nil || tc.RootCAs == nil || tc.MinVersion != tls.VersionTLS12 || tc.InsecureSkipVerify {
			t.Errorf("%s TLS config %+v", name, tc)
		}
	}
	rc, err = loadConfig("", func(k string) string { return map[string]string{"PULSE_CLICKHOUSE_ADDR": "ch:9000"}[k] })
	if err != nil || rc.clickhouse == nil || rc.clickhouse.TLS != nil {
		t.Fatalf("without clickhouse.tls: %v, %+v", err, rc.clickhouse)
	}
}
