// Package config is the vocabulary of Pulse's config file that the
// components share: Duration (Go durations led by whole days, 90d or
// 1d12h), Size (bytes, 16777216 or 16MiB), TLS (a client's certificates,
// read when the connection is configured) and Error, one setting's
// problem named by its key.
//
// Data flows one way. cmd/pulse decodes the file strictly
// (rules.DecodeStrict: unknown keys refused, every problem reported at
// once with its line); a value these types refuse (a duration that does
// not parse) is reported at its key and the setting keeps its default.
// The decoded values go into each component's Config, whose Validate
// reports every problem as an *Error keyed as the file writes the
// setting, relative to the component's section (retention,
// tls.ca_file); Under puts them under the section. Components receive
// typed values, never the document.
//
// It imports only rules (for the day syntax of durations) and the YAML
// decoder.
package config
