package main

import (
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
	} {
		path := filepath.Join(t.TempDir(), "bad.yaml")
		os.WriteFile(path, []byte(src), 0o644)
		_, err := loadConfig(path, noEnv)
		if err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "bad.yaml") {
			t.Errorf("%q: got %v, want an error naming the file and containing %q", src, err, want)
		}
	}
}
