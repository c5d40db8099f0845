package rules

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// DecodeStrict decodes the YAML document data into v, refusing unknown
// keys, and returns the document's node tree, for the positions of later
// problems (Line). Every problem decoding finds is returned at once,
// joined, each an *Error that names the file (name), the line and the key
// path. The daemon's config file is read with it too, so its problems read
// like a rules file's. An empty document decodes to nothing and is no
// error.
func DecodeStrict(name string, data []byte, v any) (*yaml.Node, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return &doc, decodeErrors(name, &doc, err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(v); err != nil && !errors.Is(err, io.EOF) {
		return &doc, decodeErrors(name, &doc, err)
	}
	return &doc, nil
}

// RefuseValue is what an UnmarshalYAML method returns for a value it will
// not take. DecodeStrict reports err as the problem of the key that holds
// n, as FILE:LINE: key: err (the error Is ErrBadValue), leaves the field
// as it was and goes on decoding, so one refused value hides no other
// problem. Any other error from UnmarshalYAML stops decoding.
func RefuseValue(n *yaml.Node, err error) error {
	// yaml.v3 collects only *yaml.TypeError, whose problems are strings:
	// the position travels in the string, as yaml.v3's own do.
	return &yaml.TypeError{Errors: []string{fmt.Sprintf("line %d: column %d: %v", n.Line, n.Column, err)}}
}

// refusedValue is a value an UnmarshalYAML method refused (RefuseValue).
type refusedValue struct{ msg string }

func (e refusedValue) Error() string        { return e.msg }
func (e refusedValue) Is(target error) bool { return target == ErrBadValue }

// Line returns the line of a dotted key path, such as "kafka.tls.ca_file",
// in a document DecodeStrict returned — or, when the key is absent, the
// line of its nearest ancestor that is present; 0 when none is.
func Line(doc *yaml.Node, key string) int {
	var path []any
	for _, k := range strings.Split(key, ".") {
		path = append(path, k)
	}
	return position(doc, path...)
}

// position finds the line of a key path (such as ["alerts", 2, "when"]) in
// a parsed YAML document; it returns 0 when the path is absent.
func position(doc *yaml.Node, path ...any) int {
	n := doc
	if n != nil && n.Kind == yaml.DocumentNode && len(n.Content) > 0 {
		n = n.Content[0]
	}
	line := 0
	for _, p := range path {
		if n == nil {
			return line
		}
		switch p := p.(type) {
		case string:
			if n.Kind != yaml.MappingNode {
				return line
			}
			var next *yaml.Node
			for i := 0; i+1 < len(n.Content); i += 2 {
				if n.Content[i].Value == p {
					line = n.Content[i].Line
					next = n.Content[i+1]
					break
				}
			}
			n = next
		case int:
			if n.Kind != yaml.SequenceNode || p >= len(n.Content) {
				return line
			}
			n = n.Content[p]
			line = n.Line
		}
	}
	return line
}

// keyPath renders a path such as ["alerts", 2, "when"] as alerts[2].when.
func keyPath(path ...any) string {
	var b strings.Builder
	for _, p := range path {
		switch p := p.(type) {
		case string:
			if b.Len() > 0 {
				b.WriteByte('.')
			}
			b.WriteString(p)
		case int:
			fmt.Fprintf(&b, "[%d]", p)
		}
	}
	return b.String()
}

// pathOfValue finds the key path of the mapping value or sequence item at
// line and column, such as checkpoint.interval in
// "checkpoint: {interval: -1s}".
func pathOfValue(doc *yaml.Node, line, column int) string {
	return findPath(doc, func(k, v *yaml.Node) bool {
		return v.Line == line && v.Column == column
	})
}

// pathAtLine finds the key path of the mapping key named key on line, so a
// decoder message ("line 7: field foo not found") can name alerts[1].foo.
// With key "", any key on line, or a key whose scalar value is on line.
func pathAtLine(doc *yaml.Node, line int, key string) string {
	return findPath(doc, func(k, v *yaml.Node) bool {
		if k == nil {
			return false // sequence items have no key to name
		}
		return k.Line == line && (key == "" || k.Value == key) ||
			v.Line == line && key == "" && v.Kind == yaml.ScalarNode
	})
}

// findPath walks doc depth first and returns the key path of the first
// node match accepts: each mapping pair (k, v), and each sequence item
// (nil, item).
func findPath(doc *yaml.Node, match func(k, v *yaml.Node) bool) string {
	var walk func(n *yaml.Node, path []any) string
	walk = func(n *yaml.Node, path []any) string {
		switch n.Kind {
		case yaml.DocumentNode:
			for _, c := range n.Content {
				if p := walk(c, path); p != "" {
					return p
				}
			}
		case yaml.MappingNode:
			for i := 0; i+1 < len(n.Content); i += 2 {
				k, v := n.Content[i], n.Content[i+1]
				p := append(path[:len(path):len(path)], k.Value)
				if match(k, v) {
					return keyPath(p...)
				}
				if r := walk(v, p); r != "" {
					return r
				}
			}
		case yaml.SequenceNode:
			for i, c := range n.Content {
				p := append(path[:len(path):len(path)], i)
				if match(nil, c) {
					return keyPath(p...)
				}
				if r := walk(c, p); r != "" {
					return r
				}
			}
		}
		return ""
	}
	return walk(doc, nil)
}

var (
	decodeLineRe = regexp.MustCompile(`^line (\d+): (.*)$`)
	refusedRe    = regexp.MustCompile(`^line (\d+): column (\d+): (.*)$`) // RefuseValue's
	unknownKeyRe = regexp.MustCompile(`^field (\S+) not found in type`)
)

// decodeErrors turns a yaml.v3 decoding error into Errors that name the
// file, line and key path.
func decodeErrors(file string, doc *yaml.Node, err error) error {
	var te *yaml.TypeError
	if !errors.As(err, &te) {
		line := 0
		msg := strings.TrimPrefix(err.Error(), "yaml: ")
		if m := decodeLineRe.FindStringSubmatch(msg); m != nil {
			line, _ = strconv.Atoi(m[1])
			msg = m[2]
		}
		return &Error{File: file, Line: line, Err: fmt.Errorf("%w: %s", ErrSyntax, msg)}
	}
	var errs []error
	for _, s := range te.Errors {
		if m := refusedRe.FindStringSubmatch(s); m != nil {
			line, _ := strconv.Atoi(m[1])
			column, _ := strconv.Atoi(m[2])
			errs = append(errs, &Error{File: file, Line: line, Key: pathOfValue(doc, line, column), Err: refusedValue{m[3]}})
			continue
		}
		m := decodeLineRe.FindStringSubmatch(s)
		if m == nil {
			errs = append(errs, &Error{File: file, Err: fmt.Errorf("%w: %s", ErrBadValue, s)})
			continue
		}
		line, _ := strconv.Atoi(m[1])
		if k := unknownKeyRe.FindStringSubmatch(m[2]); k != nil {
			errs = append(errs, &Error{File: file, Line: line, Key: pathAtLine(doc, line, k[1]), Err: ErrUnknownKey})
			continue
		}
		errs = append(errs, &Error{File: file, Line: line, Key: pathAtLine(doc, line, ""), Err: fmt.Errorf("%w: %s", ErrBadValue, m[2])})
	}
	return errors.Join(errs...)
}
