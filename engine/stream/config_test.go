package stream

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/pulsehq/pulse/config"
)

// Validate reports every problem at once, each keyed by its setting; the
// defaults with brokers are valid, and WithDefaults keeps what names the
// stream and a zero IdleAdvance.
func TestConfigValidateReportsEverySetting(t *testing.T) {
	c := DefaultConfig()
	c.Brokers = []string{"k:9092"}
	if err := c.Validate(); err != nil {
		t.Fatalf("the defaults: %v", err)
	}
	c.Topic = "../x"
	c.Start = "middle"
	c.SessionTimeout = time.Millisecond
	c.FetchMaxBytes = 1000
	c.CheckpointInterval = 0
	c.Engine.Retention = time.Hour
	var keys []string
	for _, e := range config.Problems(c.Validate()) {
		var ce *config.Error
		if !errors.As(e, &ce) {
			t.Fatalf("%v is not a *config.Error", e)
		}
		keys = append(keys, ce.Key)
	}
	if got := strings.Join(keys, " "); got != "topic start fetch_max_bytes session_timeout checkpoint_interval engine.retention" {
		t.Fatalf("keys %q", got)
	}
	w := Config{Topic: "t"}.WithDefaults()
	if w.Topic != "t" || w.Group != "" || w.CheckpointDir != "" || w.IdleAdvance != 0 || w.FetchMaxBytes != DefaultConfig().FetchMaxBytes || w.Dialer == nil {
		t.Fatalf("WithDefaults: %+v", w)
	}
}

// The dialer names the setting of each problem.
func TestDialerConfig(t *testing.T) {
	if _, err := (DialerConfig{SASL: SASL{Mechanism: "kerberos"}}).Dialer(); err == nil || !strings.HasPrefix(err.Error(), `sasl.mechanism: "kerberos"`) {
		t.Errorf("unknown mechanism: %v", err)
	}
	if _, err := (DialerConfig{TLS: config.TLS{Enabled: true, CAFile: "/nonexistent.pem"}}).Dialer(); err == nil || !strings.HasPrefix(err.Error(), "tls.ca_file: ") {
		t.Errorf("missing CA file: %v", err)
	}
	d, err := DialerConfig{Timeout: time.Second, SASL: SASL{Mechanism: SASLScramSHA512, Username: "u", Password: "p"}}.Dialer()
	if err != nil || d.SASLMechanism == nil || d.TLS != nil || d.Timeout != time.Second {
		t.Fatalf("scram: %+v, %v", d, err)
	}
}
