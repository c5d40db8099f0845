package rules

import (
	"errors"
	"fmt"
)

// Sentinel errors wrapped by Error, for callers that branch on the cause.
var (
	ErrSyntax          = errors.New("not valid YAML")
	ErrUnknownKey      = errors.New("unknown key")
	ErrUnknownMetric   = errors.New("unknown metric")
	ErrDuplicateName   = errors.New("duplicate name")
	ErrBadExpression   = errors.New("bad expression")
	ErrBadValue        = errors.New("bad value")
	ErrMissing         = errors.New("missing required key")
	ErrUndefinedEnvVar = errors.New("undefined environment variable")
	ErrTooLarge        = errors.New("too large")
)

// Error is one problem in a rules file (or another YAML file of Pulse, read
// with DecodeStrict). It names the file, the line (0 when unknown) and the
// key path, such as alerts[2].when, and reads FILE:LINE: KEY: problem.
type Error struct {
	File string
	Line int
	Key  string
	Err  error
}

func (e *Error) Error() string {
	loc := e.File
	if e.Line > 0 {
		loc = fmt.Sprintf("%s:%d", e.File, e.Line)
	}
	if e.Key == "" {
		return fmt.Sprintf("%s: %v", loc, e.Err)
	}
	return fmt.Sprintf("%s: %s: %v", loc, e.Key, e.Err)
}

func (e *Error) Unwrap() error { return e.Err }
