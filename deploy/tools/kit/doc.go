// Package kit checks Pulse's deployment kit under deploy/: the container
// image (deploy/Dockerfile), the compose stack (deploy/compose.yaml and
// deploy/compose/), the Kubernetes base (deploy/kubernetes/) and the
// systemd unit (deploy/systemd/). It has only tests.
//
// No container runtime or cluster runs where the tests run, so the checks
// are static: each file is parsed by the library its own tool uses
// (BuildKit's Dockerfile parser, the Compose Specification's loader, the
// Kubernetes API types decoded strictly, go-systemd's unit parser), every
// path a file copies or mounts must exist in the repository, and the files
// are checked against each other and against the Pulse config each one
// runs (ports, user ids, mounted paths, writable directories). Where a
// tool is installed — kubectl, promtool, amtool, systemd-analyze — the
// tests run it on the files too, and say in the test log when one is not.
//
// The Pulse configs themselves (deploy/pulse.yaml, deploy/compose/pulse.yaml,
// deploy/kubernetes/pulse.yaml) are loaded and validated by the daemon's
// own config loader in cmd/pulse (TestShippedConfigsAreValid,
// TestExampleConfigHasEveryKey): this module cannot import the daemon's
// main package.
package kit
