package config

import (
	"errors"
	"fmt"
)

// Error is the problem of one setting. Key names the setting as the
// config file writes it, relative to the section the component reads
// (retention, tls.ca_file; "" for the section as a whole). It reads
// "key: problem".
type Error struct {
	Key string
	Err error
}

func (e *Error) Error() string {
	if e.Key == "" {
		return e.Err.Error()
	}
	return e.Key + ": " + e.Err.Error()
}

func (e *Error) Unwrap() error { return e.Err }

// Errorf returns an *Error for key; the format wraps with %w as
// fmt.Errorf does.
func Errorf(key, format string, args ...any) error {
	return &Error{Key: key, Err: fmt.Errorf(format, args...)}
}

// Problems returns the problems err holds: the errors it joins (nested
// joins flattened), or err itself; none for nil.
func Problems(err error) []error {
	if err == nil {
		return nil
	}
	j, ok := err.(interface{ Unwrap() []error })
	if !ok {
		return []error{err}
	}
	var out []error
	for _, e := range j.Unwrap() {
		out = append(out, Problems(e)...)
	}
	return out
}

// Under puts every problem of err under section: an *Error keyed k is
// keyed section.k, any other error becomes section's own. It returns the
// problems joined, each an *Error; nil for nil.
func Under(section string, err error) error {
	return Rename(err, func(key string) string {
		if key == "" {
			return section
		}
		if section == "" {
			return key
		}
		return section + "." + key
	})
}

// Rename keys every problem of err with rename(its key), for a component
// whose settings are spread over several sections of the file; an error
// that is not an *Error has the key "". It returns the problems joined,
// each an *Error; nil for nil.
func Rename(err error, rename func(key string) string) error {
	var out []error
	for _, e := range Problems(err) {
		var ce *Error
		if errors.As(e, &ce) {
			out = append(out, &Error{Key: rename(ce.Key), Err: ce.Err})
		} else {
			out = append(out, &Error{Key: rename(""), Err: e})
		}
	}
	return errors.Join(out...)
}
