// Package examplerules embeds the shipped health model, example.yaml, so
// `pulse run` works from any directory (after `go install` too) with no
// rules file of its own.
package examplerules

import _ "embed"

// Name is how errors and logs refer to the embedded file.
const Name = "example.yaml (built in)"

// YAML is deploy/rules/example.yaml as built into the binary.
//
//go:embed example.yaml
var YAML []byte
