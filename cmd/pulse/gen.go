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
	for d := range g.Days() {
		err := eachEvent(g, d, func(line []byte) error {
			bw.Write(line)
			return bw.WriteByte('\n') // a write error sticks: this returns it too
		})
		if err != nil {
			if brokenPipe(err) {
				return nil // the reader has what it wanted (pulse gen | head)
			}
			return err
		}
	}
	if err := bw.Flush(); !brokenPipe(err) {
		return err
	}
	return nil
}

// eachEvent calls f with each of day d's lines, in time order, until f
// returns an error.
func eachEvent(g *synth.Generator, d int, f func(line []byte) error) error {
	r, err := g.OpenDay(d)
	if err != nil {
		return err
	}
	for r.Next() {
		if err := f(r.Line()); err != nil {
			return errors.Join(err, r.Close())
		}
	}
	return errors.Join(r.Err(), r.Close())
}

// genToKafka produces the stream to a topic, partitioned by account.
func genToKafka(g *synth.Generator, brokers []string, topic string) error {
	p := newProducer(brokers, topic)
	defer p.Close()
	ctx := context.Background()
	var batch [][]byte
	for d := range g.Days() {
		err := eachEvent(g, d, func(line []byte) error {
			batch = append(batch, bytes.Clone(line))
			if len(batch) < 20000 {
				return nil
			}
			err := p.write(ctx, batch)
			batch = batch[:0]
			return err
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
