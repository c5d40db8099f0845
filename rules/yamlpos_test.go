package rules

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
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

// refusing only takes even numbers, as a config value type would.
type refusing int

func (r *refusing) UnmarshalYAML(n *yaml.Node) error {
	v, err := strconv.Atoi(n.Value)
	if err != nil || v%2 != 0 {
		return RefuseValue(n, fmt.Errorf("%q is not even", n.Value))
	}
	*r = refusing(v)
	return nil
}

// A value an UnmarshalYAML method refuses is reported at its own key, in
// block and flow mappings alike, with the other problems; the field keeps
// what it held.
func TestRefusedValuesNameTheirKey(t *testing.T) {
	var v struct {
		A refusing `yaml:"a"`
		B struct {
			C refusing `yaml:"c"`
			D refusing `yaml:"d"`
		} `yaml:"b"`
		E int `yaml:"e"`
	}
	v.B.D = 4
	_, err := DecodeStrict("c.yaml", []byte("a: 3\nb: {c: 2, d: 5}\ne: x\n"), &v)
	want := "c.yaml:1: a: \"3\" is not even\nc.yaml:2: b.d: \"5\" is not even\nc.yaml:3: e: bad value: cannot unmarshal !!str `x` into int"
	if err == nil || err.Error() != want {
		t.Fatalf("got\n%v\nwant\n%s", err, want)
	}
	if !errors.Is(err, ErrBadValue) {
		t.Error("a refused value is not ErrBadValue")
	}
	if v.B.C != 2 || v.B.D != 4 || v.A != 0 {
		t.Errorf("decoded %+v: want the good value set and the refused ones kept", v)
	}
}
