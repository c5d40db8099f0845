package main

import (
	"fmt"
	"io"
	"runtime"
	"runtime/debug"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
)

// version and revision may be set by a packager where the Go toolchain
// cannot read the git history — a source tarball, a container build
// without .git, a linked git worktree (which Go does not recognise):
//
//	go build -ldflags "-X main.version=v1.2.3 -X main.revision=$(git rev-parse HEAD)" ./cmd/pulse
//
// (a revision ending in +dirty marks uncommitted changes). Otherwise they
// come from the module's build info: the module version for `go install
// …@v1.2.3`, a pseudo-version in a git checkout, or (devel); the commit
// and its time as `go build` stamps them in a git checkout.
var version, revision string

// build describes the running binary.
type build struct {
	Version   string // v1.2.3, a pseudo-version, or (devel)
	Revision  string // the VCS commit; "" when not stamped
	Time      string // the commit's time, RFC 3339; "" when not stamped
	Modified  bool   // built from a tree with uncommitted changes
	GoVersion string
}

// readBuild reads the build info the Go toolchain stamped into the binary.
func readBuild() build {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		bi = nil
	}
	return buildFrom(bi, version, revision)
}

// buildFrom reads what bi holds (nil: nothing); the overrides, if set,
// replace the version and the revision.
func buildFrom(bi *debug.BuildInfo, versionOverride, revisionOverride string) build {
	b := build{Version: "(devel)", GoVersion: runtime.Version()}
	if bi != nil {
		if v := bi.Main.Version; v != "" {
			b.Version = v
		}
		if bi.GoVersion != "" {
			b.GoVersion = bi.GoVersion
		}
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				b.Revision = s.Value
			case "vcs.time":
				b.Time = s.Value
			case "vcs.modified":
				b.Modified = s.Value == "true"
			}
		}
	}
	if versionOverride != "" {
		b.Version = versionOverride
	}
	if revisionOverride != "" {
		b.Revision, b.Modified = strings.CutSuffix(revisionOverride, "+dirty")
		b.Time = ""
	}
	return b
}

// commit is the revision as Pulse shows it: the commit, +dirty when the
// tree had uncommitted changes, or unknown.
func (b build) commit() string {
	if b.Revision == "" {
		return "unknown"
	}
	if b.Modified {
		return b.Revision + "+dirty"
	}
	return b.Revision
}

func (b build) String() string {
	commit := b.commit()
	switch {
	case b.Revision == "":
		commit += " (built without VCS information: not in a git checkout, or with -buildvcs=false)"
	case b.Time != "":
		commit += " (" + b.Time + ")"
	}
	return fmt.Sprintf("pulse %s\ncommit: %s\ngo: %s %s/%s\n", b.Version, commit, b.GoVersion, runtime.GOOS, runtime.GOARCH)
}

// versionCmd is `pulse version` (and `pulse --version`).
func versionCmd(args []string, _ io.Reader, stdout, stderr io.Writer) error {
	fs := newFlagSet("version")
	if err := parseFlags(fs, args, stdout, stderr); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		fs.Usage()
		return errUsage
	}
	fmt.Fprint(stdout, readBuild())
	return nil
}

// buildInfoGauge is pulse_build_info: 1, labelled with what the binary is.
func buildInfoGauge(b build) prometheus.Collector {
	g := prometheus.NewGauge(prometheus.GaugeOpts{
		Name:        "pulse_build_info",
		Help:        "Always 1; the labels say which build runs: version, VCS revision (+dirty for uncommitted changes, unknown when not stamped) and Go version.",
		ConstLabels: prometheus.Labels{"version": b.Version, "revision": b.commit(), "goversion": b.GoVersion},
	})
	g.Set(1)
	return g
}
