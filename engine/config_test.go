package engine

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/pulsehq/pulse/config"
)

// Validate reports every setting out of range at once, each a
// *config.Error keyed as the config file's engine block.
func TestConfigValidateReportsEverySetting(t *testing.T) {
	if err := DefaultConfig().Validate(); err != nil {
		t.Fatalf("the defaults: %v", err)
	}
	c := DefaultConfig()
	c.Retention = 36 * time.Hour
	c.MaxFuture = -time.Second
	c.SweepInterval = 7 * time.Minute
	c.MaxUsers = -1
	err := c.Validate()
	var keys []string
	for _, e := range err.(interface{ Unwrap() []error }).Unwrap() {
		var se *config.Error
		if !errors.As(e, &se) {
			t.Fatalf("%v is not a *config.Error", e)
		}
		keys = append(keys, se.Key)
	}
	if got := strings.Join(keys, " "); got != "retention max_future sweep_interval max_users_per_account" {
		t.Fatalf("keys %q; errors:\n%v", got, err)
	}
	if !strings.Contains(err.Error(), "retention: 1d12h is too short") {
		t.Fatalf("durations are not written as in the config: %v", err)
	}
}
