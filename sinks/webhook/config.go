package webhook

import (
	"cmp"
	"errors"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/pulsehq/pulse/config"
	"github.com/pulsehq/pulse/rules"
)

// DefaultConfig returns the sink's defaults, as the daemon runs it: no
// notifiers (the rules file's notify block gives them), the state file
// under pulse-data/, and transitions older than 6 hours not notified.
func DefaultConfig() Config {
	return Config{
		QueueSize:    10_000,
		GroupWait:    10 * time.Second,
		StateFile:    "pulse-data/webhooks.state",
		MaxAttempts:  8,
		MaxRetryTime: time.Hour,
		RetryWait:    250 * time.Millisecond,
		MaxAge:       6 * time.Hour,
	}
}

// WithDefaults returns c with its zero settings set from DefaultConfig —
// except StateFile, whose zero keeps the state in memory only, and
// MaxAge, whose zero notifies transitions of any age — and the client,
// log, clock and counter set when nil.
func (c Config) WithDefaults() Config {
	d := DefaultConfig()
	c.QueueSize = cmp.Or(c.QueueSize, d.QueueSize)
	c.GroupWait = cmp.Or(c.GroupWait, d.GroupWait)
	c.MaxAttempts = cmp.Or(c.MaxAttempts, d.MaxAttempts)
	c.MaxRetryTime = cmp.Or(c.MaxRetryTime, d.MaxRetryTime)
	c.RetryWait = cmp.Or(c.RetryWait, d.RetryWait)
	if c.Client == nil {
		c.Client = &http.Client{Timeout: 10 * time.Second}
	}
	if c.Log == nil {
		c.Log = slog.Default()
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Counted == nil {
		c.Counted = func(string, string) {}
	}
	return c
}

// Validate reports every problem of c at once, joined, each a
// *config.Error keyed as the config file's webhooks section writes it.
// It checks a complete config: DefaultConfig with changes.
func (c Config) Validate() error {
	var errs []error
	bad := func(key, format string, args ...any) { errs = append(errs, config.Errorf(key, format, args...)) }
	if c.QueueSize < 1 {
		bad("queue_size", "%d must be ≥ 1", c.QueueSize)
	}
	if u := c.PublicURL; u != "" && !strings.HasPrefix(u, "http://") && !strings.HasPrefix(u, "https://") {
		bad("public_url", "%q must start with http:// or https://", u)
	}
	if c.GroupWait < 0 {
		bad("group_wait", "%s must not be negative", rules.FormatDuration(c.GroupWait))
	}
	if c.MaxRetryTime <= 0 {
		bad("max_retry_time", "%s must be positive", rules.FormatDuration(c.MaxRetryTime))
	}
	if c.MaxAge < 0 {
		bad("max_age", "%s must not be negative", rules.FormatDuration(c.MaxAge))
	}
	return errors.Join(errs...)
}
