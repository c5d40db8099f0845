package main

import (
	"fmt"
	"io"
	"os"
	"strings"
)

// configCheckCmd validates a daemon config as `pulse run --config FILE`
// would, without starting anything: exit 0 with a summary, 1 with every
// problem (errProblems), 2 for a bad command line.
func configCheckCmd(args []string, _ io.Reader, stdout, stderr io.Writer) error {
	fs := newFlagSet("config check")
	if err := parseFlags(fs, args, stdout, stderr); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		fs.Usage()
		return errUsage
	}
	file := fs.Arg(0)
	rc, rs, err := checkConfig(file, os.Getenv, runFlags{})
	if err != nil {
		printProblems(stderr, err)
		return errProblems
	}
	kafka := "embedded broker " + rc.file.Embedded.Listen
	if !rc.embedded {
		kafka = strings.Join(rc.stream.Brokers, ",")
	}
	rulesFile := rc.file.Rules
	if rulesFile == "" {
		rulesFile = "built-in model"
	}
	var outs []string
	on, _ := rc.plan(rs)
	for _, o := range on {
		outs = append(outs, o.Name()+" "+o.needs.Target)
	}
	if len(outs) == 0 {
		outs = []string{"none"}
	}
	fmt.Fprintf(stdout, "%s: ok (listen %s; kafka %s, topic %s; rules %s: %d alerts, %d notifiers; outputs %s)\n",
		file, rc.web.Listen, kafka, rc.stream.Topic, rulesFile, len(rs.Alerts), len(rs.Notify), strings.Join(outs, ", "))
	return nil
}
