package web

import (
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/pulsehq/pulse/config"
	"github.com/pulsehq/pulse/rules"
)

// Config is the HTTP server's settings: the config file's listen and http
// keys, with the credentials the daemon read from the environment.
type Config struct {
	Listen string
	Auth   Auth
	// AllowUnauthenticated lets a listen address that is not loopback be
	// served without read credentials (see Exposure).
	AllowUnauthenticated bool
	Pprof                bool // Go's profiler under /debug/pprof/, to readers
	MaxSnooze            time.Duration
	MaxSnoozes           int
}

// DefaultConfig returns the server's defaults: loopback only, no
// credentials, no profiler.
func DefaultConfig() Config {
	return Config{Listen: "127.0.0.1:8080", MaxSnooze: 90 * 24 * time.Hour, MaxSnoozes: 10_000}
}

// Validate reports every problem of c at once, joined, each a
// *config.Error keyed as the config file writes it (listen,
// http.max_snooze). Whether the address may be served open is Exposure's
// to say, once the listen address is final.
func (c Config) Validate() error {
	var errs []error
	bad := func(key, format string, args ...any) { errs = append(errs, config.Errorf(key, format, args...)) }
	if c.Listen == "" {
		bad("listen", "an address is required, e.g. 127.0.0.1:8080")
	}
	if c.MaxSnooze <= 0 {
		bad("http.max_snooze", "%s must be positive", rules.FormatDuration(c.MaxSnooze))
	}
	if c.MaxSnoozes < 1 {
		bad("http.max_snoozes", "%d must be ≥ 1", c.MaxSnoozes)
	}
	return errors.Join(errs...)
}

// ErrExposed is a listen address other hosts reach, served without
// credentials.
var ErrExposed = errors.New("is not a loopback address and http.read sets no credentials")

// Exposure refuses to serve a listen address other hosts can reach
// without read credentials, unless AllowUnauthenticated says so.
func (c Config) Exposure() error {
	if c.Auth.Read.Set() || c.AllowUnauthenticated || Loopback(c.Listen) {
		return nil
	}
	return fmt.Errorf("%s %w: anyone who reaches it reads every account and may snooze them. "+
		"Set http.read (and http.write) token_env or basic_user, or set http.allow_unauthenticated: true to serve it open", c.Listen, ErrExposed)
}

// Loopback reports whether a listen address accepts only this host.
func Loopback(listen string) bool {
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
