// The shipped health model is its own tiny module, with no dependencies:
// the daemon embeds it (go:embed cannot reach into another module), and
// the deploy tooling module around it must not become a dependency of the
// daemon. The daemon's go.mod requires it through a replace directive.
module github.com/pulsehq/pulse/deploy/rules

go 1.26.0
