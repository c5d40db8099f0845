package main

import (
	"fmt"
	"io"
	"strings"
)

// rulesCheckCmd validates a rules file: exit 0 when good, 1 with one
// message per problem when bad (errProblems), 2 for a bad command line.
func rulesCheckCmd(args []string, _ io.Reader, stdout, stderr io.Writer) error {
	fs := newFlagSet("rules check")
	if err := parseFlags(fs, args, stdout, stderr); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		fs.Usage()
		return errUsage
	}
	file := fs.Arg(0)
	rs, err := loadRules(file)
	if err != nil {
		printProblems(stderr, err)
		return errProblems
	}
	cards := []string{}
	for _, c := range append(rs.Scorecards, rs.Default) {
		cards = append(cards, fmt.Sprintf("%s: %d factors", c.Name, len(c.Factors)))
	}
	fmt.Fprintf(stdout, "%s: ok (%d alerts, %d notifiers; scorecards %s)\n",
		file, len(rs.Alerts), len(rs.Notify), strings.Join(cards, ", "))
	return nil
}

// printProblems writes each problem of a joined error on its own line.
func printProblems(w io.Writer, err error) {
	if joined, ok := err.(interface{ Unwrap() []error }); ok {
		for _, e := range joined.Unwrap() {
			printProblems(w, e)
		}
		return
	}
	fmt.Fprintln(w, err)
}
