package main

import (
	"cmp"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/pulsehq/pulse/config"
	"github.com/pulsehq/pulse/engine/stream"
	"github.com/pulsehq/pulse/rules"
	"github.com/pulsehq/pulse/sinks"
	"github.com/pulsehq/pulse/sinks/prom"
	"github.com/pulsehq/pulse/sinks/web"
)

// The config file of `pulse run --config FILE` is read in four steps,
// each a function of its own:
//
//   - decode: the YAML, strictly (unknown keys refused), into fileConfig
//     and every output's settings (decodeConfig), with values typed as
//     they are read (config.Duration, config.Size); then the
//     environment's overrides and the command line's;
//   - components: fileConfig becomes the components' configs (the
//     consumer and its engine, the HTTP server, the metrics), each
//     validated by its own Validate, whose keys are mapped to the file's;
//   - connections: the Kafka dialer and each output's config are built,
//     reading the certificate files they name;
//   - plan (with the rules): which outputs run, in which order, and what
//     they need — score rows from the engine, directories.
//
// Every problem of the first three is collected (configProblems) and
// reported at once, each as FILE:LINE: key: problem.

// fileConfig is the part of the config file the daemon reads itself: the
// consumer, the engine, the embedded broker, the HTTP server and the
// logs. Each output reads its own section (outputs.go), decoded with this
// by decodeConfig. Every key is optional: defaultConfig takes the
// defaults from the components' DefaultConfig.
type fileConfig struct {
	Listen     string           `yaml:"listen"`
	Rules      string           `yaml:"rules"`
	Kafka      kafkaConfig      `yaml:"kafka"`
	Engine     engineConfig     `yaml:"engine"`
	Checkpoint checkpointConfig `yaml:"checkpoint"`
	Embedded   embeddedConfig   `yaml:"embedded"`
	// Output is the daemon's key of the output section, which it shares
	// with the file output: decodeConfig decodes it apart.
	Output outputConfig `yaml:"-"`
	Log    logConfig    `yaml:"log"`
	HTTP   httpConfig   `yaml:"http"`
}

// httpConfig secures the HTTP server (see web.Auth).
type httpConfig struct {
	Read  authConfig `yaml:"read"`  // the API, pages and /metrics
	Write authConfig `yaml:"write"` // snoozes and reload; unset: the read credentials
	// AllowUnauthenticated lets Pulse serve a listen address that is not
	// loopback without credentials.
	AllowUnauthenticated bool            `yaml:"allow_unauthenticated"`
	Pprof                bool            `yaml:"pprof"`
	MaxSnooze            config.Duration `yaml:"max_snooze"`
	MaxSnoozes           int             `yaml:"max_snoozes"`
}

// authConfig names credentials; secrets come from the environment only.
type authConfig struct {
	TokenEnv         string `yaml:"token_env"` // variable holding the bearer token
	BasicUser        string `yaml:"basic_user"`
	BasicPasswordEnv string `yaml:"basic_password_env"` // variable holding the basic-auth password
}

type kafkaConfig struct {
	Brokers         []string        `yaml:"brokers"` // empty: run the embedded broker
	Topic           string          `yaml:"topic"`
	Group           string          `yaml:"group"`
	Start           string          `yaml:"start"` // earliest | latest | committed
	DeadLetterTopic string          `yaml:"dead_letter_topic"`
	FetchMaxBytes   config.Size     `yaml:"fetch_max_bytes"`
	FetchMaxWait    config.Duration `yaml:"fetch_max_wait"`
	SessionTimeout  config.Duration `yaml:"session_timeout"` // how long a silent member keeps its partitions
	TLS             config.TLS      `yaml:"tls"`
	SASL            saslConfig      `yaml:"sasl"`
}

type saslConfig struct {
	Mechanism string `yaml:"mechanism"` // plain | scram-sha-256 | scram-sha-512
	Username  string `yaml:"username"`
	Password  string `yaml:"password"` // prefer PULSE_KAFKA_SASL_PASSWORD
}

type engineConfig struct {
	Retention     config.Duration `yaml:"retention"`
	MaxFuture     config.Duration `yaml:"max_future"`
	EvalInterval  config.Duration `yaml:"eval_interval"`
	SweepInterval config.Duration `yaml:"sweep_interval"`
	IdleAdvance   config.Duration `yaml:"idle_advance"` // 0 turns it off
	ScoreInterval config.Duration `yaml:"score_interval"`
	MaxAccounts   int             `yaml:"max_accounts"` // per partition; 0: the engine's limit
	MaxUsers      int             `yaml:"max_users_per_account"`
	MaxSkew       config.Duration `yaml:"max_skew"`
}

type checkpointConfig struct {
	Store    string          `yaml:"store"` // dir | kafka
	Dir      string          `yaml:"dir"`
	Topic    string          `yaml:"topic"` // store kafka: "" is <kafka.topic>.pulse-checkpoints
	Interval config.Duration `yaml:"interval"`
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

// outputConfig is the daemon's key of the output section.
type outputConfig struct {
	// MetricsInterval is how often the account aggregates of /metrics
	// (accounts per grade, firing alerts, scores) and the lag are
	// recomputed.
	MetricsInterval config.Duration `yaml:"metrics_interval"`
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

// defaultConfig is the config file with every key at its default: the
// components' defaults, and the daemon's own for the embedded broker and
// the logs.
func defaultConfig() fileConfig {
	sc, wc, mc := stream.DefaultConfig(), web.DefaultConfig(), prom.DefaultConfig()
	ec, dur := sc.Engine, func(d time.Duration) config.Duration { return config.Duration(d) }
	return fileConfig{
		Listen: wc.Listen,
		Rules:  "", // the shipped model built into the binary
		Kafka: kafkaConfig{Topic: sc.Topic, Group: sc.Group, Start: sc.Start, FetchMaxBytes: config.Size(sc.FetchMaxBytes),
			FetchMaxWait: dur(sc.FetchMaxWait), SessionTimeout: dur(sc.SessionTimeout)},
		Engine: engineConfig{Retention: dur(ec.Retention), MaxFuture: dur(ec.MaxFuture), EvalInterval: dur(ec.EvalInterval),
			SweepInterval: dur(ec.SweepInterval), IdleAdvance: dur(sc.IdleAdvance), ScoreInterval: dur(ec.ScoreInterval),
			MaxSkew: dur(ec.MaxSkew)}, // max_accounts and max_users_per_account 0: the engine's limits
		Checkpoint: checkpointConfig{Store: sc.CheckpointStore, Dir: sc.CheckpointDir, Topic: sc.CheckpointTopic, Interval: dur(sc.CheckpointInterval)},
		Embedded: embeddedConfig{Listen: "127.0.0.1:9092", Partitions: 8,
			Demo: demoConfig{Enabled: true, Accounts: 300, HistoryDays: 100, Speed: 100000, Seed: 1}},
		Output: outputConfig{MetricsInterval: dur(mc.AggregateInterval)},
		Log:    logConfig{Level: "info", Format: "text"},
		HTTP:   httpConfig{MaxSnooze: dur(wc.MaxSnooze), MaxSnoozes: wc.MaxSnoozes},
	}
}

// runConfig is the checked configuration the wiring uses.
type runConfig struct {
	file     fileConfig // as decoded, with the environment's and the command line's overrides
	embedded bool       // no brokers: the daemon runs its own
	// stream is the consumer's config, its engine's and dialer included.
	// The engine's ScoreRows is the plan's to set.
	stream  stream.Config
	web     web.Config
	metrics prom.Config
	// outputs are every registered output with its settings, in order:
	// checked, not yet planned (plan).
	outputs []sinks.Loaded
}

// loadConfig reads path ("" for the embedded default), applies the
// environment overrides and checks everything but the rules file. It
// reports every problem at once, in a *configError: each a *rules.Error
// that names the file, the line and the key, as a rules file's problems
// are (FILE:LINE: key: problem). checkConfig adds what pulse run checks
// besides.
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
	rc := &runConfig{file: defaultConfig()}
	for _, o := range outputs {
		rc.outputs = append(rc.outputs, o.Load())
	}
	p := &configProblems{file: path}
	if path == "" {
		p.file = "default config"
	} else {
		data, err := os.ReadFile(path)
		if err != nil {
			return nil, nil, &configError{[]error{err}}
		}
		doc, err := decodeConfig(path, data, configParts(&rc.file, rc.outputs))
		p.doc = doc
		if errors.Is(err, rules.ErrSyntax) {
			return nil, nil, &configError{unjoin(err)} // nothing else can be trusted
		}
		// Unknown keys and values of the wrong type are reported with
		// the rest; such a key keeps its default meanwhile.
		p.errs = append(p.errs, unjoin(err)...)
	}
	rc.environ(getenv)
	for _, o := range overrides {
		o(&rc.file)
	}
	rc.embedded = len(rc.file.Kafka.Brokers) == 0
	rc.components(p)
	rc.credentials(getenv, p)
	rc.connections(p)
	return rc, p, nil
}

// environ applies the environment's overrides: the daemon's, then each
// output's.
func (rc *runConfig) environ(getenv func(string) string) {
	fc := &rc.file
	if v := getenv("PULSE_KAFKA_BROKERS"); v != "" {
		fc.Kafka.Brokers = strings.Split(v, ",")
	}
	if v := getenv("PULSE_KAFKA_SASL_USERNAME"); v != "" {
		fc.Kafka.SASL.Username = v
	}
	if v := getenv("PULSE_KAFKA_SASL_PASSWORD"); v != "" {
		fc.Kafka.SASL.Password = v
	}
	for _, o := range rc.outputs {
		o.Environ(getenv)
	}
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
	if err := rc.web.Exposure(); err != nil {
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

// components turns the daemon's keys into the components' configs and
// has each validate its own, naming the problems by the file's keys; then
// it checks the keys the daemon uses itself (the embedded broker, logs).
func (rc *runConfig) components(p *configProblems) {
	fc := &rc.file
	sc := stream.DefaultConfig()
	sc.Brokers, sc.Topic, sc.Group, sc.Start = fc.Kafka.Brokers, fc.Kafka.Topic, fc.Kafka.Group, fc.Kafka.Start
	if rc.embedded {
		sc.Brokers = []string{fc.Embedded.Listen}
	}
	sc.DeadLetterTopic, sc.FetchMaxBytes = fc.Kafka.DeadLetterTopic, int(fc.Kafka.FetchMaxBytes)
	sc.FetchMaxWait, sc.SessionTimeout = time.Duration(fc.Kafka.FetchMaxWait), time.Duration(fc.Kafka.SessionTimeout)
	sc.CheckpointStore, sc.CheckpointTopic = fc.Checkpoint.Store, fc.Checkpoint.Topic
	sc.CheckpointDir, sc.CheckpointInterval = fc.Checkpoint.Dir, time.Duration(fc.Checkpoint.Interval)
	sc.IdleAdvance = time.Duration(fc.Engine.IdleAdvance)
	sc.LagInterval = time.Duration(fc.Output.MetricsInterval)
	e := &fc.Engine
	sc.Engine.Retention, sc.Engine.MaxFuture = time.Duration(e.Retention), time.Duration(e.MaxFuture)
	sc.Engine.EvalInterval, sc.Engine.SweepInterval = time.Duration(e.EvalInterval), time.Duration(e.SweepInterval)
	sc.Engine.ScoreInterval, sc.Engine.MaxSkew = time.Duration(e.ScoreInterval), time.Duration(e.MaxSkew)
	// 0 takes the engine's limits, as the engine does.
	sc.Engine.MaxAccounts, sc.Engine.MaxUsers = cmp.Or(e.MaxAccounts, sc.Engine.MaxAccounts), cmp.Or(e.MaxUsers, sc.Engine.MaxUsers)
	p.addAll(config.Rename(sc.Validate(), streamKey))
	rc.stream = sc

	rc.web = web.Config{Listen: fc.Listen, AllowUnauthenticated: fc.HTTP.AllowUnauthenticated, Pprof: fc.HTTP.Pprof,
		MaxSnooze: time.Duration(fc.HTTP.MaxSnooze), MaxSnoozes: fc.HTTP.MaxSnoozes}
	p.addAll(rc.web.Validate())
	rc.metrics = prom.Config{AggregateInterval: time.Duration(fc.Output.MetricsInterval)}
	p.addAll(config.Under("output", rc.metrics.Validate()))

	if rc.embedded {
		if _, err := embeddedPort(fc.Embedded.Listen); err != nil {
			p.add("embedded.listen", err)
		}
		if fc.Embedded.Partitions < 1 {
			p.addf("embedded.partitions", "%d must be ≥ 1", fc.Embedded.Partitions)
		}
		if d := fc.Embedded.Demo; d.Enabled {
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
	}
	if !slices.Contains([]string{"debug", "info", "warn", "error"}, fc.Log.Level) {
		p.addf("log.level", "%q must be debug, info, warn or error", fc.Log.Level)
	}
	if !slices.Contains(logFormats, fc.Log.Format) {
		p.addf("log.format", "%q must be %s", fc.Log.Format, strings.Join(logFormats, " or "))
	}
}

// streamKey is the config file's key of a stream.Config setting (as its
// Validate names them): the kafka section's, but for those kept
// elsewhere.
func streamKey(key string) string {
	switch key {
	case "checkpoint_store":
		return "checkpoint.store"
	case "checkpoint_topic":
		return "checkpoint.topic"
	case "checkpoint_dir":
		return "checkpoint.dir"
	case "checkpoint_interval":
		return "checkpoint.interval"
	case "idle_advance":
		return "engine.idle_advance"
	case "lag_interval":
		return "output.metrics_interval"
	}
	if strings.HasPrefix(key, "engine.") {
		return key
	}
	return "kafka." + key
}

// embeddedPort is the port of embedded.listen.
func embeddedPort(listen string) (int, error) {
	_, port, err := net.SplitHostPort(listen)
	if err != nil {
		return 0, err
	}
	n, err := strconv.Atoi(port)
	if err != nil || n < 0 || n > math.MaxUint16 {
		return 0, fmt.Errorf("%q is not a port number", port)
	}
	return n, nil
}

// connections builds what connects to the outside — the Kafka dialer and
// each output's config — reading the certificate files they name.
// Nothing is dialled: pulse config check runs it too.
func (rc *runConfig) connections(p *configProblems) {
	k := rc.file.Kafka
	dc := stream.DefaultDialerConfig()
	dc.TLS = k.TLS
	dc.SASL = stream.SASL{Mechanism: k.SASL.Mechanism, Username: k.SASL.Username, Password: k.SASL.Password}
	d, err := dc.Dialer()
	p.addAll(config.Under("kafka", err))
	rc.stream.Dialer = d
	env := &sinks.Env{Kafka: sinks.Kafka{Brokers: rc.stream.Brokers, Dialer: d}}
	for _, o := range rc.outputs {
		p.addAll(config.Under(o.Section(), o.Check(env)))
	}
}

// credentials reads the HTTP credentials the config names from the
// environment.
func (rc *runConfig) credentials(getenv func(string) string, p *configProblems) {
	h := &rc.file.HTTP
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
	rc.web.Auth.Read = read("http.read", h.Read)
	rc.web.Auth.Write = read("http.write", h.Write)
}

// checkExposure refuses to serve a listen address other hosts can reach
// without credentials, unless http.allow_unauthenticated says so. It runs
// once the listen address is final (--listen overrides the file).
func (rc *runConfig) checkExposure() error {
	if err := rc.web.Exposure(); err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	return nil
}

// loopback reports whether a listen address accepts only this host.
func loopback(listen string) bool { return web.Loopback(listen) }

// configProblems collects the problems of a config, each naming its key
// and, where the file has the key (or the block it belongs in), its line.
type configProblems struct {
	file string
	doc  *yaml.Node // nil without a file
	errs []error
}

func (p *configProblems) add(key string, err error) {
	e := &rules.Error{File: p.file, Line: rules.Line(p.doc, key), Key: key, Err: err}
	// Two components may check one key (output.metrics_interval is the
	// lag's interval and the aggregates'): say each problem once.
	if slices.ContainsFunc(p.errs, func(o error) bool { return o.Error() == e.Error() }) {
		return
	}
	p.errs = append(p.errs, e)
}

func (p *configProblems) addf(key, format string, args ...any) {
	p.add(key, fmt.Errorf(format, args...))
}

// addAll adds every problem of err, each under the key of its
// *config.Error.
func (p *configProblems) addAll(err error) {
	for _, e := range config.Problems(err) {
		var ce *config.Error
		if errors.As(e, &ce) {
			p.add(ce.Key, ce.Err)
		} else {
			p.errs = append(p.errs, e)
		}
	}
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
