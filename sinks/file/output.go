package file

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"

	"github.com/pulsehq/pulse/config"
	"github.com/pulsehq/pulse/engine"
	"github.com/pulsehq/pulse/rules"
	"github.com/pulsehq/pulse/sinks"
)

// Config is the sink's settings.
type Config struct {
	// Path is the file transitions are appended to; "-" is standard
	// output, "" none.
	Path string
}

// DefaultConfig returns the daemon's default: a file under pulse-data/.
func DefaultConfig() Config { return Config{Path: "pulse-data/transitions.jsonl"} }

// Validate reports a path that names a directory, as a *config.Error
// keyed as the config file's output section writes it.
func (c Config) Validate() error {
	if strings.HasSuffix(c.Path, "/") {
		return config.Errorf("transitions_file", "%q names a directory, not a file", c.Path)
	}
	return nil
}

// Output runs the sink in the daemon: the config file's
// output.transitions_file turns it on. It buffers (Flush fsyncs before
// every offset commit).
var Output = &sinks.Spec[settings, Config]{
	Name:    "file",
	Section: "output",
	Default: func() settings { return settings{TransitionsFile: DefaultConfig().Path} },
	Config: func(s *settings, _ *sinks.Env) (Config, error) {
		c := Config{Path: s.TransitionsFile}
		return c, c.Validate()
	},
	Needs: func(c *Config, _ *rules.Ruleset) sinks.Needs {
		switch c.Path {
		case "":
			return sinks.Needs{}
		case "-":
			return sinks.Needs{On: true, Target: "stdout"}
		}
		return sinks.Needs{On: true, Target: c.Path, Dirs: []sinks.Dir{{Key: "transitions_file", Path: filepath.Dir(c.Path)}}}
	},
	Open: func(_ context.Context, c Config, _ *sinks.Env) (engine.Sink, error) {
		s, err := Open(c.Path)
		if err != nil {
			return nil, fmt.Errorf("output.transitions_file: %w", err)
		}
		return s, nil
	},
}

// settings are the file's key of the config file's output section.
type settings struct {
	TransitionsFile string `yaml:"transitions_file"` // "" none, "-" stdout
}
