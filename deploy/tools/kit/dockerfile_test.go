package kit

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/buildkit/frontend/dockerfile/linter"
	"github.com/moby/buildkit/frontend/dockerfile/parser"
	"github.com/moby/patternmatcher"
	"github.com/moby/patternmatcher/ignorefile"
)

// image is what the other deployment files must agree with about the
// image deploy/Dockerfile builds.
type image struct {
	uid        int      // USER of the final stage
	port       int      // its one EXPOSE
	entrypoint string   // the binary
	cmd        []string // default arguments
	workdir    string   // where state goes by default
}

// parseDockerfile parses deploy/Dockerfile as BuildKit does, failing the
// test on any parse error or lint warning.
func parseDockerfile(t *testing.T) ([]instructions.Stage, []instructions.ArgCommand, []byte) {
	t.Helper()
	file := deployPath(t, "Dockerfile")
	src, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	res, err := parser.Parse(bytes.NewReader(src))
	if err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	for _, w := range res.Warnings {
		t.Errorf("%s: %s", file, w.Short)
	}
	lint := linter.New(&linter.Config{Warn: func(rule, _, _, msg string, loc []parser.Range) {
		line := 0
		if len(loc) > 0 {
			line = loc[0].Start.Line
		}
		t.Errorf("%s:%d: lint %s: %s", file, line, rule, msg)
	}})
	stages, metaArgs, err := instructions.Parse(res.AST, lint)
	if err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	return stages, metaArgs, src
}

// dockerImage checks deploy/Dockerfile and returns what it builds.
func dockerImage(t *testing.T) image {
	t.Helper()
	stages, metaArgs, src := parseDockerfile(t)
	if len(stages) < 2 {
		t.Fatalf("deploy/Dockerfile has %d stage(s); want a build stage and a runtime stage", len(stages))
	}
	names := map[string]bool{}
	for _, s := range stages[:len(stages)-1] {
		names[s.Name] = true
	}
	final := stages[len(stages)-1]

	// The build stage: Go of the module's version, a static build of
	// ./cmd/pulse.
	build := stages[0]
	goVersion := argDefault(metaArgs, "GO_VERSION")
	if base := strings.ReplaceAll(build.BaseName, "${GO_VERSION}", goVersion); !strings.HasPrefix(base, "golang:"+moduleGoVersion(t)) {
		t.Errorf("build stage FROM %s (GO_VERSION=%s): want golang:%s, the go.mod's version", build.BaseName, goVersion, moduleGoVersion(t))
	}
	built := false
	for _, cmd := range build.Commands {
		run, ok := cmd.(*instructions.RunCommand)
		if !ok {
			continue
		}
		line := strings.Join(run.CmdLine, " ")
		if strings.Contains(line, "go build") {
			built = true
			if !regexp.MustCompile(`(^|\s)CGO_ENABLED=0\s+go build\b`).MatchString(line) {
				t.Errorf("the go build does not run with CGO_ENABLED=0 (a static binary): %s", line)
			}
			if !regexp.MustCompile(`go build .*\./cmd/pulse(\s|$)`).MatchString(line) {
				t.Errorf("the go build does not build ./cmd/pulse: %s", line)
			}
		}
	}
	if !built {
		t.Error("the build stage runs no go build")
	}

	// The runtime stage: a minimal base, a non-root numeric user, the
	// binary copied from the build, one port, no shell-form commands.
	if !slices.ContainsFunc([]string{"gcr.io/distroless/", "scratch", "alpine"}, func(p string) bool { return strings.HasPrefix(final.BaseName, p) }) {
		t.Errorf("runtime stage FROM %s: want distroless, scratch or alpine", final.BaseName)
	}
	var img image
	var binary string
	img.uid = -1
	for _, cmd := range final.Commands {
		switch c := cmd.(type) {
		case *instructions.UserCommand:
			uid, _, _ := strings.Cut(c.User, ":")
			n, err := strconv.Atoi(uid)
			if err != nil {
				t.Errorf("USER %s: use a numeric uid, so Kubernetes' runAsNonRoot can verify it", c.User)
			}
			img.uid = n
		case *instructions.ExposeCommand:
			for _, p := range c.Ports {
				n, err := strconv.Atoi(strings.TrimSuffix(p, "/tcp"))
				if err != nil || img.port != 0 {
					t.Errorf("EXPOSE %s: want one TCP port", p)
				}
				img.port = n
			}
		case *instructions.EntrypointCommand:
			if c.PrependShell || len(c.CmdLine) != 1 {
				t.Errorf("ENTRYPOINT %v: want the exec form naming the binary", c.CmdLine)
			} else {
				img.entrypoint = c.CmdLine[0]
			}
		case *instructions.CmdCommand:
			if c.PrependShell {
				t.Errorf("CMD %v: the image has no shell; use the exec form", c.CmdLine)
			}
			img.cmd = c.CmdLine
		case *instructions.WorkdirCommand:
			img.workdir = c.Path
		case *instructions.HealthCheckCommand:
			t.Error("HEALTHCHECK in a distroless image: it has no shell or HTTP client to run one")
		case *instructions.CopyCommand:
			if c.From != "" && slices.Contains(c.SourcePaths, "/out/pulse") {
				binary = c.DestPath
			}
		}
	}
	if img.uid <= 0 {
		t.Errorf("the runtime stage's USER is %d: want a non-root uid", img.uid)
	}
	if img.port == 0 {
		t.Error("the runtime stage EXPOSEs no port")
	}
	if binary == "" || img.entrypoint != binary {
		t.Errorf("ENTRYPOINT %q is not the binary copied from the build (%q)", img.entrypoint, binary)
	}
	if len(img.cmd) < 3 || img.cmd[0] != "run" || img.cmd[1] != "--config" {
		t.Errorf("CMD %v: want run --config FILE", img.cmd)
	}

	// Every stage: COPY --from names an earlier stage.
	for _, s := range stages {
		for _, cmd := range s.Commands {
			if c, ok := cmd.(*instructions.CopyCommand); ok && c.From != "" && !names[c.From] {
				t.Errorf("COPY --from=%s: no such stage", c.From)
			}
		}
	}

	// The probes are documented where the HEALTHCHECK would be.
	for _, probe := range []string{"/healthz", "/readyz"} {
		if !bytes.Contains(src, []byte(probe)) {
			t.Errorf("deploy/Dockerfile does not document the %s probe", probe)
		}
	}
	return img
}

func TestDockerfile(t *testing.T) {
	img := dockerImage(t)
	if img.port != 8080 {
		t.Errorf("EXPOSE %d: Pulse's port in every shipped config is 8080", img.port)
	}
	if img.workdir == "" || !path.IsAbs(img.workdir) {
		t.Errorf("WORKDIR %q: want the state directory, absolute", img.workdir)
	}
}

// TestDockerfileCopiesTheSources checks that the build stage copies, and
// the build context keeps, every file `go build ./cmd/pulse` reads: the
// module files and each Go and embedded file of the module's packages the
// binary is built from.
func TestDockerfileCopiesTheSources(t *testing.T) {
	root := repoRoot(t)
	stages, _, _ := parseDockerfile(t)
	var copied []string
	for _, cmd := range stages[0].Commands {
		c, ok := cmd.(*instructions.CopyCommand)
		if !ok || c.From != "" {
			continue
		}
		for _, src := range c.SourcePaths {
			if _, err := os.Stat(filepath.Join(root, src)); err != nil {
				t.Errorf("COPY %s: %v", src, err)
			}
			copied = append(copied, path.Clean(src))
		}
	}

	ignore, err := os.Open(deployPath(t, "Dockerfile.dockerignore"))
	if err != nil {
		t.Fatal(err)
	}
	defer ignore.Close()
	patterns, err := ignorefile.ReadAll(ignore)
	if err != nil {
		t.Fatal(err)
	}
	pm, err := patternmatcher.New(patterns)
	if err != nil {
		t.Fatal(err)
	}

	need := []string{"go.mod", "go.sum"}
	for _, p := range goListDeps(t, root) {
		dir, err := filepath.Rel(root, p.Dir)
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range slices.Concat(p.GoFiles, p.EmbedFiles) {
			need = append(need, filepath.ToSlash(filepath.Join(dir, f)))
		}
	}
	if len(need) < 10 {
		t.Fatalf("go list found only %v", need)
	}
	for _, f := range need {
		if !slices.ContainsFunc(copied, func(src string) bool { return under(f, src) }) {
			t.Errorf("%s: the build needs it and no COPY of the build stage copies it", f)
		}
		if excluded, err := pm.MatchesOrParentMatches(f); err != nil || excluded {
			t.Errorf("%s: the build needs it and deploy/Dockerfile.dockerignore leaves it out of the context (%v)", f, err)
		}
	}
}

// goPackage is the part of `go list -json` the test reads.
type goPackage struct {
	Dir        string
	GoFiles    []string
	EmbedFiles []string
	Module     *struct{ Main bool }
}

// goListDeps lists the packages of the main module that ./cmd/pulse is
// built from.
func goListDeps(t *testing.T, root string) []goPackage {
	t.Helper()
	cmd := exec.Command("go", "list", "-deps", "-json=Dir,GoFiles,EmbedFiles,Module", "./cmd/pulse")
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "GOWORK=off", "CGO_ENABLED=0")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list -deps ./cmd/pulse: %v", err)
	}
	var pkgs []goPackage
	dec := json.NewDecoder(bytes.NewReader(out))
	for dec.More() {
		var p goPackage
		if err := dec.Decode(&p); err != nil {
			t.Fatal(err)
		}
		if p.Module != nil && p.Module.Main {
			pkgs = append(pkgs, p)
		}
	}
	return pkgs
}

// moduleGoVersion is the major.minor of the daemon module's go directive.
func moduleGoVersion(t *testing.T) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(repoRoot(t), "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^go (\d+\.\d+)`).FindSubmatch(data)
	if m == nil {
		t.Fatal("go.mod has no go directive")
	}
	return string(m[1])
}

func argDefault(args []instructions.ArgCommand, name string) string {
	for _, a := range args {
		for _, kv := range a.Args {
			if kv.Key == name && kv.Value != nil {
				return *kv.Value
			}
		}
	}
	return ""
}
