package kafka

import (
	"cmp"
	"errors"
	"log/slog"
	"time"

	kafkago "github.com/segmentio/kafka-go"

	"github.com/pulsehq/pulse/config"
	"github.com/pulsehq/pulse/engine/stream"
)

// Config configures the sink. DefaultConfig has the defaults; Open takes
// zero settings as their defaults (WithDefaults).
type Config struct {
	Brokers []string        // bootstrap brokers, host:port
	Dialer  *kafkago.Dialer // TLS and SASL; nil: plain TCP
	// ScoresTopic receives the score rows; "" writes none.
	ScoresTopic string
	// TransitionsTopic receives the alert transitions; "" writes none.
	TransitionsTopic string
	// BufferMessages bounds the messages written and not yet acknowledged:
	// past it, Write waits (backpressure).
	BufferMessages int
	// RetryWait is the first wait after a failed produce, doubling up to
	// MaxRetryWait.
	RetryWait    time.Duration
	MaxRetryWait time.Duration
	Log          *slog.Logger
	// Failed, if set, is told of every failed produce; each is retried.
	// It is called from the sink's own goroutine and must not block.
	Failed func(err error)
}

// DefaultConfig returns the sink's defaults. It names no brokers and no
// topics.
func DefaultConfig() Config {
	return Config{
		BufferMessages: 100_000,
		RetryWait:      250 * time.Millisecond,
		MaxRetryWait:   30 * time.Second,
	}
}

// WithDefaults returns c with its zero settings set from DefaultConfig,
// and the dialer, log and hook set when nil.
func (c Config) WithDefaults() Config {
	d := DefaultConfig()
	c.BufferMessages = cmp.Or(c.BufferMessages, d.BufferMessages)
	c.RetryWait = cmp.Or(c.RetryWait, d.RetryWait)
	c.MaxRetryWait = cmp.Or(c.MaxRetryWait, d.MaxRetryWait)
	if c.Dialer == nil {
		c.Dialer = stream.DefaultDialerConfig().TCP()
	}
	if c.Log == nil {
		c.Log = slog.Default()
	}
	if c.Failed == nil {
		c.Failed = func(error) {}
	}
	return c
}

// Validate reports every problem of c at once, joined, each a
// *config.Error keyed as the config file's kafka_out section writes it.
func (c Config) Validate() error {
	var errs []error
	bad := func(key, format string, args ...any) { errs = append(errs, config.Errorf(key, format, args...)) }
	if len(c.Brokers) == 0 {
		bad("brokers", "at least one host:port is required")
	}
	if c.ScoresTopic == "" && c.TransitionsTopic == "" {
		bad("", "scores_topic or transitions_topic is required")
	}
	for _, t := range []struct{ key, topic string }{{"scores_topic", c.ScoresTopic}, {"transitions_topic", c.TransitionsTopic}} {
		if t.topic != "" {
			if err := stream.ValidTopic(t.topic); err != nil {
				bad(t.key, "%w", err)
			}
		}
	}
	if c.ScoresTopic != "" && c.ScoresTopic == c.TransitionsTopic {
		bad("transitions_topic", "%q is scores_topic too: give each its own topic", c.TransitionsTopic)
	}
	if c.BufferMessages < 1 {
		bad("buffer_messages", "%d must be ≥ 1", c.BufferMessages)
	}
	return errors.Join(errs...)
}
