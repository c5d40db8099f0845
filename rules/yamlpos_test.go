package rules

import (
	"errors"
	"strings"
	"testing"
)

// DecodeStrict reports every unknown key and bad value of a document at
// once, each with its line and key path, and Line finds keys (or their
// nearest ancestor) for problems found after decoding.
func TestDecodeStrictReportsEveryProblem(t *testing.T) {
	type inner struct {
		Topic string `yaml:"topic"`
		Size  int    `yaml:"size"`
	}
	var v struct {
		Listen string `yaml:"listen"`
		Kafka  inner  `yaml:"kafka"`
	}
	src := "listen: x\nkafka:\n  topik: a\n  size: big\n  tls: {enabled: true}\nextra: 1\n"
	doc, err := DecodeStrict("c.yaml", []byte(src), &v)
	var got []string
	for _, e := range err.(interface{ Unwrap() []error }).Unwrap() {
		got = append(got, e.Error())
		var re *Error
		if !errors.As(e, &re) {
			t.Errorf("%v is not an *Error", e)
		}
	}
	want := []string{
		"c.yaml:3: kafka.topik: unknown key",
		"c.yaml:4: kafka.size: bad value: cannot unmarshal !!str `big` into int",
		"c.yaml:5: kafka.tls: unknown key",
		"c.yaml:6: extra: unknown key",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if v.Listen != "x" {
		t.Errorf("the good keys were not decoded: %+v", v)
	}
	for key, line := range map[string]int{"listen": 1, "kafka.size": 4, "kafka.group": 2, "engine.retention": 0, "kafka.tls.enabled": 5} {
		if got := Line(doc, key); got != line {
			t.Errorf("Line(%q) = %d, want %d", key, got, line)
		}
	}
	if _, err := DecodeStrict("empty.yaml", nil, &v); err != nil {
		t.Errorf("an empty document: %v", err)
	}
	if _, err := DecodeStrict("bad.yaml", []byte("a: [1\n"), &v); err == nil || !strings.HasPrefix(err.Error(), "bad.yaml:") {
		t.Errorf("a syntax error: %v", err)
	}
}
