package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/pulsehq/pulse/engine/synth"
)

func genCmd(args []string, _ io.Reader, stdout, stderr io.Writer) error {
	fs := newFlagSet("gen")
	accounts := fs.Int("accounts", 100, "number of accounts")
	days := fs.Int("days", 60, "days of history")
	seed := fs.Uint64("seed", 1, "random `SEED`: the same seed gives the same stream")
	endFlag := fs.String("end", "", "end of the period, `RFC3339` (default: today 00:00 UTC); the last day generated is the one before")
	out := fs.String("out", "-", "output JSONL `FILE`, - for standard output")
	brokers := fs.String("kafka", "", "produce to these Kafka `BROKERS` (comma-separated) instead of writing JSONL")
	topic := fs.String("topic", "events", "`TOPIC` for --kafka")
	if err := parseFlags(fs, args, stdout, stderr); err != nil {
		return err
	}
	endOnBrokenPipe()
	if *accounts < 1 || *days < 1 || fs.NArg() > 0 {
		fmt.Fprintln(stderr, "pulse gen: --accounts and --days must be ≥ 1")
		return errUsage
	}
	end := time.Now().UTC().Truncate(24 * time.Hour)
	if *endFlag != "" {
		t, err := time.Parse(time.RFC3339, *endFlag)
		if err != nil {
			return fmt.Errorf("--end %q: not an RFC 3339 time", *endFlag)
		}
		end = t.UTC()
	}
	g := synth.New(synth.Options{Accounts: *accounts, Days: *days, Seed: *seed, End: end})
	if *brokers != "" {
		return genToKafka(g, strings.Split(*brokers, ","), *topic)
	}
	w := stdout
	if *out != "-" {
		f, err := os.Create(*out)
		if err != nil {
			return err
		}
		defer f.Close()
		w = f
	}
	bw := bufio.NewWriterSize(w, 1<<20)
	var werr error
	for d := range g.Days() {
		g.Day(d, func(line []byte) {
			if werr == nil {
				_, werr = bw.Write(line)
				werr = errors.Join(werr, bw.WriteByte('\n'))
			}
		})
		if werr != nil {
			break
		}
	}
	if werr == nil {
		werr = bw.Flush()
	}
	if brokenPipe(werr) {
		return nil // the reader has what it wanted (pulse gen | head)
	}
	return werr
}

// genToKafka produces the stream to a topic, partitioned by account.
func genToKafka(g *synth.Generator, brokers []string, topic string) error {
	p := newProducer(brokers, topic)
	defer p.Close()
	ctx := context.Background()
	var batch [][]byte
	for d := range g.Days() {
		var err error
		g.Day(d, func(line []byte) {
			batch = append(batch, bytes.Clone(line))
			if len(batch) == 20000 && err == nil {
				err = p.write(ctx, batch)
				batch = batch[:0]
			}
		})
		if err != nil {
			return err
		}
	}
	if len(batch) > 0 {
		return p.write(ctx, batch)
	}
	return nil
}
