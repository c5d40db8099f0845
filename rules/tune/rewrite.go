package tune

import (
	"bytes"
	"fmt"
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Rewrite returns the rules file src with the weight of factors replaced
// (the factors of the score block and of every scorecard; a factor list
// shared by a YAML anchor is rewritten once). weight is called with each
// factor's name and weight as written, and returns the new weight and the
// comment for its line; ok false leaves the factor alone. Everything else
// is kept byte for byte, comments and anchors included: the result is the
// reviewed file with new numbers, not a re-encoding of it.
func Rewrite(src []byte, weight func(name, old string) (new, comment string, ok bool)) ([]byte, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(src, &doc); err != nil {
		return nil, err
	}
	if len(doc.Content) == 0 {
		return nil, fmt.Errorf("an empty rules file")
	}
	type edit struct {
		line, col int // 1-based; col counts characters
		old, new  string
		comment   string
	}
	var edits []edit
	seen := map[*yaml.Node]bool{}
	addFactors := func(list *yaml.Node) {
		list = deref(list)
		if list == nil || list.Kind != yaml.SequenceNode {
			return
		}
		for _, f := range list.Content {
			f = deref(f)
			name, w := value(f, "name"), value(f, "weight")
			if name == nil || w == nil || seen[w] {
				continue
			}
			seen[w] = true
			if nw, comment, ok := weight(name.Value, w.Value); ok {
				edits = append(edits, edit{line: w.Line, col: w.Column, old: w.Value, new: nw, comment: comment})
			}
		}
	}
	root := deref(doc.Content[0])
	addFactors(value(value(root, "score"), "factors"))
	if cards := deref(value(root, "scorecards")); cards != nil && cards.Kind == yaml.SequenceNode {
		for _, c := range cards.Content {
			addFactors(value(deref(c), "factors"))
		}
	}
	lines := bytes.SplitAfter(src, []byte("\n"))
	// Right to left within a line, so that earlier columns stay put.
	slices.SortFunc(edits, func(a, b edit) int {
		if a.line != b.line {
			return a.line - b.line
		}
		return b.col - a.col
	})
	commented := map[int]bool{}
	for _, e := range edits {
		line := string(lines[e.line-1])
		off := byteOffset(line, e.col-1)
		if off < 0 || !strings.HasPrefix(line[off:], e.old) {
			return nil, fmt.Errorf("line %d: the weight %q is not where the YAML parser puts it", e.line, e.old)
		}
		line = line[:off] + e.new + line[off+len(e.old):]
		if e.comment != "" && !commented[e.line] {
			commented[e.line] = true
			body, eol := strings.CutSuffix(line, "\n")
			if i := strings.Index(body[off:], " #"); i >= 0 {
				body = body[:off+i] // the line's own comment gives way
			}
			line = strings.TrimRight(body, " ") + "  # " + e.comment
			if eol {
				line += "\n"
			}
		}
		lines[e.line-1] = []byte(line)
	}
	return bytes.Join(lines, nil), nil
}

// deref follows an alias (*factors) to its anchored node.
func deref(n *yaml.Node) *yaml.Node {
	for n != nil && n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	if n != nil && n.Kind == yaml.DocumentNode && len(n.Content) > 0 {
		return deref(n.Content[0])
	}
	return n
}

// value returns the value node of key in a mapping, or nil.
func value(m *yaml.Node, key string) *yaml.Node {
	m = deref(m)
	if m == nil || m.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			return deref(m.Content[i+1])
		}
	}
	return nil
}

// byteOffset returns the byte offset of the n-th character of s, or -1.
func byteOffset(s string, n int) int {
	for off := range s {
		if n == 0 {
			return off
		}
		n--
	}
	if n == 0 {
		return len(s)
	}
	return -1
}
