// Command pulse is the Pulse customer-health engine. See the README.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
)

const usage = `pulse — real-time customer health

Usage:
  pulse run [--config FILE] [--listen ADDR]
  pulse replay --rules FILE --events FILE|- [--at RFC3339] [--transitions]
  pulse rules check FILE
  pulse gen [--accounts N] [--days D] [--seed S] [--end RFC3339] [--out FILE | --kafka BROKERS --topic T]
  pulse broker [--port 9092] [--partitions 8] [--topics events]

Run "pulse COMMAND -h" for a command's flags.
`

// errUsage marks a bad command line: exit status 2.
var errUsage = errors.New("usage")

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

// run executes a command line and returns the exit status.
func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	var err error
	switch args[0] {
	case "run":
		err = runCmd(args[1:], stderr)
	case "broker":
		err = brokerCmd(args[1:], stdout, stderr)
	case "replay":
		err = replayCmd(args[1:], stdin, stdout, stderr)
	case "rules":
		if len(args) < 2 || args[1] != "check" {
			fmt.Fprint(stderr, "usage: pulse rules check FILE\n")
			return 2
		}
		return rulesCheckCmd(args[2:], stdout, stderr)
	case "gen":
		err = genCmd(args[1:], stdout, stderr)
	case "-h", "-help", "--help", "help":
		fmt.Fprint(stdout, usage)
		return 0
	default:
		fmt.Fprintf(stderr, "pulse: unknown command %q\n\n%s", args[0], usage)
		return 2
	}
	switch {
	case err == nil:
		return 0
	case errors.Is(err, flag.ErrHelp):
		return 0
	case errors.Is(err, errUsage):
		return 2
	}
	fmt.Fprintf(stderr, "pulse %s: %v\n", args[0], err)
	return 2
}
