package stream

import (
	"errors"
	"fmt"
	"regexp"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/sasl/plain"
	"github.com/segmentio/kafka-go/sasl/scram"

	"github.com/pulsehq/pulse/config"
	"github.com/pulsehq/pulse/engine"
	"github.com/pulsehq/pulse/rules"
)

// DefaultConfig returns the consumer's defaults, the engine's included.
// It names no brokers.
func DefaultConfig() Config {
	return Config{
		Topic:              "events",
		Group:              "pulse",
		Start:              StartEarliest,
		CheckpointStore:    CheckpointsInDir,
		CheckpointDir:      "pulse-data/checkpoints",
		CheckpointInterval: 30 * time.Second,
		IdleAdvance:        time.Minute,
		FetchMaxBytes:      16 << 20,
		FetchMaxWait:       250 * time.Millisecond,
		SessionTimeout:     10 * time.Second,
		LagInterval:        5 * time.Second,
		Engine:             engine.DefaultConfig(),
	}
}

// Bounds of SessionTimeout. The consumer heartbeats every second, and a
// member must be able to miss two heartbeats; a broker with Kafka's
// defaults refuses sessions outside group.min/max.session.timeout.ms
// (6 s–30 min).
const (
	MinSessionTimeout = 3 * time.Second
	MaxSessionTimeout = 30 * time.Minute
)

// MinFetchMaxBytes is the least FetchMaxBytes: one fetch must hold the
// largest event.
const MinFetchMaxBytes = 1 << 20

// Validate reports every problem of c at once, joined, each a
// *config.Error keyed by the setting in snake case (topic, fetch_max_wait,
// checkpoint_store, checkpoint_topic, checkpoint_dir, idle_advance,
// lag_interval, …; the engine's under
// engine.). It checks a complete config: DefaultConfig with changes, or
// WithDefaults'. The dialer is checked where it is built (DialerConfig).
func (c Config) Validate() error {
	var errs []error
	bad := func(key, format string, args ...any) { errs = append(errs, config.Errorf(key, format, args...)) }
	if len(c.Brokers) == 0 {
		bad("brokers", "at least one host:port is required")
	}
	if c.Topic == "" {
		bad("topic", "required")
	} else if err := ValidTopic(c.Topic); err != nil {
		bad("topic", "%w", err)
	}
	if c.DeadLetterTopic != "" {
		if err := ValidTopic(c.DeadLetterTopic); err != nil {
			bad("dead_letter_topic", "%w", err)
		}
	}
	if c.Group == "" {
		bad("group", "required")
	}
	if c.Start != StartEarliest && c.Start != StartLatest && c.Start != StartCommitted {
		bad("start", "%q must be earliest, latest or committed", c.Start)
	}
	if c.FetchMaxBytes < MinFetchMaxBytes {
		bad("fetch_max_bytes", "%d is below 1 MiB, the largest event", c.FetchMaxBytes)
	}
	positive := func(key string, d time.Duration) {
		if d <= 0 {
			bad(key, "%s must be positive", rules.FormatDuration(d))
		}
	}
	positive("fetch_max_wait", c.FetchMaxWait)
	if c.SessionTimeout < MinSessionTimeout || c.SessionTimeout > MaxSessionTimeout {
		bad("session_timeout", "%v must be between %v (three of the 1 s heartbeats) and %v (a default broker's group.max.session.timeout.ms)",
			c.SessionTimeout, MinSessionTimeout, MaxSessionTimeout)
	}
	switch {
	case c.Checkpoints != nil: // a store of the caller's
	case c.CheckpointStore == CheckpointsInDir:
		if c.CheckpointDir == "" {
			bad("checkpoint_dir", "required")
		}
	case c.CheckpointStore == CheckpointsInKafka:
		switch topic := c.CheckpointTopic; {
		case topic != "":
			if err := ValidTopic(topic); err != nil {
				bad("checkpoint_topic", "%w", err)
			}
		case ValidTopic(c.Topic) == nil: // else topic says what is wrong
			if topic = DefaultCheckpointTopic(c.Topic); ValidTopic(topic) != nil {
				bad("checkpoint_topic", "the default, %s, is longer than Kafka's 249 characters: name a topic", topic)
			}
		}
		if t := c.CheckpointTopic; t != "" && (t == c.Topic || t == c.DeadLetterTopic) {
			bad("checkpoint_topic", "%q is the events or the dead-letter topic; checkpoints need a topic of their own", t)
		}
	default:
		bad("checkpoint_store", "%q must be %s or %s", c.CheckpointStore, CheckpointsInDir, CheckpointsInKafka)
	}
	positive("checkpoint_interval", c.CheckpointInterval)
	if c.IdleAdvance < 0 {
		bad("idle_advance", "%s must not be negative", rules.FormatDuration(c.IdleAdvance))
	}
	positive("lag_interval", c.LagInterval)
	errs = append(errs, config.Under("engine", c.Engine.Validate()))
	return errors.Join(errs...)
}

// topicRe is Kafka's own rule for topic names.
var topicRe = regexp.MustCompile(`^[a-zA-Z0-9._-]{1,249}$`)

// ValidTopic reports whether name is a Kafka topic name. Pulse also names
// its checkpoint files after the topic, so a name like ../x would put
// them outside the checkpoint directory.
func ValidTopic(name string) error {
	if !topicRe.MatchString(name) || name == "." || name == ".." {
		return fmt.Errorf(`%q is not a Kafka topic name: 1 to 249 letters, digits, '.', '_' or '-' (and not "." or "..")`, name)
	}
	return nil
}

// DialerConfig says how to connect to the brokers: TLS and SASL.
type DialerConfig struct {
	Timeout time.Duration // of a connection
	TLS     config.TLS
	SASL    SASL
}

// SASL authenticates to the brokers.
type SASL struct {
	Mechanism string // "" (none), plain, scram-sha-256 or scram-sha-512
	Username  string
	Password  string
}

// SASL mechanisms.
const (
	SASLPlain       = "plain"
	SASLScramSHA256 = "scram-sha-256"
	SASLScramSHA512 = "scram-sha-512"
)

// DefaultDialerConfig returns the dialer's defaults: plain TCP, no SASL.
func DefaultDialerConfig() DialerConfig { return DialerConfig{Timeout: 10 * time.Second} }

// Validate reports every problem of the settings that needs no file,
// joined, each a *config.Error keyed as the kafka section writes it
// (sasl.mechanism).
func (c DialerConfig) Validate() error {
	switch c.SASL.Mechanism {
	case "", SASLPlain, SASLScramSHA256, SASLScramSHA512:
		return nil
	}
	return config.Errorf("sasl.mechanism", "%q must be plain, scram-sha-256 or scram-sha-512", c.SASL.Mechanism)
}

// Dialer validates the settings and builds the dialer. It reads the TLS
// files, so it runs once, when the consumer is configured; every problem
// is returned at once, as Validate's are (tls.ca_file, sasl).
func (c DialerConfig) Dialer() (*kafka.Dialer, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	d := c.TCP()
	var errs []error
	tc, err := c.TLS.Client()
	if err != nil {
		errs = append(errs, config.Under("tls", err))
	}
	d.TLS = tc
	switch c.SASL.Mechanism {
	case SASLPlain:
		d.SASLMechanism = plain.Mechanism{Username: c.SASL.Username, Password: c.SASL.Password}
	case SASLScramSHA256, SASLScramSHA512:
		algo := scram.SHA256
		if c.SASL.Mechanism == SASLScramSHA512 {
			algo = scram.SHA512
		}
		m, err := scram.Mechanism(algo, c.SASL.Username, c.SASL.Password)
		if err != nil {
			errs = append(errs, &config.Error{Key: "sasl", Err: err})
		}
		d.SASLMechanism = m
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return d, nil
}

// TCP returns the dialer without its TLS and SASL settings: plain TCP.
func (c DialerConfig) TCP() *kafka.Dialer {
	return &kafka.Dialer{Timeout: c.Timeout, DualStack: true}
}
