package main

import (
	"errors"
	"fmt"
	"io"
	"strings"
)

// rulesCheckCmd validates a rules file: exit 0 when good, 1 with one
// message per problem when bad, 2 for a bad command line.
func rulesCheckCmd(args []string, stdout, stderr io.Writer) int {
	if len(args) != 1 {
		fmt.Fprintln(stderr, "usage: pulse rules check FILE")
		return 2
	}
	rs, err := loadRules(args[0])
	if err != nil {
		var joined interface{ Unwrap() []error }
		if errors.As(err, &joined) {
			for _, e := range joined.Unwrap() {
				fmt.Fprintln(stderr, e)
			}
		} else {
			fmt.Fprintln(stderr, err)
		}
		return 1
	}
	cards := []string{}
	for _, c := range append(rs.Scorecards, rs.Default) {
		cards = append(cards, fmt.Sprintf("%s: %d factors", c.Name, len(c.Factors)))
	}
	fmt.Fprintf(stdout, "%s: ok (%d alerts, %d notifiers; scorecards %s)\n",
		args[0], len(rs.Alerts), len(rs.Notify), strings.Join(cards, ", "))
	return 0
}
