package webhook

import (
	"context"
	"fmt"
	"path/filepath"
	"time"

	"github.com/pulsehq/pulse/config"
	"github.com/pulsehq/pulse/engine"
	"github.com/pulsehq/pulse/rules"
	"github.com/pulsehq/pulse/sinks"
)

// Output runs the sink in the daemon: on when the rules file has a notify
// block, with the config file's webhooks section. It buffers (its outbox
// is fsynced before every offset commit), follows rules reloads
// (SetRules) and keeps the snoozes of the HTTP API.
var Output = &sinks.Spec[settings, Config]{
	Name:    "webhook",
	Section: "webhooks",
	Default: func() settings {
		d := DefaultConfig()
		return settings{PublicURL: d.PublicURL, GroupWait: config.Duration(d.GroupWait), QueueSize: d.QueueSize,
			StateFile: d.StateFile, MaxRetryTime: config.Duration(d.MaxRetryTime), MaxAge: config.Duration(d.MaxAge)}
	},
	Config: func(s *settings, _ *sinks.Env) (Config, error) {
		c := DefaultConfig()
		c.PublicURL, c.GroupWait, c.QueueSize, c.StateFile = s.PublicURL, time.Duration(s.GroupWait), s.QueueSize, s.StateFile
		c.MaxRetryTime, c.MaxAge = time.Duration(s.MaxRetryTime), time.Duration(s.MaxAge)
		return c, c.Validate()
	},
	Needs: func(c *Config, rs *rules.Ruleset) sinks.Needs {
		if rs == nil || len(rs.Notify) == 0 {
			return sinks.Needs{}
		}
		n := sinks.Needs{On: true, Target: fmt.Sprintf("%d notifiers", len(rs.Notify))}
		if c.StateFile != "" {
			n.Dirs = []sinks.Dir{{Key: "state_file", Path: filepath.Dir(c.StateFile)}}
		}
		return n
	},
	Open: func(_ context.Context, c Config, env *sinks.Env) (engine.Sink, error) {
		c.Notifiers, c.Log, c.Counted = env.Rules.Notify, env.Log, env.Hooks.Notified
		s, err := New(c)
		if err != nil {
			return nil, err
		}
		env.Log.Info("webhooks", "notifiers", len(c.Notifiers))
		return s, nil
	},
}

// settings are the config file's webhooks section.
type settings struct {
	PublicURL string          `yaml:"public_url"` // messages link to PUBLIC_URL/accounts/{id}
	GroupWait config.Duration `yaml:"group_wait"`
	QueueSize int             `yaml:"queue_size"`
	StateFile string          `yaml:"state_file"` // outbox, deliveries and snoozes, kept across restarts
	// MaxRetryTime bounds how long one notification is retried, waits a
	// receiver asks for (429, Retry-After) included.
	MaxRetryTime config.Duration `yaml:"max_retry_time"`
	// MaxAge: a transition whose event time is further behind the wall
	// clock (a catch-up, a replay of history) is not notified; 0: any age.
	MaxAge config.Duration `yaml:"max_age"`
}

// SetRules implements sinks.Reloader: the notify block of a reloaded
// rules file takes effect (SetNotifiers).
func (s *Sink) SetRules(rs *rules.Ruleset) { s.SetNotifiers(rs.Notify) }
