// Package deploy holds the tools that build and validate Pulse's deployment
// files (Grafana dashboards, container, compose, Kubernetes and systemd
// files). It is a separate Go module so that the daemon's own module does
// not depend on the Grafana SDK, the Kubernetes API types or a compose
// loader.
package deploy
