package kafka

import (
	"context"
	"fmt"
	"strings"

	"github.com/pulsehq/pulse/engine"
	"github.com/pulsehq/pulse/rules"
	"github.com/pulsehq/pulse/sinks"
)

// Output runs the sink in the daemon: the config file's kafka_out section
// turns it on with a topic. Without brokers of its own it writes to the
// cluster the events come from (kafka.brokers, or the embedded broker);
// either way it connects with kafka.tls and kafka.sasl. It stores score
// rows when it has a scores topic, and buffers (the engine flushes it
// before every offset commit).
var Output = &sinks.Spec[settings, Config]{
	Name:    "kafka",
	Section: "kafka_out",
	Default: func() settings { return settings{} },
	Config: func(s *settings, env *sinks.Env) (Config, error) {
		c := DefaultConfig()
		c.Brokers, c.ScoresTopic, c.TransitionsTopic = s.Brokers, s.ScoresTopic, s.TransitionsTopic
		if len(c.Brokers) == 0 {
			c.Brokers = env.Kafka.Brokers
		}
		c.Dialer = env.Kafka.Dialer
		if c.ScoresTopic == "" && c.TransitionsTopic == "" && len(s.Brokers) == 0 {
			return c, nil // off
		}
		return c, c.Validate()
	},
	Needs: func(c *Config, _ *rules.Ruleset) sinks.Needs {
		var topics []string
		for _, t := range []string{c.ScoresTopic, c.TransitionsTopic} {
			if t != "" {
				topics = append(topics, t)
			}
		}
		if len(topics) == 0 {
			return sinks.Needs{}
		}
		return sinks.Needs{On: true, ScoreRows: c.ScoresTopic != "", Target: strings.Join(topics, "+")}
	},
	Open: func(_ context.Context, c Config, env *sinks.Env) (engine.Sink, error) {
		c.Log = env.Log
		c.Failed = func(error) { env.Hooks.SinkRetried("kafka") }
		s, err := Open(c)
		if err != nil {
			return nil, fmt.Errorf("kafka_out: %w", err)
		}
		env.Log.Info("kafka output", "brokers", strings.Join(c.Brokers, ","), "scores_topic", c.ScoresTopic, "transitions_topic", c.TransitionsTopic)
		return s, nil
	},
}

// settings are the config file's kafka_out section.
type settings struct {
	Brokers          []string `yaml:"brokers"`           // empty: kafka.brokers (or the embedded broker)
	ScoresTopic      string   `yaml:"scores_topic"`      // "": no score rows
	TransitionsTopic string   `yaml:"transitions_topic"` // "": no transitions
}
