package main

import (
	"errors"
	"fmt"
	"io"
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
	fmt.Fprintf(stdout, "%s: ok (%d factors, %d alerts, %d notifiers)\n", args[0], len(rs.Factors), len(rs.Alerts), len(rs.Notify))
	return 0
}
