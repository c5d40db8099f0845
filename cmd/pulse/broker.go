package main

import (
	"context"
	"fmt"
	"io"
	"os/signal"
	"strings"
	"syscall"

	"github.com/twmb/franz-go/pkg/kfake"
)

// brokerCmd is `pulse broker`: a standalone in-memory Kafka-protocol broker
// (kfake) for local runs, tests and benchmarks. It holds everything in
// memory and stops on SIGINT or SIGTERM.
func brokerCmd(args []string, _ io.Reader, stdout, stderr io.Writer) error {
	fs := newFlagSet("broker")
	listen := fs.Int("port", 9092, "`PORT` on 127.0.0.1")
	partitions := fs.Int("partitions", 8, "partitions per topic")
	topics := fs.String("topics", "events", "comma-separated `TOPICS` to create")
	if err := parseFlags(fs, args, stdout, stderr); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "pulse broker: unexpected argument %q\n", fs.Arg(0))
		return errUsage
	}
	opts := []kfake.Opt{kfake.NumBrokers(1), kfake.Ports(*listen), kfake.AllowAutoTopicCreation(), kfake.DefaultNumPartitions(*partitions)}
	for _, t := range strings.Split(*topics, ",") {
		if t = strings.TrimSpace(t); t != "" {
			opts = append(opts, kfake.SeedTopics(int32(*partitions), t))
		}
	}
	c, err := kfake.NewCluster(opts...)
	if err != nil {
		return err
	}
	defer c.Close()
	fmt.Fprintf(stdout, "broker listening on %s\n", strings.Join(c.ListenAddrs(), ","))
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	<-ctx.Done()
	return nil
}
