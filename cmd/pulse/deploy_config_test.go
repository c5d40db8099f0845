package main

import (
	"os"
	"reflect"
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/pulsehq/pulse/sinks/clickhouse"
)

// The configs shipped under deploy/, each loaded through the daemon's own
// loader and validator. They run in a container or under systemd, so their
// rules path names where the file is mounted (or installed); rulesFrom is
// the repository file that goes there.
var shippedConfigs = []struct {
	path, rules, rulesFrom string
}{
	{"../../deploy/pulse.yaml", "/etc/pulse/rules.yaml", "../../deploy/rules/example.yaml"},
	{"../../deploy/compose/pulse.yaml", "/etc/pulse/rules.yaml", "../../deploy/rules/example.yaml"},
	{"../../deploy/kubernetes/pulse.yaml", "/etc/pulse/rules.yaml", "../../deploy/kubernetes/rules.yaml"},
}

// shippedEnv holds the secrets the shipped configs name by variable, as
// systemd, compose or Kubernetes would set them.
var shippedEnv = map[string]string{
	"PULSE_READ_TOKEN":          "read-token",
	"PULSE_READ_PASSWORD":       "read-password",
	"PULSE_WRITE_TOKEN":         "write-token",
	"PULSE_KAFKA_SASL_PASSWORD": "sasl-password",
	"PULSE_CLICKHOUSE_PASSWORD": "clickhouse-password",
}

func TestShippedConfigsAreValid(t *testing.T) {
	for _, c := range shippedConfigs {
		t.Run(strings.TrimPrefix(c.path, "../../"), func(t *testing.T) {
			rc, err := loadConfig(c.path, func(k string) string { return shippedEnv[k] })
			if err != nil {
				t.Fatal(err)
			}
			// Production configs: real brokers, reachable from outside
			// the host or pod, and allowed to be.
			if rc.embedded {
				t.Error("kafka.brokers is empty: the config would start the embedded demo broker")
			}
			if loopback(rc.web.Listen) {
				t.Errorf("listen: %s is loopback: nothing outside the host, container or pod reaches it", rc.web.Listen)
			}
			if err := rc.checkExposure(); err != nil {
				t.Error(err)
			}
			if rc.file.Rules != c.rules {
				t.Fatalf("rules: %q, want %q (where the deployment puts the rules file)", rc.file.Rules, c.rules)
			}
			if _, err := loadRules(c.rulesFrom); err != nil {
				t.Errorf("the rules file mounted at %s: %v", c.rules, err)
			}
			if checkedConfig(t, rc, "clickhouse").(clickhouse.Config).Addr == nil {
				t.Error("clickhouse.addr is empty: the deployment's dashboards read ClickHouse")
			}
		})
	}
}

// TestExampleConfigHasEveryKey keeps deploy/pulse.yaml complete: every key
// of the config file appears in it, with a comment, so a new key cannot be
// added without documenting it there.
func TestExampleConfigHasEveryKey(t *testing.T) {
	const path = "../../deploy/pulse.yaml"
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		t.Fatal(err)
	}
	present := map[string]bool{}
	var walk func(n *yaml.Node, prefix string)
	walk = func(n *yaml.Node, prefix string) {
		if n.Kind == yaml.DocumentNode {
			walk(n.Content[0], prefix)
			return
		}
		if n.Kind != yaml.MappingNode {
			return
		}
		if n.Style&yaml.FlowStyle != 0 {
			t.Errorf("%s:%d: %s is a flow mapping: write it as a block, one commented key a line", path, n.Line, strings.TrimSuffix(prefix, "."))
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			key := prefix + k.Value
			present[key] = true
			if k.HeadComment == "" && k.LineComment == "" && v.LineComment == "" {
				t.Errorf("%s:%d: %s has no comment", path, k.Line, key)
			}
			walk(v, key+".")
		}
	}
	walk(&doc, "")

	schema, _ := configSchema(configParts(new(fileConfig), loadOutputs()))
	known := configKeys(schema, "")
	for _, k := range known {
		if !present[k] {
			t.Errorf("%s: key %s is missing", path, k)
		}
	}
	for k := range present {
		if !slices.Contains(known, k) {
			t.Errorf("%s: key %s is not a config key", path, k)
		}
	}
}

// configKeys lists the dotted YAML keys of a config struct, leaves and
// sections alike (kafka, kafka.tls, kafka.tls.enabled, …).
func configKeys(typ reflect.Type, prefix string) []string {
	var keys []string
	for f := range typ.Fields() {
		name, opts, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if opts == "inline" {
			keys = append(keys, configKeys(f.Type, prefix)...)
			continue
		}
		if name == "" || name == "-" {
			continue
		}
		keys = append(keys, prefix+name)
		if f.Type.Kind() == reflect.Struct {
			keys = append(keys, configKeys(f.Type, prefix+name+".")...)
		}
	}
	return keys
}
