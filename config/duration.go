package config

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/pulsehq/pulse/rules"
)

// Duration is a time.Duration as the config file writes it: a Go
// duration optionally led by whole days (90s, 5m, 1h30m, 90d, 1d12h,
// rules.ParseDuration). A value that does not parse, or is negative, is
// refused where it is decoded, as `"soon" is not a positive duration`;
// whether zero is allowed is the component's to say, in Validate.
type Duration time.Duration

// UnmarshalYAML implements yaml.Unmarshaler.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	v, err := rules.ParseDuration(n.Value)
	if n.Kind != yaml.ScalarNode || err != nil || v < 0 {
		return rules.RefuseValue(n, fmt.Errorf("%q is not a positive duration (e.g. 30s, 5m, 90d, 1d12h)", n.Value))
	}
	*d = Duration(v)
	return nil
}

// MarshalYAML implements yaml.Marshaler: the duration as UnmarshalYAML
// reads it.
func (d Duration) MarshalYAML() (any, error) { return d.String(), nil }

// String writes the duration with days, as the config file does: 90d,
// 1d12h, 250ms.
func (d Duration) String() string { return rules.FormatDuration(time.Duration(d)) }

// Size is a number of bytes as the config file writes it: an integer, or
// one with a binary unit, KiB, MiB or GiB (16777216 or 16MiB). A value
// that does not parse, or is negative, is refused where it is decoded.
type Size int64

var sizeUnits = []struct {
	suffix string
	bytes  int64
}{{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}, {"B", 1}}

// UnmarshalYAML implements yaml.Unmarshaler.
func (s *Size) UnmarshalYAML(n *yaml.Node) error {
	v, ok := parseSize(n.Value)
	if n.Kind != yaml.ScalarNode || !ok {
		return rules.RefuseValue(n, fmt.Errorf("%q is not a size in bytes (e.g. 16777216 or 16MiB)", n.Value))
	}
	*s = Size(v)
	return nil
}

func parseSize(text string) (int64, bool) {
	num, unit := text, int64(1)
	for _, u := range sizeUnits {
		if rest, ok := strings.CutSuffix(text, u.suffix); ok {
			num, unit = strings.TrimSpace(rest), u.bytes
			break
		}
	}
	v, err := strconv.ParseInt(num, 10, 64)
	if err != nil || v < 0 || v > (1<<62)/unit {
		return 0, false
	}
	return v * unit, true
}

// MarshalYAML implements yaml.Marshaler: a plain number of bytes.
func (s Size) MarshalYAML() (any, error) { return int64(s), nil }

// String writes the size in the largest binary unit that divides it
// (16MiB), or in bytes.
func (s Size) String() string {
	for _, u := range sizeUnits {
		if s != 0 && int64(s)%u.bytes == 0 {
			return strconv.FormatInt(int64(s)/u.bytes, 10) + u.suffix
		}
	}
	return strconv.FormatInt(int64(s), 10) + "B"
}
