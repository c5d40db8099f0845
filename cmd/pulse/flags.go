package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/pulsehq/pulse/rules"
)

// newFlagSet returns the flag set of a command (a name of commandTable,
// such as "rules check"), whose Usage prints the command's help: its
// synopsis, what it does, and every flag as --flag with its default.
// Parse it with parseFlags.
func newFlagSet(name string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.Usage = func() { printHelp(fs.Output(), fs) }
	return fs
}

// parseFlags parses a command's arguments. --help (or -h) prints the help
// on stdout and returns flag.ErrHelp, which is exit status 0. A bad flag is
// reported on stderr, with a pointer to the help, and returns errUsage
// (exit status 2). Afterwards fs writes to stderr, so a command that finds
// its arguments wanting can call fs.Usage.
func parseFlags(fs *flag.FlagSet, args []string, stdout, stderr io.Writer) error {
	var msg bytes.Buffer
	usage := fs.Usage
	fs.Usage = func() {} // the flag package calls it on errors too
	fs.SetOutput(&msg)
	err := fs.Parse(args)
	fs.Usage = usage
	switch {
	case errors.Is(err, flag.ErrHelp):
		fs.SetOutput(stdout)
		fs.Usage()
		fs.SetOutput(stderr)
		return flag.ErrHelp
	case err != nil:
		fmt.Fprintf(stderr, "pulse %s: %s\nRun 'pulse %s --help' for its flags.\n", fs.Name(), doubleDash(err.Error()), fs.Name())
		fs.SetOutput(stderr)
		return errUsage
	}
	fs.SetOutput(stderr)
	return nil
}

// flagInMessageRe finds the flag the flag package names in its errors
// ("flag provided but not defined: -bogus").
var flagInMessageRe = regexp.MustCompile(`(^|[\s:])-([A-Za-z][\w-]*)`)

// doubleDash writes the flags a flag package error names as --flag, as the
// help does.
func doubleDash(msg string) string {
	msg = strings.Replace(msg, "flag provided but not defined", "unknown flag", 1)
	return flagInMessageRe.ReplaceAllString(msg, "$1--$2")
}

// printHelp writes a command's help.
func printHelp(w io.Writer, fs *flag.FlagSet) {
	c, ok := lookupCommand(fs.Name())
	if !ok {
		panic("BUG: no command " + fs.Name())
	}
	fmt.Fprintf(w, "Usage: %s\n\n", strings.TrimSpace("pulse "+c.name+" "+c.synopsis))
	fmt.Fprintln(w, wrap(c.about, 78, ""))
	type row struct{ name, usage string }
	var rows []row
	width := 0
	fs.VisitAll(func(f *flag.Flag) {
		arg, usage := flag.UnquoteUsage(f)
		name := "--" + f.Name
		if arg != "" {
			name += " " + argName(f, arg)
		}
		if def := f.DefValue; !slices.Contains([]string{"", "0", "false", "0s"}, def) {
			// One word for wrap: "(default" never ends a line.
			usage += fmt.Sprintf(" (default\x00%s)", def)
		}
		rows = append(rows, row{name, usage})
		width = max(width, len(name))
	})
	if len(rows) == 0 {
		return
	}
	width = min(width, 26)
	fmt.Fprintln(w, "\nFlags:")
	indent := strings.Repeat(" ", 2+width+2)
	for _, r := range rows {
		usage := strings.ReplaceAll(wrap(r.usage, 78-len(indent), indent), "\x00", " ")
		if len(r.name) > width {
			fmt.Fprintf(w, "  %s\n%s%s\n", r.name, indent, usage)
			continue
		}
		fmt.Fprintf(w, "  %-*s  %s\n", width, r.name, usage)
	}
}

// argName is the placeholder of a flag's value in the help: the word in
// backquotes in its usage, else one for its type.
func argName(f *flag.Flag, unquoted string) string {
	if _, ok := f.Value.(durationFlag); ok && unquoted == "value" {
		return "DURATION"
	}
	switch unquoted {
	case "int", "uint":
		return "N"
	case "float":
		return "X"
	case "string", "value":
		return "VALUE"
	}
	return unquoted
}

// wrap breaks text into lines of at most width columns (longer words stay
// whole); lines after the first start with indent.
func wrap(text string, width int, indent string) string {
	var b strings.Builder
	col := 0
	for i, word := range strings.Fields(text) {
		switch {
		case i == 0:
		case col+1+len(word) > width:
			b.WriteString("\n" + indent)
			col = 0
		default:
			b.WriteByte(' ')
			col++
		}
		b.WriteString(word)
		col += len(word)
	}
	return b.String()
}

// durationFlag is a flag.Value for a duration written as in the config
// and rules files (rules.ParseDuration): 90s, 5m, 7d, 1d12h.
type durationFlag struct{ d *time.Duration }

func (f durationFlag) String() string {
	if f.d == nil {
		return ""
	}
	return rules.FormatDuration(*f.d)
}

func (f durationFlag) Set(s string) error {
	d, err := rules.ParseDuration(s)
	if err != nil {
		return err
	}
	*f.d = d
	return nil
}

// durationVar defines a duration flag that takes days as the config files
// do; every duration flag of pulse is one.
func durationVar(fs *flag.FlagSet, name string, value time.Duration, usage string) *time.Duration {
	d := new(time.Duration)
	*d = value
	fs.Var(durationFlag{d}, name, usage)
	return d
}

// choiceFlag is a flag.Value that takes one of a few words.
type choiceFlag struct {
	v       *string
	choices []string
}

func (f choiceFlag) String() string {
	if f.v == nil {
		return ""
	}
	return *f.v
}

func (f choiceFlag) Set(s string) error {
	if !slices.Contains(f.choices, s) {
		return fmt.Errorf("must be %s", strings.Join(f.choices, " or "))
	}
	*f.v = s
	return nil
}

// choiceVar defines a flag that takes one of choices; it holds value
// until set.
func choiceVar(fs *flag.FlagSet, name, value string, choices []string, usage string) *string {
	v := new(string)
	*v = value
	fs.Var(choiceFlag{v, choices}, name, usage)
	return v
}
