package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pulsehq/pulse/sinks/clickhouse/chtest"
)

// The embedded broker listens on the port embedded.listen names, or does
// not start: a port that is not a number is not taken for any port.
func TestEmbeddedBrokerPort(t *testing.T) {
	for _, listen := range []string{"127.0.0.1:ninety", "127.0.0.1:70000", "127.0.0.1:-1", "127.0.0.1:9092x"} {
		rc, err := loadConfig("", noEnv)
		if err != nil {
			t.Fatal(err)
		}
		rc.file.Embedded.Listen = listen
		c, err := startEmbeddedBroker(rc)
		if err == nil {
			c.Close()
			t.Errorf("%s: the broker started", listen)
			continue
		}
		_, port, _ := strings.Cut(listen, ":")
		if want := fmt.Sprintf("embedded.listen: %q is not a port number", port); !strings.HasPrefix(err.Error(), want) {
			t.Errorf("%s: %v, want %s…", listen, err, want)
		}
	}
	rc, err := loadConfig("", noEnv)
	if err != nil {
		t.Fatal(err)
	}
	port := freePort(t)
	rc.file.Embedded.Listen = fmt.Sprintf("127.0.0.1:%d", port)
	c, err := startEmbeddedBroker(rc)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if addrs := c.ListenAddrs(); len(addrs) != 1 || addrs[0] != rc.file.Embedded.Listen {
		t.Fatalf("the broker listens on %v, want %s", addrs, rc.file.Embedded.Listen)
	}
}

// The embedded broker starts empty, so pulse run removes the checkpoints
// of an earlier run before anything starts; one it cannot remove stops
// the start, naming it.
func TestStaleEmbeddedCheckpointThatCannotBeRemoved(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "ckpt[1]") // not a glob pattern either
	stuck := filepath.Join(dir, "0.ckpt", "x")   // a directory, not empty
	if err := os.MkdirAll(stuck, 0o755); err != nil {
		t.Fatal(err)
	}
	gone := filepath.Join(dir, "1.ckpt")
	if err := os.WriteFile(gone, []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := writeConfig(t, t.TempDir(), fmt.Sprintf("listen: 127.0.0.1:%d\nembedded: {listen: 127.0.0.1:%d, partitions: 2}\ncheckpoint: {dir: %q}\noutput: {transitions_file: \"\"}\n",
		freePort(t), freePort(t), dir))
	done := make(chan struct{})
	var code int
	var errs string
	go func() {
		defer close(done)
		code, _, errs = pulse(t, "", "run", "--config", cfg)
	}()
	select {
	case <-done:
	case <-time.After(time.Minute):
		t.Fatal("pulse run started with a checkpoint of an earlier run in place")
	}
	if want := "pulse run: checkpoint.dir: removing the checkpoints of an earlier run: "; code != 2 || !strings.HasPrefix(errs, want) || !strings.Contains(errs, "0.ckpt") {
		t.Fatalf("exit %d, %s\nwant 2, %s…", code, errs, want)
	}
	if _, err := os.Stat(gone); !os.IsNotExist(err) {
		t.Fatalf("%s, which could be removed, is still there: %v", gone, err)
	}
}

// A ClickHouse that refuses Pulse stops the start, and the error says
// "clickhouse:" once.
func TestClickHouseRefusalIsNamedOnce(t *testing.T) {
	ch := chtest.Start(t)
	cfg := writeConfig(t, t.TempDir(), fmt.Sprintf(`listen: 127.0.0.1:%d
embedded: {listen: 127.0.0.1:%d, partitions: 1}
checkpoint: {dir: %s}
output: {transitions_file: ""}
clickhouse: {addr: [%s], username: nobody}
`, freePort(t), freePort(t), filepath.Join(t.TempDir(), "ckpt"), ch.Addr()))
	code, _, errs := pulse(t, "", "run", "--config", cfg)
	_, line, _ := strings.Cut(errs, "pulse run: ")
	if code != 2 || !strings.HasPrefix(line, "clickhouse: ") || strings.Count(line, "clickhouse:") != 1 {
		t.Fatalf("exit %d, %s\nwant 2, pulse run: clickhouse: … (once)", code, errs)
	}
}
