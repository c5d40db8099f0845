package config

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/pulsehq/pulse/rules"
)

// Durations take days; sizes take binary units; what either refuses is
// reported at its key, and the setting keeps what it held.
func TestDurationsAndSizes(t *testing.T) {
	var v struct {
		A Duration `yaml:"a"`
		B Duration `yaml:"b"`
		C Duration `yaml:"c"`
		D Size     `yaml:"d"`
		E Size     `yaml:"e"`
		F Size     `yaml:"f"`
		G Duration `yaml:"g"`
	}
	v.C, v.F = Duration(time.Minute), 7
	_, err := rules.DecodeStrict("c.yaml", []byte("a: 1d12h\nb: 0\nc: -1s\nd: 16MiB\ne: 1048576\nf: lots\ng: soon\n"), &v)
	want := []string{
		`c.yaml:3: c: "-1s" is not a positive duration (e.g. 30s, 5m, 90d, 1d12h)`,
		`c.yaml:6: f: "lots" is not a size in bytes (e.g. 16777216 or 16MiB)`,
		`c.yaml:7: g: "soon" is not a positive duration (e.g. 30s, 5m, 90d, 1d12h)`,
	}
	if err == nil || err.Error() != strings.Join(want, "\n") {
		t.Fatalf("got\n%v\nwant\n%s", err, strings.Join(want, "\n"))
	}
	if v.A != Duration(36*time.Hour) || v.B != 0 || v.C != Duration(time.Minute) || v.D != 16<<20 || v.E != 1<<20 || v.F != 7 {
		t.Fatalf("decoded %+v", v)
	}
	if s := v.A.String(); s != "1d12h" {
		t.Errorf("String() = %q", s)
	}
	if s := v.D.String(); s != "16MiB" {
		t.Errorf("String() = %q", s)
	}
}

// Under and Rename key every problem, whatever its shape.
func TestUnderKeysEveryProblem(t *testing.T) {
	err := errors.Join(Errorf("ca_file", "missing"), errors.Join(Errorf("", "whole"), errors.New("plain")))
	got := Under("kafka.tls", err).Error()
	want := "kafka.tls.ca_file: missing\nkafka.tls: whole\nkafka.tls: plain"
	if got != want {
		t.Fatalf("got\n%s\nwant\n%s", got, want)
	}
	if Under("x", nil) != nil || len(Problems(nil)) != 0 {
		t.Error("nil is no problem")
	}
}

// A TLS block that is off builds nothing; files that are missing or hold
// no certificate are named by their keys.
func TestTLSClient(t *testing.T) {
	if tc, err := (TLS{CAFile: "/nonexistent"}).Client(); tc != nil || err != nil {
		t.Fatalf("off: %v, %v", tc, err)
	}
	tc, err := TLS{Enabled: true}.Client()
	if err != nil || tc.MinVersion != 0x0303 || tc.RootCAs != nil {
		t.Fatalf("on, system roots: %+v, %v", tc, err)
	}
	_, err = TLS{Enabled: true, CAFile: "/nonexistent.pem", CertFile: "/nonexistent.crt"}.Client()
	var keys []string
	for _, e := range Problems(err) {
		var ce *Error
		if !errors.As(e, &ce) {
			t.Fatalf("%v is not an *Error", e)
		}
		keys = append(keys, ce.Key)
	}
	if strings.Join(keys, " ") != "ca_file cert_file" {
		t.Fatalf("keys %v: %v", keys, err)
	}
}
