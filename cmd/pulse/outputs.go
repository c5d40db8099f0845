package main

import (
	"fmt"
	"reflect"

	"go.yaml.in/yaml/v3"

	"github.com/pulsehq/pulse/engine/stream"
	"github.com/pulsehq/pulse/rules"
	"github.com/pulsehq/pulse/sinks"
	"github.com/pulsehq/pulse/sinks/clickhouse"
	"github.com/pulsehq/pulse/sinks/file"
	"github.com/pulsehq/pulse/sinks/kafka"
	"github.com/pulsehq/pulse/sinks/webhook"
)

// outputs are the sinks the daemon can run, one line each; the config
// turns each on or leaves it off. A batch is written to them in this
// order, one after another, and retried whole when one fails
// (engine.Sinks), so a failing output holds back those after it.
// Webhooks come first: they only append to their outbox (and drop what
// they have already), so a failing store never delays a notification.
// Before them all, the HTTP server's store of recent transitions; after,
// the transition counter of /metrics (see daemon).
var outputs = []sinks.Output{
	webhook.Output,
	clickhouse.Output,
	file.Output,
	kafka.Output,
}

// plannedOutput is an output the daemon opens, with what it needs.
type plannedOutput struct {
	sinks.Loaded
	needs sinks.Needs
}

// plan is what the daemon runs with rc and the rules rs: the outputs the
// config turns on, in order, and the consumer's config with what they
// need (score rows).
func (rc *runConfig) plan(rs *rules.Ruleset) ([]plannedOutput, stream.Config) {
	var on []plannedOutput
	sc := rc.stream
	for _, o := range rc.outputs {
		n := o.Needs(rs)
		if !n.On {
			continue
		}
		on = append(on, plannedOutput{o, n})
		sc.Engine.ScoreRows = sc.Engine.ScoreRows || n.ScoreRows
	}
	return on, sc
}

// dataDir is a directory pulse run writes to, and the key that names it.
type dataDir struct{ key, dir string }

// dataDirs lists the directories pulse run writes to with rc and rs: the
// checkpoints' (unless they go to Kafka), and those of the outputs that
// are on (the transitions file's, the webhook state file's with
// notifiers). The defaults are all under pulse-data/ in the working
// directory; pulse run creates each that is missing.
func (rc *runConfig) dataDirs(rs *rules.Ruleset) []dataDir {
	var dirs []dataDir
	if rc.stream.CheckpointStore != stream.CheckpointsInKafka {
		dirs = append(dirs, dataDir{"checkpoint.dir", rc.stream.CheckpointDir})
	}
	on, _ := rc.plan(rs)
	for _, o := range on {
		for _, d := range o.needs.Dirs {
			dirs = append(dirs, dataDir{o.Section() + "." + d.Key, d.Path})
		}
	}
	return dirs
}

// configPart is a struct the config file is decoded into, under section
// ("" for the top level). Parts that share a section are decoded side by
// side, as if their keys were one struct's.
type configPart struct {
	section string
	ptr     any // to a struct with yaml tags
}

// configParts are the parts of the config file: the daemon's own keys and
// every output's section.
func configParts(fc *fileConfig, outs []sinks.Loaded) []configPart {
	parts := []configPart{{"", fc}, {"output", &fc.Output}}
	for _, o := range outs {
		parts = append(parts, configPart{o.Section(), o.Settings()})
	}
	return parts
}

// configSchema is the type of the whole config file made of parts: each
// part's struct inlined at the top level, or with the other parts of its
// section in that section's mapping. With it, one strict decoder reads
// every key: unknown keys are refused in every section, and each problem
// has its line. It returns, for each part, the path of field indexes to
// its struct.
func configSchema(parts []configPart) (reflect.Type, [][]int) {
	var sections []string
	fields := map[string][]reflect.StructField{}
	at := make([][]int, len(parts))
	for i, p := range parts {
		if _, ok := fields[p.section]; !ok {
			sections = append(sections, p.section)
		}
		at[i] = []int{len(fields[p.section])}
		fields[p.section] = append(fields[p.section], reflect.StructField{
			Name: fmt.Sprintf("Part%d", i), Type: reflect.TypeOf(p.ptr).Elem(), Tag: `yaml:",inline"`})
	}
	var top []reflect.StructField
	index := map[string]int{}
	for _, s := range sections {
		if s == "" {
			index[s] = -1 // inlined: indexes are the top's own
			continue
		}
		index[s] = len(top)
		top = append(top, reflect.StructField{Name: fmt.Sprintf("Section%d", len(top)), Type: reflect.StructOf(fields[s]),
			Tag: reflect.StructTag(fmt.Sprintf("yaml:%q", s))})
	}
	offset := len(top)
	top = append(top, fields[""]...)
	for i, p := range parts {
		if index[p.section] < 0 {
			at[i] = []int{offset + at[i][0]}
		} else {
			at[i] = []int{index[p.section], at[i][0]}
		}
	}
	return reflect.StructOf(top), at
}

// decodeConfig decodes the config file named name (data) into the parts,
// strictly, as rules.DecodeStrict does: every part keeps its values where
// the file has no key, and where a value is refused.
func decodeConfig(name string, data []byte, parts []configPart) (*yaml.Node, error) {
	typ, at := configSchema(parts)
	v := reflect.New(typ).Elem()
	for i, p := range parts {
		v.FieldByIndex(at[i]).Set(reflect.ValueOf(p.ptr).Elem())
	}
	doc, err := rules.DecodeStrict(name, data, v.Addr().Interface())
	for i, p := range parts {
		reflect.ValueOf(p.ptr).Elem().Set(v.FieldByIndex(at[i]))
	}
	return doc, err
}
