package main

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
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
	"github.com/pulsehq/pulse/sinks/web"
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
	HTTP       httpConfig       `yaml:"http"`
}

// httpConfig secures the HTTP server (see web.Auth).
type httpConfig struct {
	Read  authConfig `yaml:"read"`  // the API, pages and /metrics
	Write authConfig `yaml:"write"` // snoozes and reload; unset: the read credentials
	// AllowUnauthenticated lets Pulse serve a listen address that is not
	// loopback without credentials.
	AllowUnauthenticated bool   `yaml:"allow_unauthenticated"`
	Pprof                bool   `yaml:"pprof"`
	MaxSnooze            string `yaml:"max_snooze"`
	MaxSnoozes           int    `yaml:"max_snoozes"`
}

// authConfig names credentials; secrets come from the environment only.
type authConfig struct {
	TokenEnv         string `yaml:"token_env"` // variable holding the bearer token
	BasicUser        string `yaml:"basic_user"`
	BasicPasswordEnv string `yaml:"basic_password_env"` // variable holding the basic-auth password
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
	Addr          []string  `yaml:"addr"` // native protocol, host:9000; empty: no ClickHouse
	Database      string    `yaml:"database"`
	Username      string    `yaml:"username"`
	Password      string    `yaml:"password"` // prefer PULSE_CLICKHOUSE_PASSWORD
	BatchRows     int       `yaml:"batch_rows"`
	FlushInterval string    `yaml:"flush_interval"`
	HistoryMonths int       `yaml:"history_months"` // TTL where the server has TTL; 0 keeps everything
	TLS           tlsConfig `yaml:"tls"`            // the native protocol's secure port, e.g. 9440
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
	MaxAccounts   int    `yaml:"max_accounts"` // per partition
	MaxUsers      int    `yaml:"max_users_per_account"`
	MaxSkew       string `yaml:"max_skew"`
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
		Rules:      "", // the shipped model built into the binary
		Kafka:      kafkaConfig{Topic: "events", Group: "pulse", Start: stream.StartEarliest, FetchMaxBytes: 16 << 20, FetchMaxWait: "250ms", SessionTimeout: "10s"},
		Engine:     engineConfig{Retention: "90d", MaxFuture: "5m", EvalInterval: "1m", SweepInterval: "1h", IdleAdvance: "1m", ScoreInterval: "1h", MaxSkew: "1h"},
		ClickHouse: clickhouseConfig{Database: "pulse", Username: "default", BatchRows: 100_000, FlushInterval: "1s"},
		Checkpoint: checkpointConfig{Dir: "pulse-data/checkpoints", Interval: "30s"},
		Embedded: embeddedConfig{Listen: "127.0.0.1:9092", Partitions: 8,
			Demo: demoConfig{Enabled: true, Accounts: 300, HistoryDays: 100, Speed: 100000, Seed: 1}},
		Output:   outputConfig{TransitionsFile: "pulse-data/transitions.jsonl", MetricsInterval: "5s"},
		Webhooks: webhooksConfig{GroupWait: "10s", QueueSize: 10_000, StateFile: "pulse-data/webhooks.state", MaxRetryTime: "1h", MaxAge: "6h"},
		Log:      logConfig{Level: "info"},
		HTTP:     httpConfig{MaxSnooze: "90d", MaxSnoozes: 10_000},
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
	auth              web.Auth
	maxSnooze         time.Duration
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
	err := rc.validate()
	if err == nil {
		err = rc.credentials(getenv)
	}
	if err != nil {
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
	ec.MaxAccounts, ec.MaxUsers = fc.Engine.MaxAccounts, fc.Engine.MaxUsers
	if ec.MaxSkew, err = dur("engine.max_skew", fc.Engine.MaxSkew, false); err != nil {
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
	if sc.SessionTimeout < minSessionTimeout || sc.SessionTimeout > maxSessionTimeout {
		return fmt.Errorf("kafka.session_timeout: %v must be between %v (three of the 1 s heartbeats) and %v (a default broker's group.max.session.timeout.ms)",
			sc.SessionTimeout, minSessionTimeout, maxSessionTimeout)
	}
	sc.LagInterval = rc.aggregateInterval
	if err := topicName("kafka.topic", fc.Kafka.Topic); err != nil {
		return err
	}
	if fc.Kafka.DeadLetterTopic != "" {
		if err := topicName("kafka.dead_letter_topic", fc.Kafka.DeadLetterTopic); err != nil {
			return err
		}
	}
	switch {
	case fc.Listen == "":
		return errors.New("listen: an address is required, e.g. 127.0.0.1:8080")
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
		if cc.TLS, err = chc.TLS.build("clickhouse.tls"); err != nil {
			return err
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

// credentials reads the HTTP credentials the config names from the
// environment, and the snooze bounds.
func (rc *runConfig) credentials(getenv func(string) string) error {
	h := &rc.file.HTTP
	var err error
	if rc.maxSnooze, err = rules.ParseDuration(h.MaxSnooze); err != nil || rc.maxSnooze <= 0 {
		return fmt.Errorf("http.max_snooze: %q is not a positive duration (e.g. 30d)", h.MaxSnooze)
	}
	if h.MaxSnoozes < 1 {
		return fmt.Errorf("http.max_snoozes: %d must be ≥ 1", h.MaxSnoozes)
	}
	read := func(key string, a authConfig) (web.Credentials, error) {
		var c web.Credentials
		if a.TokenEnv != "" {
			if c.Token = getenv(a.TokenEnv); c.Token == "" {
				return c, fmt.Errorf("%s.token_env: the environment variable %s is not set or empty", key, a.TokenEnv)
			}
		}
		if a.BasicUser != "" || a.BasicPasswordEnv != "" {
			if a.BasicUser == "" || a.BasicPasswordEnv == "" {
				return c, fmt.Errorf("%s: basic_user and basic_password_env go together", key)
			}
			c.User = a.BasicUser
			if c.Password = getenv(a.BasicPasswordEnv); c.Password == "" {
				return c, fmt.Errorf("%s.basic_password_env: the environment variable %s is not set or empty", key, a.BasicPasswordEnv)
			}
		}
		return c, nil
	}
	if rc.auth.Read, err = read("http.read", h.Read); err != nil {
		return err
	}
	rc.auth.Write, err = read("http.write", h.Write)
	return err
}

// checkExposure refuses to serve a listen address other hosts can reach
// without credentials, unless http.allow_unauthenticated says so. It runs
// once the listen address is final (--listen overrides the file).
func (rc *runConfig) checkExposure() error {
	if rc.auth.Read.Set() || rc.file.HTTP.AllowUnauthenticated || loopback(rc.file.Listen) {
		return nil
	}
	return fmt.Errorf("listen: %s is not a loopback address and http.read sets no credentials: anyone who reaches it reads every account and may snooze them. "+
		"Set http.read (and http.write) token_env or basic_user, or set http.allow_unauthenticated: true to serve it open", rc.file.Listen)
}

// loopback reports whether a listen address accepts only this host.
func loopback(listen string) bool {
	host, _, err := net.SplitHostPort(listen)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// Bounds of kafka.session_timeout. The consumer heartbeats every second,
// and a member must be able to miss two heartbeats; a default broker
// refuses sessions outside group.min/max.session.timeout.ms (6 s–30 min).
const (
	minSessionTimeout = 3 * time.Second
	maxSessionTimeout = 30 * time.Minute
)

// topicRe is Kafka's own rule for topic names. Pulse also names its
// checkpoint files after the topic, so a name like ../x would put them
// outside checkpoint.dir.
var topicRe = regexp.MustCompile(`^[a-zA-Z0-9._-]{1,249}$`)

func topicName(key, name string) error {
	if !topicRe.MatchString(name) || name == "." || name == ".." {
		return fmt.Errorf(`%s: %q is not a Kafka topic name: 1 to 249 letters, digits, '.', '_' or '-' (and not "." or "..")`, key, name)
	}
	return nil
}

// build returns the TLS client configuration, or nil when TLS is off. key
// names the setting in errors (kafka.tls, clickhouse.tls).
func (c tlsConfig) build(key string) (*tls.Config, error) {
	if !c.Enabled {
		return nil, nil
	}
	tc := &tls.Config{InsecureSkipVerify: c.InsecureSkipVerify, MinVersion: tls.VersionTLS12}
	if c.CAFile != "" {
		pem, err := os.ReadFile(c.CAFile)
		if err != nil {
			return nil, fmt.Errorf("%s.ca_file: %w", key, err)
		}
		tc.RootCAs = x509.NewCertPool()
		if !tc.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("%s.ca_file: %s holds no PEM certificate", key, c.CAFile)
		}
	}
	if c.CertFile != "" || c.KeyFile != "" {
		cert, err := tls.LoadX509KeyPair(c.CertFile, c.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("%s.cert_file/key_file: %w", key, err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	return tc, nil
}

// dialer builds the Kafka dialer with the TLS and SASL settings.
func dialer(k *kafkaConfig) (*kafka.Dialer, error) {
	d := &kafka.Dialer{Timeout: 10 * time.Second, DualStack: true}
	tc, err := k.TLS.build("kafka.tls")
	if err != nil {
		return nil, err
	}
	if tc != nil {
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
