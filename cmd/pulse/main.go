// Command pulse is the Pulse customer-health engine. See the README.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
)

// command is one subcommand: what its help says, and what runs it.
type command struct {
	name     string // as typed after pulse: "run", "rules check"
	synopsis string // its arguments
	about    string // what it does, for its --help
	run      func(args []string, stdin io.Reader, stdout, stderr io.Writer) error
}

// commandTable lists the subcommands, in the order the usage shows them.
func commandTable() []command {
	return []command{
		{"run", "[--config FILE] [--listen ADDR] [--rules FILE] [--log-format text|json]",
			"The daemon: consumes the events topic, scores every account, evaluates the alerts and writes them to the configured outputs, " +
				"and serves the status page, the JSON API and /metrics. With no --config it runs the embedded default: an in-process " +
				"Kafka-protocol broker on 127.0.0.1:9092 with a synthetic load, served on http://127.0.0.1:8080/. " +
				"SIGINT or SIGTERM stops it cleanly; SIGHUP reloads the rules.",
			runCmd},
		{"replay", "--rules FILE --events FILE|- [--at RFC3339] [--transitions] [flags] | --diff OLD NEW --events FILE|- [--json]",
			"Reads JSONL events in file order, evaluates every account at --at (default: the highest ts; later events are ignored) " +
				"and prints one account state per line, sorted by account_id; with --transitions it prints the alert transitions instead. " +
				"With --diff OLD NEW it replays the events under both rules files in one pass and prints what the change would have done: " +
				"per rule the firing episodes under each, the accounts newly flagged and no longer flagged, and the grade changes at the end " +
				"(a table, or JSON with --json). " +
				"Rejected lines are reported on stderr. Exit status 0, or 2 when the command itself fails.",
			replayCmd},
		{"tune", "--rules FILE --events FILE [--horizon 90d] [--holdout 0.3]",
			"Fits the score's factor weights to the renewal outcomes in the events: for each renewal, the account's factor points " +
				"--horizon before it; churned or contracted is the class to predict. A logistic regression with non-negative weights " +
				"is fitted on the older renewals; the newer (--holdout) measure how well the file's, uniform and fitted weights rank " +
				"churned accounts (AUC). Prints the rules file with the fitted weights, a comment on each, and the report at its top. " +
				"Exit status 1 when the events hold no renewal to fit, 2 for a bad command line or rules file.",
			tuneCmd},
		{"rules check", "FILE",
			"Validates a rules file: exit 0 with a summary, or 1 with one FILE:LINE: key: problem line per problem.",
			rulesCheckCmd},
		{"config check", "FILE",
			"Validates a daemon config file without starting anything, as pulse run --config FILE would: every key, " +
				"the environment overrides and credentials it names, and the rules file it names (or the built-in model). " +
				"Exit 0 with a short summary, or 1 with every problem, one FILE:LINE: key: problem line each.",
			configCheckCmd},
		{"gen", "[--accounts N] [--days D] [--seed S] [--end RFC3339] [--out FILE | --kafka BROKERS --topic T]",
			"Writes a realistic synthetic event stream, time-ordered, the same for the same --seed and --end, " +
				"as JSONL or, with --kafka, to a topic (keyed and partitioned by account).",
			genCmd},
		{"broker", "[--port 9092] [--partitions 8] [--topics events]",
			"Runs a standalone in-memory Kafka-protocol broker until SIGINT or SIGTERM: for local runs, tests and benchmarks.",
			brokerCmd},
		{"version", "",
			"Prints the version, the VCS commit the binary was built from (+dirty: with uncommitted changes) and the Go version. " +
				"pulse --version does the same; /metrics has them as pulse_build_info.",
			versionCmd},
	}
}

func lookupCommand(name string) (command, bool) {
	for _, c := range commandTable() {
		if c.name == name {
			return c, true
		}
	}
	return command{}, false
}

func usage() string {
	var b strings.Builder
	b.WriteString("pulse — real-time customer health\n\nUsage:\n")
	for _, c := range commandTable() {
		fmt.Fprintln(&b, "  "+strings.TrimSpace("pulse "+c.name+" "+c.synopsis))
	}
	b.WriteString("\nRun 'pulse COMMAND --help' (or 'pulse help COMMAND') for a command's flags; pulse --version prints the version.\n")
	return b.String()
}

// errUsage marks a bad command line: exit status 2. What was wrong has
// been said already.
var errUsage = errors.New("usage")

// errProblems marks a check that found problems and printed them: exit
// status 1.
var errProblems = errors.New("problems found")

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

// run executes a command line and returns the exit status.
func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage())
		return 2
	}
	switch args[0] {
	case "help":
		if len(args) > 1 { // pulse help rules check: its --help
			args = append(args[1:len(args):len(args)], "--help")
			break
		}
		fmt.Fprint(stdout, usage())
		return 0
	case "-h", "-help", "--help":
		fmt.Fprint(stdout, usage())
		return 0
	case "-version", "--version":
		args = append([]string{"version"}, args[1:]...)
	}
	// Two-word commands ("rules check") first.
	name, rest := args[0], args[1:]
	if len(args) > 1 {
		if _, ok := lookupCommand(args[0] + " " + args[1]); ok {
			name, rest = args[0]+" "+args[1], args[2:]
		}
	}
	c, ok := lookupCommand(name)
	if !ok {
		if group := groupUsage(name); group != "" {
			// "pulse rules" alone, or "pulse rules --help".
			if len(rest) == 1 && (rest[0] == "-h" || rest[0] == "--help" || rest[0] == "-help") {
				fmt.Fprint(stdout, group)
				return 0
			}
			fmt.Fprint(stderr, group)
			return 2
		}
		fmt.Fprintf(stderr, "pulse: unknown command %q\n\n%s", args[0], usage())
		return 2
	}
	err := c.run(rest, stdin, stdout, stderr)
	switch {
	case err == nil:
		return 0
	case errors.Is(err, flag.ErrHelp):
		return 0
	case errors.Is(err, errUsage):
		return 2
	case errors.Is(err, errProblems):
		return 1
	}
	if errors.As(err, new(quietError)) {
		return 2
	}
	var problems *configError
	if errors.As(err, &problems) {
		// One FILE:LINE: key: problem per line, as pulse config check
		// prints them.
		printProblems(stderr, problems)
		return 2
	}
	fmt.Fprintf(stderr, "pulse %s: %v\n", c.name, err)
	return 2
}

// groupUsage lists the commands that start with word ("rules": "rules
// check"), or returns "".
func groupUsage(word string) string {
	var b strings.Builder
	for _, c := range commandTable() {
		if strings.HasPrefix(c.name, word+" ") {
			fmt.Fprintf(&b, "  pulse %s %s\n", c.name, c.synopsis)
		}
	}
	if b.Len() == 0 {
		return ""
	}
	return "Usage:\n" + b.String()
}
