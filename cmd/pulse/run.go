package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/pulsehq/pulse/engine"
	"github.com/pulsehq/pulse/engine/stream"
	"github.com/pulsehq/pulse/engine/synth"
	"github.com/pulsehq/pulse/rules"
	"github.com/pulsehq/pulse/sinks"
	"github.com/pulsehq/pulse/sinks/prom"
	"github.com/pulsehq/pulse/sinks/web"
)

// shutdownTimeout bounds a graceful stop: stop fetching, flush sinks,
// checkpoint, commit, leave the group.
const shutdownTimeout = 30 * time.Second

// runCmd is `pulse run`: the daemon. It returns nil when SIGINT or SIGTERM
// has stopped it cleanly, and an error (exit status 2) that names what was
// not checkpointed or not stored when the stop was not clean.
func runCmd(args []string, _ io.Reader, stdout, stderr io.Writer) error {
	fs := newFlagSet("run")
	configFile := fs.String("config", "", "configuration `FILE` (YAML); none runs the embedded default: in-process broker and synthetic load")
	listen := fs.String("listen", "", "HTTP address `ADDR` (overrides the config's listen; default 127.0.0.1:8080)")
	rulesFlag := fs.String("rules", "", "rules `FILE` (overrides the config's rules; default: the shipped model built into the binary)")
	logFormat := choiceVar(fs, "log-format", "", logFormats, "log `FORMAT`: text (logfmt) or json, one object per line (overrides the config's log.format; default text)")
	if err := parseFlags(fs, args, stdout, stderr); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "pulse run: unexpected argument %q\n", fs.Arg(0))
		return errUsage
	}
	rc, rs, err := checkConfig(*configFile, os.Getenv, runFlags{listen: *listen, rules: *rulesFlag, logFormat: *logFormat})
	if err != nil {
		return err
	}
	log := newLogger(stderr, rc.file.Log.Format, rc.file.Log.Level)
	// What logs through the standard library (net/http's server errors)
	// comes out in the same format.
	slog.SetDefault(log)
	err = daemon(rc, rs, log)
	if err != nil && rc.file.Log.Format == "json" {
		// The log is stderr: the error goes in as a record, and main
		// prints nothing more, so every line stays JSON.
		if !errors.As(err, new(unsavedError)) {
			log.Error("pulse run failed", "err", err)
		}
		return quietError{err}
	}
	return err
}

// unsavedError is a stop that left work unsaved; daemon has logged it.
type unsavedError struct{ error }

func (e unsavedError) Unwrap() error { return e.error }

// quietError is an error already reported: main exits 2 without printing it.
type quietError struct{ error }

func (e quietError) Unwrap() error { return e.error }

// daemon starts everything rc configures, in order, and runs until
// SIGINT or SIGTERM; then it stops in the reverse order.
func daemon(rc *runConfig, rs *rules.Ruleset, log *slog.Logger) error {
	// Every directory Pulse writes to exists before anything starts.
	for _, d := range rc.dataDirs(rs) {
		if err := os.MkdirAll(d.dir, 0o755); err != nil {
			return fmt.Errorf("%s: creating %s: %w", d.key, d.dir, err)
		}
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	if rc.embedded {
		// The embedded broker keeps its log in memory: a new one starts
		// empty, so checkpoints of an earlier run describe a log that is
		// gone.
		old, _ := filepath.Glob(filepath.Join(rc.stream.CheckpointDir, "*.ckpt")) // the pattern is valid
		for _, f := range old {
			if err := os.Remove(f); err != nil {
				// Harmless: a checkpoint beyond the new log's end is
				// rebuilt from the start.
				log.Warn("removing a checkpoint of an earlier embedded broker", "err", err)
			}
		}
		cluster, err := startEmbeddedBroker(rc)
		if err != nil {
			return err
		}
		defer cluster.Close()
		log.Info("embedded Kafka-protocol broker", "addr", rc.file.Embedded.Listen, "topic", rc.stream.Topic, "partitions", rc.file.Embedded.Partitions)
		if d := rc.file.Embedded.Demo; d.Enabled {
			go func() {
				if err := runDemo(ctx, rc.stream.Brokers, rc.stream.Topic, d, log); err != nil && ctx.Err() == nil {
					log.Error("demo load stopped", "err", err)
				}
			}()
		}
	}

	metrics := prom.New()
	metrics.Registry().MustRegister(buildInfoGauge(readBuild()))
	on, sc := rc.plan(rs)
	// Every batch goes to the sinks in order (engine.Sinks): first the
	// HTTP server's store of recent transitions (it only copies, in
	// memory, and keeps a retried batch once), then the outputs the config
	// turns on, in the order of their list (outputs.go), each counted
	// under its name, and last the transition counter of /metrics, so
	// that only batches every sink accepted count.
	recent := web.NewRecent(web.RecentPerAccount, web.RecentTotal)
	all := engine.Sinks{recent}
	var opened []engine.Sink // the outputs themselves, for reloads and snoozes
	env := &sinks.Env{Kafka: sinks.Kafka{Brokers: sc.Brokers, Dialer: sc.Dialer}, Rules: rs, Log: log, Hooks: metrics}
	for _, o := range on {
		s, err := o.Open(ctx, env)
		if err != nil {
			return errors.Join(err, engine.Sinks(opened).Close(ctx))
		}
		opened = append(opened, s)
		all = append(all, metrics.Wrap(o.Name(), s))
	}
	all = append(all, metrics.Sink())
	sc.Hooks = metrics
	sc.Log = log
	consumer := stream.New(sc, rs, all)
	aggregates := &prom.Aggregates{View: consumer, Interval: rc.metrics.AggregateInterval}
	metrics.Registry().MustRegister(aggregates)
	go aggregates.Run(ctx)

	reload := func() error {
		next, err := loadRules(rc.file.Rules)
		metrics.RulesReloaded(err)
		if err != nil {
			log.Error("rules reload refused; the old rules stay", "file", rc.file.Rules, "err", err)
			return err
		}
		consumer.SetRules(next)
		for _, s := range opened {
			if r, ok := s.(sinks.Reloader); ok {
				r.SetRules(next)
			}
		}
		log.Info("rules reloaded", "file", rc.file.Rules, "version", next.Version, "alerts", len(next.Alerts))
		return nil
	}
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	go func() {
		for range hup {
			reload()
		}
	}()

	srv := &http.Server{
		Handler: (&web.Server{View: consumer, Metrics: metrics.Handler(), Reload: reload, Log: log, Snoozer: snoozer(opened), Recent: recent,
			Auth: rc.web.Auth, Pprof: rc.web.Pprof, MaxSnooze: rc.web.MaxSnooze, MaxSnoozes: rc.web.MaxSnoozes}).Handler(),
		ReadHeaderTimeout: 10 * time.Second,
	}
	ln, err := net.Listen("tcp", rc.web.Listen)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	log.Info("serving", "url", "http://"+ln.Addr().String()+"/")
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("http server", "err", err)
		}
	}()

	done := make(chan error, 1)
	go func() { done <- consumer.Run(ctx) }()
	var runErr error
	select {
	case runErr = <-done:
	case <-ctx.Done():
		log.Info("stopping: checkpointing and committing every partition")
		select {
		case runErr = <-done:
		case <-time.After(shutdownTimeout):
			runErr = fmt.Errorf("did not stop within %v", shutdownTimeout)
		}
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	srv.Shutdown(sctx)
	// A partition whose final checkpoint failed, and rows a sink could not
	// store, are re-read on the next start: nothing is lost, but the exit
	// status says the stop was not clean, and the error says what is left.
	runErr = errors.Join(runErr, all.Close(sctx))
	if runErr != nil {
		log.Error("stopped with work not saved; the next start re-reads it from the last checkpoints", "err", runErr)
		return unsavedError{runErr}
	}
	log.Info("stopped")
	return nil
}

// snoozer returns the output that keeps the accounts' snoozes (the
// webhook sink, when the rules notify), or nil.
func snoozer(opened []engine.Sink) web.Snoozer {
	for _, s := range opened {
		if sn, ok := s.(web.Snoozer); ok {
			return sn
		}
	}
	return nil
}

// startEmbeddedBroker runs an in-process Kafka-protocol broker (kfake) with
// the events topic (and the dead-letter topic, if set).
func startEmbeddedBroker(rc *runConfig) (*kfake.Cluster, error) {
	port, err := embeddedPort(rc.file.Embedded.Listen)
	if err != nil {
		return nil, fmt.Errorf("embedded.listen: %w", err)
	}
	opts := []kfake.Opt{kfake.NumBrokers(1), kfake.Ports(port), kfake.SeedTopics(int32(rc.file.Embedded.Partitions), rc.stream.Topic),
		kfake.AllowAutoTopicCreation(), kfake.DefaultNumPartitions(rc.file.Embedded.Partitions)}
	if rc.stream.DeadLetterTopic != "" {
		opts = append(opts, kfake.SeedTopics(1, rc.stream.DeadLetterTopic))
	}
	c, err := kfake.NewCluster(opts...)
	if err != nil {
		return nil, fmt.Errorf("embedded broker on %s: %w", rc.file.Embedded.Listen, err)
	}
	return c, nil
}

// runDemo feeds the topic a live synthetic load: history_days of history
// replayed speed× faster than real time, then live.
func runDemo(ctx context.Context, brokers []string, topic string, d demoConfig, log *slog.Logger) error {
	end := time.Now().UTC().Truncate(24*time.Hour).AddDate(0, 0, 1)
	g := synth.New(synth.Options{Accounts: d.Accounts, Days: d.HistoryDays + 1, Seed: d.Seed, End: end})
	w := newProducer(brokers, topic)
	defer w.Close()
	log.Info("demo load", "accounts", d.Accounts, "history_days", d.HistoryDays, "speed", d.Speed)
	return g.Live(ctx, d.Speed, time.Now, func(lines [][]byte) error { return w.write(ctx, lines) })
}
