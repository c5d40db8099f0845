package main

import (
	"bufio"
	"errors"
	"fmt"
	examplerules "github.com/pulsehq/pulse/deploy/rules"
	"io"
	"os"
	"runtime/pprof"
	"strings"
	"time"

	"github.com/pulsehq/pulse/config"
	"github.com/pulsehq/pulse/engine"
	"github.com/pulsehq/pulse/rules"
)

// maxLine bounds one JSONL line; a longer one is rejected as bad_json.
const maxLine = 1 << 20

// maxRejectReports bounds the per-line rejection messages on stderr; the
// summary still counts them all.
const maxRejectReports = 1000

func replayCmd(args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	diff, args, err := takeDiffFiles(args, stderr)
	if err != nil {
		return err
	}
	fs := newFlagSet("replay")
	defaults := engine.DefaultConfig()
	rulesFile := fs.String("rules", "", "rules `FILE` (YAML), required (but with --diff)")
	eventsFile := fs.String("events", "", "JSONL events `FILE`, or - for standard input, required")
	atFlag := fs.String("at", "", "evaluate at this `RFC3339` time (default: the highest ts); later events are ignored")
	transitions := fs.Bool("transitions", false, "print the alert transitions instead of account states")
	partitions := fs.Int("partitions", 8, "virtual partitions (xxhash(account_id) mod N), as the Kafka topic has")
	retention := durationVar(fs, "retention", defaults.Retention, "state retention, as engine.retention")
	evalInterval := durationVar(fs, "eval-interval", defaults.EvalInterval, "least event time between evaluations of an account")
	sweepInterval := durationVar(fs, "sweep-interval", defaults.SweepInterval, "event time between sweeps of all accounts")
	maxSkew := durationVar(fs, "max-skew", defaults.MaxSkew, "how far ahead of a partition's clock an event moves it at once")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile to this `FILE` (diagnostics)")
	diffFlags(fs, &diff)
	if err := parseFlags(fs, args, stdout, stderr); err != nil {
		return err
	}
	endOnBrokenPipe()
	if err := diff.check(*rulesFile, *transitions, stderr); err != nil {
		fs.Usage()
		return err
	}
	if (*rulesFile == "" && diff.oldFile == "") || *eventsFile == "" || fs.NArg() > 0 || *partitions < 1 {
		fmt.Fprintln(stderr, "pulse replay: --rules and --events are required, --partitions must be ≥ 1")
		fs.Usage()
		return errUsage
	}
	var at int64
	if *atFlag != "" {
		t, err := time.Parse(time.RFC3339Nano, *atFlag)
		if err != nil {
			return fmt.Errorf("--at %q: not an RFC 3339 time", *atFlag)
		}
		at = t.UnixNano()
	}
	cfg := engine.Config{Retention: *retention, EvalInterval: *evalInterval, SweepInterval: *sweepInterval, MaxSkew: *maxSkew}
	if err := cfg.WithDefaults().Validate(); err != nil {
		// The engine names its settings as the config does; here they
		// are flags.
		for _, err := range unjoin(err) {
			var se *config.Error
			if errors.As(err, &se) {
				fmt.Fprintf(stderr, "pulse replay: --%s: %v\n", strings.ReplaceAll(se.Key, "_", "-"), se.Err)
			} else {
				fmt.Fprintf(stderr, "pulse replay: %v\n", err)
			}
		}
		return errUsage
	}
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	if diff.oldFile != "" {
		diff.eventsFile = *eventsFile
		return replayDiff(diff, cfg, *partitions, at, stdin, stdout, stderr)
	}
	rs, err := loadRules(*rulesFile)
	if err != nil {
		return err
	}
	in := stdin
	if *eventsFile != "-" {
		f, err := os.Open(*eventsFile)
		if err != nil {
			return err
		}
		defer f.Close()
		in = f
	}

	rp := engine.NewReplayer(rs, cfg, *partitions, at, time.Now().UnixNano())
	reported := 0
	rp.OnReject = func(line int, reason engine.Reason, detail string) {
		if reported++; reported <= maxRejectReports {
			fmt.Fprintf(stderr, "%s:%d: rejected (%s): %s\n", *eventsFile, line, reason, detail)
		}
	}
	if err := eachLine(in, rp.Line, func(line int) {
		rp.OnReject(line, engine.ReasonJSON, "line longer than 1 MiB")
	}); err != nil {
		return fmt.Errorf("reading %s: %w", *eventsFile, err)
	}
	rp.Finish()
	summarize(stderr, rp, reported)

	w := bufio.NewWriterSize(stdout, 1<<16)
	var buf []byte
	if *transitions {
		for _, t := range rp.Transitions() {
			buf = engine.AppendTransitionJSON(buf[:0], &t)
			w.Write(append(buf, '\n'))
		}
	} else {
		rp.EachState(func(s *engine.AccountState) {
			buf = s.AppendJSON(buf[:0])
			w.Write(append(buf, '\n'))
		})
	}
	// A write that failed stays failed: Flush returns its error.
	if err := w.Flush(); err != nil && !brokenPipe(err) {
		return err
	}
	return nil // all written, or the reader has what it wanted (| head)
}

// summarize writes the rejection counts by reason, if any.
func summarize(stderr io.Writer, rp *engine.Replayer, reported int) {
	counts, after := rp.Counts()
	if reported > maxRejectReports {
		fmt.Fprintf(stderr, "... %d more rejected lines not shown\n", reported-maxRejectReports)
	}
	for r, n := range counts {
		if r != int(engine.ReasonOK) && n > 0 {
			fmt.Fprintf(stderr, "rejected %s: %d\n", engine.Reason(r), n)
		}
	}
	if after > 0 {
		fmt.Fprintf(stderr, "ignored after --at: %d\n", after)
	}
}

// eachLine calls fn for each line of r (without its newline), numbering
// from 1. A line longer than maxLine is skipped whole and reported to
// tooLong, so one bad line never stops the stream.
func eachLine(r io.Reader, fn func(n int, line []byte), tooLong func(n int)) error {
	br := bufio.NewReaderSize(r, maxLine)
	n := 0
	for {
		line, err := br.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			n++
			tooLong(n)
			for errors.Is(err, bufio.ErrBufferFull) {
				_, err = br.ReadSlice('\n')
			}
			if err == io.EOF {
				return nil
			}
			if err != nil {
				return err
			}
			continue
		}
		if len(line) > 0 {
			n++
			trimmed := line
			if trimmed[len(trimmed)-1] == '\n' {
				trimmed = trimmed[:len(trimmed)-1]
			}
			if len(trimmed) > 0 && trimmed[len(trimmed)-1] == '\r' {
				trimmed = trimmed[:len(trimmed)-1]
			}
			if len(trimmed) > 0 {
				fn(n, trimmed)
			}
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// loadRules reads and validates a rules file, expanding ${VAR} from the
// environment.
//
// An empty path loads the shipped model built into the binary.
func loadRules(path string) (*rules.Ruleset, error) {
	if path == "" {
		return rules.Load(examplerules.Name, examplerules.YAML, rules.LoadOptions{LookupEnv: os.LookupEnv})
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return rules.Load(path, data, rules.LoadOptions{LookupEnv: os.LookupEnv})
}
