package main

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestHTTPSecuritySettings(t *testing.T) {
	path := filepath.Join(t.TempDir(), "pulse.yaml")
	os.WriteFile(path, []byte(`
listen: 0.0.0.0:9999
http:
  read: {token_env: READ_TOKEN}
  write: {basic_user: ops, basic_password_env: OPS_PASSWORD}
  pprof: true
  max_snooze: 7d
  max_snoozes: 50
`), 0o644)
	env := map[string]string{"READ_TOKEN": "r", "OPS_PASSWORD": "pw"}
	rc, err := loadConfig(path, func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	if a := rc.web.Auth; a.Read.Token != "r" || a.Write.User != "ops" || a.Write.Password != "pw" ||
		!rc.web.Pprof || rc.web.MaxSnooze != 7*24*time.Hour || rc.web.MaxSnoozes != 50 {
		t.Fatalf("http config %+v", rc.web)
	}
	if err := rc.checkExposure(); err != nil {
		t.Fatalf("a non-loopback listen with read credentials: %v", err)
	}

	for src, want := range map[string]string{
		"http: {read: {token_env: NOT_SET}}":       "http.read.token_env: the environment variable NOT_SET is not set",
		"http: {write: {basic_user: ops}}":         "http.write: basic_user and basic_password_env go together",
		"http: {max_snooze: forever}":              `http.max_snooze: "forever"`,
		"http: {max_snoozes: 0}":                   "http.max_snoozes: 0 must be ≥ 1",
		"http: {allow_unauthenticated: sometimes}": "sometimes",
	} {
		os.WriteFile(path, []byte(src), 0o644)
		if _, err := loadConfig(path, noEnv); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want %q", src, err, want)
		}
	}

	for listen, open := range map[string]bool{"127.0.0.1:8080": true, "[::1]:8080": true, "localhost:8080": true,
		"0.0.0.0:8080": false, ":8080": false, "10.1.2.3:8080": false, "pulse.internal:8080": false} {
		rc, err := loadConfig("", noEnv)
		if err != nil {
			t.Fatal(err)
		}
		rc.web.Listen = listen
		err = rc.checkExposure()
		if open != (err == nil) {
			t.Errorf("%s without credentials: %v", listen, err)
		}
		if err != nil && !strings.Contains(err.Error(), "http.allow_unauthenticated") {
			t.Errorf("%s: the refusal does not name http.allow_unauthenticated: %v", listen, err)
		}
		rc.web.AllowUnauthenticated = true
		if err := rc.checkExposure(); err != nil {
			t.Errorf("%s with allow_unauthenticated: %v", listen, err)
		}
	}
}

// TestDaemonRefusesAnOpenNonLoopbackListen: without credentials, `pulse
// run` on an address other hosts reach stops before listening, naming the
// key that would let it.
func TestDaemonRefusesAnOpenNonLoopbackListen(t *testing.T) {
	dir := t.TempDir()
	port, kport := freePort(t), freePort(t)
	cfg := writeConfig(t, dir, fmt.Sprintf(`
rules: %s
embedded: {listen: 127.0.0.1:%d, demo: {enabled: false}}
checkpoint: {dir: %s}
output: {transitions_file: ""}
`, exampleRules, kport, filepath.Join(dir, "ckpt")))
	d := startPulse(t, "run", "--config", cfg, "--listen", fmt.Sprintf("0.0.0.0:%d", port))
	select {
	case <-d.done:
	case <-time.After(20 * time.Second):
		t.Fatalf("pulse is still running on an open non-loopback address; log:\n%s", d.output())
	}
	if code := d.cmd.ProcessState.ExitCode(); code == 0 || !strings.Contains(d.output(), "http.allow_unauthenticated") {
		t.Fatalf("exit code %d, output:\n%s\nwant a failure naming http.allow_unauthenticated", code, d.output())
	}
	if c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port)); err == nil {
		c.Close()
		t.Fatal("something listens on the refused port")
	}
}

// TestDaemonWithCredentials: the real daemon, on a non-loopback address
// with read and write tokens from the environment: reads and changes need
// their token, a cross-site text/plain POST is refused even with it, and
// pprof is off.
func TestDaemonWithCredentials(t *testing.T) {
	t.Setenv("PULSE_TEST_READ_TOKEN", "read-secret")
	t.Setenv("PULSE_TEST_WRITE_TOKEN", "write-secret")
	dir := t.TempDir()
	port, kport := freePort(t), freePort(t)
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	cfg := writeConfig(t, dir, fmt.Sprintf(`
listen: 0.0.0.0:%d
rules: %s
embedded: {listen: 127.0.0.1:%d, demo: {enabled: false}}
checkpoint: {dir: %s}
output: {transitions_file: ""}
http:
  read: {token_env: PULSE_TEST_READ_TOKEN}
  write: {token_env: PULSE_TEST_WRITE_TOKEN}
`, port, exampleRules, kport, filepath.Join(dir, "ckpt")))
	d := startPulse(t, "run", "--config", cfg)
	waitUntil(t, "readiness", 30*time.Second, func() bool {
		if d.exited() {
			t.Fatalf("pulse exited:\n%s", d.output())
		}
		code, _ := httpGet(base + "/readyz")
		return code == 200
	})
	call := func(method, path, ctype, token string, headers ...string) int {
		req, _ := http.NewRequest(method, base+path, nil)
		if ctype != "" {
			req.Header.Set("Content-Type", ctype)
		}
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		for i := 0; i+1 < len(headers); i += 2 {
			req.Header.Set(headers[i], headers[i+1])
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	for _, c := range []struct {
		method, path, ctype, token string
		headers                    []string
		want                       int
	}{
		{"GET", "/healthz", "", "", nil, 200},
		{"GET", "/api/accounts", "", "", nil, 401},
		{"GET", "/metrics", "", "", nil, 401},
		{"GET", "/", "", "wrong", nil, 401},
		{"GET", "/api/accounts", "", "read-secret", nil, 200},
		{"GET", "/metrics", "", "read-secret", nil, 200},
		{"GET", "/api/alerts", "", "write-secret", nil, 200},
		{"GET", "/debug/pprof/", "", "read-secret", nil, 404},
		{"POST", "/-/reload", "application/json", "", nil, 401},
		{"POST", "/-/reload", "application/json", "read-secret", nil, 401},
		{"POST", "/-/reload", "text/plain", "write-secret", []string{"Origin", "https://evil.example"}, 403},
		{"POST", "/-/reload", "text/plain", "write-secret", nil, 415},
		{"POST", "/-/reload", "application/json", "write-secret", nil, 200},
	} {
		if got := call(c.method, c.path, c.ctype, c.token, c.headers...); got != c.want {
			t.Errorf("%s %s (%s, token %q, %v): %d, want %d", c.method, c.path, c.ctype, c.token, c.headers, got, c.want)
		}
	}
	if code := d.stop(t); code != 0 {
		t.Fatalf("exit code %d; log:\n%s", code, d.output())
	}
}
