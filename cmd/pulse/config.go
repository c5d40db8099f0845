package main

import (
	"cmp"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/sasl/plain"
	"github.com/segmentio/kafka-go/sasl/scram"
	"go.yaml.in/yaml/v3"

	"github.com/pulsehq/pulse/engine"
	"github.com/pulsehq/pulse/engine/changelog"
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
	Store    string `yaml:"store"` // dir | kafka
	Dir      string `yaml:"dir"`
	Topic    string `yaml:"topic"` // store kafka: "" is <kafka.topic>.pulse-checkpoints
	Interval string `yaml:"interval"`
}

// Values of checkpoint.store.
const (
	storeDir   = "dir"
	storeKafka = "kafka"
)

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
	Level  string `yaml:"level"`  // debug | info | warn | error
	Format string `yaml:"format"` // text (logfmt) | json
}

// logFormats are the values of log.format and --log-format.
var logFormats = []string{"text", "json"}

// newLogger returns the daemon's logger: slog's text handler (logfmt) or
// its JSON handler, one record per line, at level and above.
func newLogger(w io.Writer, format, level string) *slog.Logger {
	var lv slog.Level
	lv.UnmarshalText([]byte(level))
	opts := &slog.HandlerOptions{Level: lv}
	if format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

func defaultConfig() fileConfig {
	return fileConfig{
		Listen:     "127.0.0.1:8080",
		Rules:      "", // the shipped model built into the binary
		Kafka:      kafkaConfig{Topic: "events", Group: "pulse", Start: stream.StartEarliest, FetchMaxBytes: 16 << 20, FetchMaxWait: "250ms", SessionTimeout: "10s"},
		Engine:     engineConfig{Retention: "90d", MaxFuture: "5m", EvalInterval: "1m", SweepInterval: "1h", IdleAdvance: "1m", ScoreInterval: "1h", MaxSkew: "1h"},
		ClickHouse: clickhouseConfig{Database: "pulse", Username: "default", BatchRows: 100_000, FlushInterval: "1s"},
		Checkpoint: checkpointConfig{Store: storeDir, Dir: "pulse-data/checkpoints", Interval: "30s"},
		Embedded: embeddedConfig{Listen: "127.0.0.1:9092", Partitions: 8,
			Demo: demoConfig{Enabled: true, Accounts: 300, HistoryDays: 100, Speed: 100000, Seed: 1}},
		Output:   outputConfig{TransitionsFile: "pulse-data/transitions.jsonl", MetricsInterval: "5s"},
		Webhooks: webhooksConfig{GroupWait: "10s", QueueSize: 10_000, StateFile: "pulse-data/webhooks.state", MaxRetryTime: "1h", MaxAge: "6h"},
		Log:      logConfig{Level: "info", Format: "text"},
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
	changelog         *changelog.Config // checkpoint.store kafka; nil: the directory
	auth              web.Auth
	maxSnooze         time.Duration
}

// loadConfig reads path ("" for the embedded default), applies the
// environment overrides and validates everything. It reports every problem
// at once, in a *configError: each a *rules.Error that names the file, the
// line and the key, as a rules file's problems are (FILE:LINE: key:
// problem). checkConfig adds what pulse run checks besides.
func loadConfig(path string, getenv func(string) string) (*runConfig, error) {
	rc, p, err := parseConfig(path, getenv)
	if err != nil {
		return nil, err
	}
	if err := p.err(); err != nil {
		return nil, err
	}
	return rc, nil
}

// parseConfig is loadConfig that applies overrides (the command line's)
// after the environment's and returns the problems found so far, for a
// caller to add its own (checkConfig). err is a file that cannot be read
// or parsed at all.
func parseConfig(path string, getenv func(string) string, overrides ...func(*fileConfig)) (*runConfig, *configProblems, error) {
	fc := defaultConfig()
	p := &configProblems{file: path}
	if path == "" {
		p.file = "default config"
	} else {
		data, err := os.ReadFile(path)
		if err != nil {
			return nil, nil, &configError{[]error{err}}
		}
		doc, err := rules.DecodeStrict(path, data, &fc)
		p.doc = doc
		if errors.Is(err, rules.ErrSyntax) {
			return nil, nil, &configError{unjoin(err)} // nothing else can be trusted
		}
		// Unknown keys and values of the wrong type are reported with
		// the rest; such a key keeps its default meanwhile.
		p.errs = append(p.errs, unjoin(err)...)
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
	for _, o := range overrides {
		o(&fc)
	}
	rc := &runConfig{file: fc, embedded: len(fc.Kafka.Brokers) == 0}
	rc.validate(p)
	rc.credentials(getenv, p)
	return rc, p, nil
}

// runFlags are the settings `pulse run` takes from its command line; they
// override the config file's.
type runFlags struct {
	listen    string // listen
	rules     string // rules
	logFormat string // log.format
}

// checkConfig loads and checks everything `pulse run` needs before it
// starts anything: the config file (path; "" for the embedded default)
// with the environment's and the command line's overrides, whether the
// listen address is served open, and the rules file (or the model built
// into the binary). `pulse config check` runs it too. Every problem is
// returned at once, in a *configError.
func checkConfig(path string, getenv func(string) string, flags runFlags) (*runConfig, *rules.Ruleset, error) {
	rc, p, err := parseConfig(path, getenv, func(fc *fileConfig) {
		if flags.listen != "" {
			fc.Listen = flags.listen
		}
		if flags.rules != "" {
			fc.Rules = flags.rules
		}
		if flags.logFormat != "" {
			fc.Log.Format = flags.logFormat
		}
	})
	if err != nil {
		return nil, nil, err
	}
	if err := rc.exposure(); err != nil {
		p.add("listen", err)
	}
	rs, err := loadRules(rc.file.Rules)
	var inFile *rules.Error
	switch {
	case err == nil:
	case errors.As(err, &inFile):
		p.errs = append(p.errs, unjoin(err)...) // FILE:LINE: key: problem of the rules file
	case flags.rules != "":
		p.errs = append(p.errs, fmt.Errorf("--rules: %w", err))
	default:
		p.add("rules", err)
	}
	if err := p.err(); err != nil {
		return nil, nil, err
	}
	return rc, rs, nil
}

// configProblems collects the problems of a config, each naming its key
// and, where the file has the key (or the block it belongs in), its line.
type configProblems struct {
	file string
	doc  *yaml.Node // nil without a file
	errs []error
}

func (p *configProblems) add(key string, err error) {
	p.errs = append(p.errs, &rules.Error{File: p.file, Line: rules.Line(p.doc, key), Key: key, Err: err})
}

func (p *configProblems) addf(key, format string, args ...any) {
	p.add(key, fmt.Errorf(format, args...))
}

// err returns the problems as a *configError, or nil: the config file's
// first, by line (those of keys the file does not hold last), then any
// other's (the rules file's) as they came.
func (p *configProblems) err() error {
	if len(p.errs) == 0 {
		return nil
	}
	rank := func(err error) int {
		var re *rules.Error
		switch {
		case !errors.As(err, &re) || re.File != p.file:
			return math.MaxInt
		case re.Line == 0:
			return math.MaxInt - 1
		}
		return re.Line
	}
	slices.SortStableFunc(p.errs, func(a, b error) int { return cmp.Compare(rank(a), rank(b)) })
	return &configError{p.errs}
}

// configError is every problem of a config at once. Commands print it one
// problem per line (printProblems).
type configError struct{ errs []error }

func (e *configError) Error() string   { return errors.Join(e.errs...).Error() }
func (e *configError) Unwrap() []error { return e.errs }

// unjoin returns the errors a joined error holds (err itself otherwise;
// none for nil).
func unjoin(err error) []error {
	if err == nil {
		return nil
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}

var identRe = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// validate checks every key, adding each problem to p; a duration that
// does not parse takes its default, so the checks that compare it with
// others report only their own problems.
func (rc *runConfig) validate(p *configProblems) {
	fc := &rc.file
	defaults := defaultConfig()
	dur := func(key, v, fallback string, zeroOK bool) time.Duration {
		d, err := rules.ParseDuration(v)
		if err != nil || d < 0 || (d == 0 && !zeroOK) {
			p.addf(key, "%q is not a positive duration (e.g. 30s, 5m, 90d, 1d12h)", v)
			d, _ = rules.ParseDuration(fallback)
		}
		return d
	}
	var ec engine.Config
	ec.Retention = dur("engine.retention", fc.Engine.Retention, defaults.Engine.Retention, false)
	ec.MaxFuture = dur("engine.max_future", fc.Engine.MaxFuture, defaults.Engine.MaxFuture, true)
	ec.EvalInterval = dur("engine.eval_interval", fc.Engine.EvalInterval, defaults.Engine.EvalInterval, false)
	ec.SweepInterval = dur("engine.sweep_interval", fc.Engine.SweepInterval, defaults.Engine.SweepInterval, false)
	ec.ScoreInterval = dur("engine.score_interval", fc.Engine.ScoreInterval, defaults.Engine.ScoreInterval, false)
	ec.MaxAccounts, ec.MaxUsers = fc.Engine.MaxAccounts, fc.Engine.MaxUsers
	ec.MaxSkew = dur("engine.max_skew", fc.Engine.MaxSkew, defaults.Engine.MaxSkew, false)
	for _, err := range unjoin(ec.Validate()) {
		var se *engine.SettingError
		if errors.As(err, &se) {
			p.add("engine."+se.Key, se.Err)
		} else {
			p.add("engine", err)
		}
	}
	sc := stream.Config{Topic: fc.Kafka.Topic, Group: fc.Kafka.Group, Start: fc.Kafka.Start, CheckpointDir: fc.Checkpoint.Dir,
		DeadLetterTopic: fc.Kafka.DeadLetterTopic, FetchMaxBytes: fc.Kafka.FetchMaxBytes, Engine: ec, Brokers: fc.Kafka.Brokers}
	sc.IdleAdvance = dur("engine.idle_advance", fc.Engine.IdleAdvance, defaults.Engine.IdleAdvance, true)
	sc.CheckpointInterval = dur("checkpoint.interval", fc.Checkpoint.Interval, defaults.Checkpoint.Interval, false)
	rc.aggregateInterval = dur("output.metrics_interval", fc.Output.MetricsInterval, defaults.Output.MetricsInterval, false)
	rc.groupWait = dur("webhooks.group_wait", fc.Webhooks.GroupWait, defaults.Webhooks.GroupWait, true)
	rc.webhookRetryTime = dur("webhooks.max_retry_time", fc.Webhooks.MaxRetryTime, defaults.Webhooks.MaxRetryTime, false)
	rc.webhookMaxAge = dur("webhooks.max_age", fc.Webhooks.MaxAge, defaults.Webhooks.MaxAge, true)
	if fc.Webhooks.QueueSize < 1 {
		p.addf("webhooks.queue_size", "%d must be ≥ 1", fc.Webhooks.QueueSize)
	}
	if u := fc.Webhooks.PublicURL; u != "" && !strings.HasPrefix(u, "http://") && !strings.HasPrefix(u, "https://") {
		p.addf("webhooks.public_url", "%q must start with http:// or https://", u)
	}
	sc.FetchMaxWait = dur("kafka.fetch_max_wait", fc.Kafka.FetchMaxWait, defaults.Kafka.FetchMaxWait, false)
	sc.SessionTimeout = dur("kafka.session_timeout", fc.Kafka.SessionTimeout, defaults.Kafka.SessionTimeout, false)
	if sc.SessionTimeout < minSessionTimeout || sc.SessionTimeout > maxSessionTimeout {
		p.addf("kafka.session_timeout", "%v must be between %v (three of the 1 s heartbeats) and %v (a default broker's group.max.session.timeout.ms)",
			sc.SessionTimeout, minSessionTimeout, maxSessionTimeout)
	}
	sc.LagInterval = rc.aggregateInterval
	if fc.Kafka.Topic == "" {
		p.addf("kafka.topic", "required")
	} else {
		topicName(p, "kafka.topic", fc.Kafka.Topic)
	}
	if fc.Kafka.DeadLetterTopic != "" {
		topicName(p, "kafka.dead_letter_topic", fc.Kafka.DeadLetterTopic)
	}
	if fc.Listen == "" {
		p.addf("listen", "an address is required, e.g. 127.0.0.1:8080")
	}
	if fc.Kafka.Group == "" {
		p.addf("kafka.group", "required")
	}
	if fc.Kafka.Start != stream.StartEarliest && fc.Kafka.Start != stream.StartLatest && fc.Kafka.Start != stream.StartCommitted {
		p.addf("kafka.start", "%q must be earliest, latest or committed", fc.Kafka.Start)
	}
	if fc.Kafka.FetchMaxBytes < 1<<20 {
		p.addf("kafka.fetch_max_bytes", "%d is below 1 MiB, the largest event", fc.Kafka.FetchMaxBytes)
	}
	switch fc.Checkpoint.Store {
	case storeDir:
		if fc.Checkpoint.Dir == "" {
			p.addf("checkpoint.dir", "required")
		}
	case storeKafka:
		topic := fc.Checkpoint.Topic
		switch {
		case topic != "":
			topicName(p, "checkpoint.topic", topic)
		case topicRe.MatchString(fc.Kafka.Topic): // else kafka.topic says what is wrong
			if topic = changelog.DefaultTopic(fc.Kafka.Topic); len(topic) > 249 {
				p.addf("checkpoint.topic", "the default, %s, is longer than Kafka's 249 characters: name a topic", topic)
			}
		}
		if topic != "" && (topic == fc.Kafka.Topic || topic == fc.Kafka.DeadLetterTopic) {
			p.addf("checkpoint.topic", "%q is the events or the dead-letter topic; checkpoints need a topic of their own", topic)
		}
		// Records are compressed with lz4: a checkpoint shrinks about
		// fivefold (bench/results/changelog.md).
		rc.changelog = &changelog.Config{Topic: topic, Source: fc.Kafka.Topic, Group: fc.Kafka.Group, Compression: kafka.Lz4}
	default:
		p.addf("checkpoint.store", "%q must be %s or %s", fc.Checkpoint.Store, storeDir, storeKafka)
	}
	if rc.embedded && fc.Embedded.Partitions < 1 {
		p.addf("embedded.partitions", "%d must be ≥ 1", fc.Embedded.Partitions)
	}
	if d := fc.Embedded.Demo; rc.embedded && d.Enabled {
		if d.Accounts < 1 {
			p.addf("embedded.demo.accounts", "%d must be ≥ 1", d.Accounts)
		}
		if d.HistoryDays < 1 {
			p.addf("embedded.demo.history_days", "%d must be ≥ 1", d.HistoryDays)
		}
		if d.Speed < 1 {
			p.addf("embedded.demo.speed", "%v must be ≥ 1", d.Speed)
		}
	}
	if !slices.Contains([]string{"debug", "info", "warn", "error"}, fc.Log.Level) {
		p.addf("log.level", "%q must be debug, info, warn or error", fc.Log.Level)
	}
	if !slices.Contains(logFormats, fc.Log.Format) {
		p.addf("log.format", "%q must be %s", fc.Log.Format, strings.Join(logFormats, " or "))
	}
	if rc.embedded {
		sc.Brokers = []string{fc.Embedded.Listen}
	}
	if chc := fc.ClickHouse; len(chc.Addr) > 0 {
		cc := clickhouse.Config{Addr: chc.Addr, Database: chc.Database, Username: chc.Username, Password: chc.Password, BatchRows: chc.BatchRows, HistoryMonths: chc.HistoryMonths}
		cc.FlushInterval = dur("clickhouse.flush_interval", chc.FlushInterval, defaults.ClickHouse.FlushInterval, false)
		if !identRe.MatchString(chc.Database) {
			p.addf("clickhouse.database", "%q must be a plain identifier", chc.Database)
		}
		if chc.BatchRows < 1 {
			p.addf("clickhouse.batch_rows", "%d must be ≥ 1", chc.BatchRows)
		}
		if chc.HistoryMonths < 0 {
			p.addf("clickhouse.history_months", "%d must be ≥ 0", chc.HistoryMonths)
		}
		cc.TLS = chc.TLS.build(p, "clickhouse.tls")
		rc.clickhouse = &cc
		sc.Engine.ScoreRows = true
	}
	sc.Dialer = dialer(p, &fc.Kafka)
	if rc.changelog != nil {
		rc.changelog.Brokers, rc.changelog.Dialer = sc.Brokers, sc.Dialer
	}
	rc.stream = sc
}

// checkpointStore returns where partitions are checkpointed: the Kafka
// topic, reading the directory's checkpoints (if any) for partitions the
// topic has none of, so that moving a group to the topic rebuilds
// nothing; or the directory. log is the daemon's.
func (rc *runConfig) checkpointStore(log *slog.Logger) stream.CheckpointStore {
	dir := stream.NewDirStore(rc.stream.CheckpointDir, rc.stream.Topic, log)
	if rc.changelog == nil {
		return dir
	}
	c := *rc.changelog
	c.Log = log
	if rc.stream.CheckpointDir == "" {
		return changelog.New(c)
	}
	return stream.WithFallback(changelog.New(c), dir, log)
}

// credentials reads the HTTP credentials the config names from the
// environment, and checks the snooze bounds.
func (rc *runConfig) credentials(getenv func(string) string, p *configProblems) {
	h := &rc.file.HTTP
	var err error
	if rc.maxSnooze, err = rules.ParseDuration(h.MaxSnooze); err != nil || rc.maxSnooze <= 0 {
		p.addf("http.max_snooze", "%q is not a positive duration (e.g. 30d)", h.MaxSnooze)
	}
	if h.MaxSnoozes < 1 {
		p.addf("http.max_snoozes", "%d must be ≥ 1", h.MaxSnoozes)
	}
	read := func(key string, a authConfig) web.Credentials {
		var c web.Credentials
		if a.TokenEnv != "" {
			if c.Token = getenv(a.TokenEnv); c.Token == "" {
				p.addf(key+".token_env", "the environment variable %s is not set or empty", a.TokenEnv)
			}
		}
		if a.BasicUser != "" || a.BasicPasswordEnv != "" {
			if a.BasicUser == "" || a.BasicPasswordEnv == "" {
				p.addf(key, "basic_user and basic_password_env go together")
				return c
			}
			c.User = a.BasicUser
			if c.Password = getenv(a.BasicPasswordEnv); c.Password == "" {
				p.addf(key+".basic_password_env", "the environment variable %s is not set or empty", a.BasicPasswordEnv)
			}
		}
		return c
	}
	rc.auth.Read = read("http.read", h.Read)
	rc.auth.Write = read("http.write", h.Write)
}

// dataDir is a directory pulse run writes to, and the key that names it.
type dataDir struct{ key, dir string }

// dataDirs lists the directories pulse run writes to with rc and rs: the
// checkpoints', the transitions file's and (with notifiers) the webhook
// state file's. The defaults are all under pulse-data/ in the working
// directory; pulse run creates each that is missing.
func (rc *runConfig) dataDirs(rs *rules.Ruleset) []dataDir {
	var dirs []dataDir
	if rc.changelog == nil {
		dirs = append(dirs, dataDir{"checkpoint.dir", rc.stream.CheckpointDir})
	}
	if f := rc.file.Output.TransitionsFile; f != "" && f != "-" {
		dirs = append(dirs, dataDir{"output.transitions_file", filepath.Dir(f)})
	}
	if f := rc.file.Webhooks.StateFile; f != "" && len(rs.Notify) > 0 {
		dirs = append(dirs, dataDir{"webhooks.state_file", filepath.Dir(f)})
	}
	return dirs
}

// checkExposure refuses to serve a listen address other hosts can reach
// without credentials, unless http.allow_unauthenticated says so. It runs
// once the listen address is final (--listen overrides the file).
func (rc *runConfig) checkExposure() error {
	if err := rc.exposure(); err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	return nil
}

func (rc *runConfig) exposure() error {
	if rc.auth.Read.Set() || rc.file.HTTP.AllowUnauthenticated || loopback(rc.file.Listen) {
		return nil
	}
	return fmt.Errorf("%s is not a loopback address and http.read sets no credentials: anyone who reaches it reads every account and may snooze them. "+
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

func topicName(p *configProblems, key, name string) {
	if !topicRe.MatchString(name) || name == "." || name == ".." {
		p.addf(key, `%q is not a Kafka topic name: 1 to 249 letters, digits, '.', '_' or '-' (and not "." or "..")`, name)
	}
}

// build returns the TLS client configuration, or nil when TLS is off (or
// its files are bad: problems go to p). key names the setting (kafka.tls,
// clickhouse.tls).
func (c tlsConfig) build(p *configProblems, key string) *tls.Config {
	if !c.Enabled {
		return nil
	}
	tc := &tls.Config{InsecureSkipVerify: c.InsecureSkipVerify, MinVersion: tls.VersionTLS12}
	if c.CAFile != "" {
		pem, err := os.ReadFile(c.CAFile)
		if err != nil {
			p.add(key+".ca_file", err)
		} else if tc.RootCAs = x509.NewCertPool(); !tc.RootCAs.AppendCertsFromPEM(pem) {
			p.addf(key+".ca_file", "%s holds no PEM certificate", c.CAFile)
		}
	}
	if c.CertFile != "" || c.KeyFile != "" {
		cert, err := tls.LoadX509KeyPair(c.CertFile, c.KeyFile)
		if err != nil {
			p.addf(key+".cert_file", "with key_file: %w", err)
		} else {
			tc.Certificates = []tls.Certificate{cert}
		}
	}
	return tc
}

// dialer builds the Kafka dialer with the TLS and SASL settings.
func dialer(p *configProblems, k *kafkaConfig) *kafka.Dialer {
	d := &kafka.Dialer{Timeout: 10 * time.Second, DualStack: true}
	if tc := k.TLS.build(p, "kafka.tls"); tc != nil {
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
			p.add("kafka.sasl", err)
			break
		}
		d.SASLMechanism = m
	default:
		p.addf("kafka.sasl.mechanism", "%q must be plain, scram-sha-256 or scram-sha-512", k.SASL.Mechanism)
	}
	return d
}
