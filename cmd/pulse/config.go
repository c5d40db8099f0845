package main

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/sasl/plain"
	"github.com/segmentio/kafka-go/sasl/scram"
	"go.yaml.in/yaml/v3"

	"github.com/pulsehq/pulse/engine"
	"github.com/pulsehq/pulse/engine/stream"
	"github.com/pulsehq/pulse/rules"
	"github.com/pulsehq/pulse/sinks/clickhouse"
)

// fileConfig is the YAML of `pulse run --config FILE`. Every key is
// optional; defaults live in defaultConfig, in one place. Unknown keys are
// refused.
type fileConfig struct {
	Listen     string           `yaml:"listen"`
	Rules      string           `yaml:"rules"`
	Kafka      kafkaConfig      `yaml:"kafka"`
	Engine     engineConfig     `yaml:"engine"`
	Checkpoint checkpointConfig `yaml:"checkpoint"`
	Embedded   embeddedConfig   `yaml:"embedded"`
	Output     outputConfig     `yaml:"output"`
	ClickHouse clickhouseConfig `yaml:"clickhouse"`
	Webhooks   webhooksConfig   `yaml:"webhooks"`
	Log        logConfig        `yaml:"log"`
}

// webhooksConfig tunes delivery to the notify block of the rules file.
type webhooksConfig struct {
	PublicURL string `yaml:"public_url"` // messages link to PUBLIC_URL/api/accounts/{id}
	GroupWait string `yaml:"group_wait"`
	QueueSize int    `yaml:"queue_size"`
	StateFile string `yaml:"state_file"` // outbox, deliveries and snoozes, kept across restarts
	// MaxRetryTime bounds how long one notification is retried, waits a
	// receiver asks for (429, Retry-After) included.
	MaxRetryTime string `yaml:"max_retry_time"`
	// MaxAge: a transition whose event time is further behind the wall
	// clock (a catch-up, a replay of history) is not notified; 0: any age.
	MaxAge string `yaml:"max_age"`
}

type clickhouseConfig struct {
	Addr          []string `yaml:"addr"` // native protocol, host:9000; empty: no ClickHouse
	Database      string   `yaml:"database"`
	Username      string   `yaml:"username"`
	Password      string   `yaml:"password"` // prefer PULSE_CLICKHOUSE_PASSWORD
	BatchRows     int      `yaml:"batch_rows"`
	FlushInterval string   `yaml:"flush_interval"`
	HistoryMonths int      `yaml:"history_months"` // TTL where the server has TTL; 0 keeps everything
}

type kafkaConfig struct {
	Brokers         []string   `yaml:"brokers"` // empty: run the embedded broker
	Topic           string     `yaml:"topic"`
	Group           string     `yaml:"group"`
	Start           string     `yaml:"start"` // earliest | latest | committed
	DeadLetterTopic string     `yaml:"dead_letter_topic"`
	FetchMaxBytes   int        `yaml:"fetch_max_bytes"`
	FetchMaxWait    string     `yaml:"fetch_max_wait"`
	SessionTimeout  string     `yaml:"session_timeout"` // how long a silent member keeps its partitions
	TLS             tlsConfig  `yaml:"tls"`
	SASL            saslConfig `yaml:"sasl"`
}

type tlsConfig struct {
	Enabled            bool   `yaml:"enabled"`
	CAFile             string `yaml:"ca_file"`
	CertFile           string `yaml:"cert_file"`
	KeyFile            string `yaml:"key_file"`
	InsecureSkipVerify bool   `yaml:"insecure_skip_verify"`
}

type saslConfig struct {
	Mechanism string `yaml:"mechanism"` // plain | scram-sha-256 | scram-sha-512
	Username  string `yaml:"username"`
	Password  string `yaml:"password"` // prefer PULSE_KAFKA_SASL_PASSWORD
}

type engineConfig struct {
	Retention     string `yaml:"retention"`
	MaxFuture     string `yaml:"max_future"`
	EvalInterval  string `yaml:"eval_interval"`
	SweepInterval string `yaml:"sweep_interval"`
	IdleAdvance   string `yaml:"idle_advance"` // "0" turns it off
	ScoreInterval string `yaml:"score_interval"`
}

type checkpointConfig struct {
	Dir      string `yaml:"dir"`
	Interval string `yaml:"interval"`
}

type embeddedConfig struct {
	Listen     string     `yaml:"listen"`
	Partitions int        `yaml:"partitions"`
	Demo       demoConfig `yaml:"demo"`
}

type demoConfig struct {
	Enabled     bool    `yaml:"enabled"`
	Accounts    int     `yaml:"accounts"`
	HistoryDays int     `yaml:"history_days"`
	Speed       float64 `yaml:"speed"`
	Seed        uint64  `yaml:"seed"`
}

type outputConfig struct {
	TransitionsFile string `yaml:"transitions_file"` // "" none, "-" stdout
	// MetricsInterval is how often the account aggregates of /metrics
	// (accounts per grade, firing alerts, scores) are recomputed.
	MetricsInterval string `yaml:"metrics_interval"`
}

type logConfig struct {
	Level string `yaml:"level"` // debug | info | warn | error
}

func defaultConfig() fileConfig {
	return fileConfig{
		Listen:     "127.0.0.1:8080",
		Rules:      "deploy/rules/example.yaml",
		Kafka:      kafkaConfig{Topic: "events", Group: "pulse", Start: stream.StartEarliest, FetchMaxBytes: 16 << 20, FetchMaxWait: "250ms", SessionTimeout: "10s"},
		Engine:     engineConfig{Retention: "90d", MaxFuture: "5m", EvalInterval: "1m", SweepInterval: "1h", IdleAdvance: "1m", ScoreInterval: "1h"},
		ClickHouse: clickhouseConfig{Database: "pulse", Username: "default", BatchRows: 100_000, FlushInterval: "1s"},
		Checkpoint: checkpointConfig{Dir: "pulse-data/checkpoints", Interval: "30s"},
		Embedded: embeddedConfig{Listen: "127.0.0.1:9092", Partitions: 8,
			Demo: demoConfig{Enabled: true, Accounts: 300, HistoryDays: 100, Speed: 100000, Seed: 1}},
		Output:   outputConfig{TransitionsFile: "pulse-data/transitions.jsonl", MetricsInterval: "5s"},
		Webhooks: webhooksConfig{GroupWait: "10s", QueueSize: 10_000, StateFile: "pulse-data/webhooks.state", MaxRetryTime: "1h", MaxAge: "6h"},
		Log:      logConfig{Level: "info"},
	}
}

// runConfig is the validated configuration the wiring uses.
type runConfig struct {
	file              fileConfig
	embedded          bool
	aggregateInterval time.Duration
	clickhouse        *clickhouse.Config // nil: no ClickHouse
	groupWait         time.Duration
	webhookRetryTime  time.Duration
	webhookMaxAge     time.Duration
	stream            stream.Config
	logLevel          string
}

// loadConfig reads path ("" for the embedded default), applies the
// environment overrides and validates everything, naming the key of the
// first problem.
func loadConfig(path string, getenv func(string) string) (*runConfig, error) {
	fc := defaultConfig()
	if path != "" {
		data, err := os.ReadFile(path)
		if err != nil {
			return nil, err
		}
		dec := yaml.NewDecoder(bytes.NewReader(data))
		dec.KnownFields(true)
		if err := dec.Decode(&fc); err != nil && !errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("%s: %s", path, yamlMessage(err))
		}
	}
	if v := getenv("PULSE_KAFKA_BROKERS"); v != "" {
		fc.Kafka.Brokers = strings.Split(v, ",")
	}
	if v := getenv("PULSE_KAFKA_SASL_USERNAME"); v != "" {
		fc.Kafka.SASL.Username = v
	}
	if v := getenv("PULSE_KAFKA_SASL_PASSWORD"); v != "" {
		fc.Kafka.SASL.Password = v
	}
	if v := getenv("PULSE_CLICKHOUSE_ADDR"); v != "" {
		fc.ClickHouse.Addr = strings.Split(v, ",")
	}
	if v := getenv("PULSE_CLICKHOUSE_PASSWORD"); v != "" {
		fc.ClickHouse.Password = v
	}
	rc := &runConfig{file: fc, embedded: len(fc.Kafka.Brokers) == 0, logLevel: fc.Log.Level}
	if err := rc.validate(); err != nil {
		if path == "" {
			path = "default config"
		}
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return rc, nil
}

var identRe = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

var yamlLineRe = regexp.MustCompile(`line (\d+): field (\S+) not found in type \S+`)

func yamlMessage(err error) string {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	msg = strings.TrimPrefix(msg, "unmarshal errors:\n  ")
	return yamlLineRe.ReplaceAllString(msg, "line $1: unknown key $2")
}

func (rc *runConfig) validate() error {
	fc := &rc.file
	dur := func(key, v string, zeroOK bool) (time.Duration, error) {
		d, err := rules.ParseDuration(v)
		if err != nil || d < 0 || (d == 0 && !zeroOK) {
			return 0, fmt.Errorf("%s: %q is not a positive duration (e.g. 30s, 5m, 90d)", key, v)
		}
		return d, nil
	}
	var err error
	var ec engine.Config
	if ec.Retention, err = dur("engine.retention", fc.Engine.Retention, false); err != nil {
		return err
	}
	if ec.MaxFuture, err = dur("engine.max_future", fc.Engine.MaxFuture, true); err != nil {
		return err
	}
	if ec.EvalInterval, err = dur("engine.eval_interval", fc.Engine.EvalInterval, false); err != nil {
		return err
	}
	if ec.SweepInterval, err = dur("engine.sweep_interval", fc.Engine.SweepInterval, false); err != nil {
		return err
	}
	if ec.ScoreInterval, err = dur("engine.score_interval", fc.Engine.ScoreInterval, false); err != nil {
		return err
	}
	if err := ec.Validate(); err != nil {
		return fmt.Errorf("engine.%w", err)
	}
	sc := stream.Config{Topic: fc.Kafka.Topic, Group: fc.Kafka.Group, Start: fc.Kafka.Start, CheckpointDir: fc.Checkpoint.Dir,
		DeadLetterTopic: fc.Kafka.DeadLetterTopic, FetchMaxBytes: fc.Kafka.FetchMaxBytes, Engine: ec, Brokers: fc.Kafka.Brokers}
	if sc.IdleAdvance, err = dur("engine.idle_advance", fc.Engine.IdleAdvance, true); err != nil {
		return err
	}
	if sc.CheckpointInterval, err = dur("checkpoint.interval", fc.Checkpoint.Interval, false); err != nil {
		return err
	}
	if rc.aggregateInterval, err = dur("output.metrics_interval", fc.Output.MetricsInterval, false); err != nil {
		return err
	}
	if rc.groupWait, err = dur("webhooks.group_wait", fc.Webhooks.GroupWait, true); err != nil {
		return err
	}
	if rc.webhookRetryTime, err = dur("webhooks.max_retry_time", fc.Webhooks.MaxRetryTime, false); err != nil {
		return err
	}
	if rc.webhookMaxAge, err = dur("webhooks.max_age", fc.Webhooks.MaxAge, true); err != nil {
		return err
	}
	if fc.Webhooks.QueueSize < 1 {
		return fmt.Errorf("webhooks.queue_size: %d must be ≥ 1", fc.Webhooks.QueueSize)
	}
	if u := fc.Webhooks.PublicURL; u != "" && !strings.HasPrefix(u, "http://") && !strings.HasPrefix(u, "https://") {
		return fmt.Errorf("webhooks.public_url: %q must start with http:// or https://", u)
	}
	if sc.FetchMaxWait, err = dur("kafka.fetch_max_wait", fc.Kafka.FetchMaxWait, false); err != nil {
		return err
	}
	if sc.SessionTimeout, err = dur("kafka.session_timeout", fc.Kafka.SessionTimeout, false); err != nil {
		return err
	}
	switch {
	case fc.Listen == "":
		return errors.New("listen: an address is required, e.g. 127.0.0.1:8080")
	case fc.Rules == "":
		return errors.New("rules: a rules file is required")
	case fc.Kafka.Topic == "":
		return errors.New("kafka.topic: required")
	case fc.Kafka.Group == "":
		return errors.New("kafka.group: required")
	case fc.Kafka.Start != stream.StartEarliest && fc.Kafka.Start != stream.StartLatest && fc.Kafka.Start != stream.StartCommitted:
		return fmt.Errorf("kafka.start: %q must be earliest, latest or committed", fc.Kafka.Start)
	case fc.Kafka.FetchMaxBytes < 1<<20:
		return fmt.Errorf("kafka.fetch_max_bytes: %d is below 1 MiB, the largest event", fc.Kafka.FetchMaxBytes)
	case fc.Checkpoint.Dir == "":
		return errors.New("checkpoint.dir: required")
	case rc.embedded && fc.Embedded.Partitions < 1:
		return fmt.Errorf("embedded.partitions: %d must be ≥ 1", fc.Embedded.Partitions)
	case rc.embedded && fc.Embedded.Demo.Enabled && (fc.Embedded.Demo.Accounts < 1 || fc.Embedded.Demo.HistoryDays < 1 || fc.Embedded.Demo.Speed < 1):
		return errors.New("embedded.demo: accounts and history_days must be ≥ 1 and speed ≥ 1")
	}
	if !slices.Contains([]string{"debug", "info", "warn", "error"}, fc.Log.Level) {
		return fmt.Errorf("log.level: %q must be debug, info, warn or error", fc.Log.Level)
	}
	if rc.embedded {
		sc.Brokers = []string{fc.Embedded.Listen}
	}
	if chc := fc.ClickHouse; len(chc.Addr) > 0 {
		cc := clickhouse.Config{Addr: chc.Addr, Database: chc.Database, Username: chc.Username, Password: chc.Password, BatchRows: chc.BatchRows, HistoryMonths: chc.HistoryMonths}
		if cc.FlushInterval, err = dur("clickhouse.flush_interval", chc.FlushInterval, false); err != nil {
			return err
		}
		switch {
		case !identRe.MatchString(chc.Database):
			return fmt.Errorf("clickhouse.database: %q must be a plain identifier", chc.Database)
		case chc.BatchRows < 1:
			return fmt.Errorf("clickhouse.batch_rows: %d must be ≥ 1", chc.BatchRows)
		case chc.HistoryMonths < 0:
			return fmt.Errorf("clickhouse.history_months: %d must be ≥ 0", chc.HistoryMonths)
		}
		rc.clickhouse = &cc
		sc.Engine.ScoreRows = true
	}
	if sc.Dialer, err = dialer(&fc.Kafka); err != nil {
		return err
	}
	rc.stream = sc
	return nil
}

// dialer builds the Kafka dialer with the TLS and SASL settings.
func dialer(k *kafkaConfig) (*kafka.Dialer, error) {
	d := &kafka.Dialer{Timeout: 10 * time.Second, DualStack: true}
	if k.TLS.Enabled {
		tc := &tls.Config{InsecureSkipVerify: k.TLS.InsecureSkipVerify, MinVersion: tls.VersionTLS12}
		if k.TLS.CAFile != "" {
			pem, err := os.ReadFile(k.TLS.CAFile)
			if err != nil {
				return nil, fmt.Errorf("kafka.tls.ca_file: %w", err)
			}
			tc.RootCAs = x509.NewCertPool()
			if !tc.RootCAs.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("kafka.tls.ca_file: %s holds no PEM certificate", k.TLS.CAFile)
			}
		}
		if k.TLS.CertFile != "" || k.TLS.KeyFile != "" {
			cert, err := tls.LoadX509KeyPair(k.TLS.CertFile, k.TLS.KeyFile)
			if err != nil {
				return nil, fmt.Errorf("kafka.tls.cert_file/key_file: %w", err)
			}
			tc.Certificates = []tls.Certificate{cert}
		}
		d.TLS = tc
	}
	switch k.SASL.Mechanism {
	case "":
	case "plain":
		d.SASLMechanism = plain.Mechanism{Username: k.SASL.Username, Password: k.SASL.Password}
	case "scram-sha-256", "scram-sha-512":
		algo := scram.SHA256
		if k.SASL.Mechanism == "scram-sha-512" {
			algo = scram.SHA512
		}
		m, err := scram.Mechanism(algo, k.SASL.Username, k.SASL.Password)
		if err != nil {
			return nil, fmt.Errorf("kafka.sasl: %w", err)
		}
		d.SASLMechanism = m
	default:
		return nil, fmt.Errorf("kafka.sasl.mechanism: %q must be plain, scram-sha-256 or scram-sha-512", k.SASL.Mechanism)
	}
	return d, nil
}
