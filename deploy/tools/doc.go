// Package tools holds the programs and tests that build and validate
// Pulse's deployment files: the Grafana dashboard generator (its JSON goes
// to deploy/grafana/) and the checks of the container, compose, Kubernetes
// and systemd files under deploy/. It is a separate Go module
// (github.com/pulsehq/pulse/deploy/tools) so that the daemon's module does
// not depend on the Grafana SDK, the Kubernetes API types or a compose
// loader. deploy/ itself stays in the main module: deploy/rules embeds the
// shipped health model into the binary.
package tools
