package stream

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/pulsehq/pulse/engine"
	"github.com/pulsehq/pulse/internal/backoff"
	"github.com/pulsehq/pulse/rules"
)

// Start positions for a partition that has no checkpoint.
const (
	StartEarliest  = "earliest"  // rebuild windows from everything the topic retains
	StartLatest    = "latest"    // only new events
	StartCommitted = "committed" // the group's committed offset, else earliest
)

// Config configures a Consumer. DefaultConfig has the defaults, in this
// one place; New takes zero settings as their defaults (WithDefaults).
// Validate reports every problem of a config.
type Config struct {
	Brokers []string
	Topic   string
	Group   string
	Dialer  *kafka.Dialer // TLS and SASL live here (DialerConfig builds it)
	Start   string
	// CheckpointStore says where partitions are checkpointed:
	// CheckpointsInDir (files in CheckpointDir) or CheckpointsInKafka (the
	// compacted topic CheckpointTopic, "" for DefaultCheckpointTopic;
	// partitions it has no checkpoint of are restored from CheckpointDir's
	// files, if any).
	CheckpointStore string
	CheckpointTopic string
	CheckpointDir   string
	// Checkpoints, when set, is the store itself, whatever CheckpointStore
	// says (tests).
	Checkpoints        CheckpointStore
	CheckpointInterval time.Duration
	// IdleAdvance: once a partition has had no event for this long, its
	// clock follows the wall clock, so absence rules fire on a quiet topic.
	// Zero leaves the clock alone (replays of historical topics).
	IdleAdvance     time.Duration
	DeadLetterTopic string // "" discards rejected events (they are still counted)
	FetchMaxBytes   int
	FetchMaxWait    time.Duration
	// SessionTimeout is how long the group waits for a member that stopped
	// heartbeating (a crashed instance) before handing its partitions on.
	SessionTimeout time.Duration
	// LagInterval is how often the lag of every owned partition is
	// reported from the brokers' high watermarks, besides after each
	// fetch: a partition a sink holds back fetches nothing, and its lag
	// must still grow with the backlog.
	LagInterval time.Duration
	Engine      engine.Config
	Log         *slog.Logger
	Hooks       Hooks
	// Now is the wall clock; tests may replace it.
	Now func() time.Time
}

// WithDefaults returns c with its zero settings set from DefaultConfig:
// all but Brokers, Topic, Group and CheckpointDir, which say what to read
// and where to keep state, and IdleAdvance, whose zero turns it off. A nil
// Dialer dials plain TCP (DefaultDialerConfig), a nil Log logs to
// slog.Default, nil Hooks count nothing, a nil Now is time.Now, and nil
// Checkpoints is the store CheckpointStore names.
func (c Config) WithDefaults() Config {
	d := DefaultConfig()
	if c.Dialer == nil {
		c.Dialer = DefaultDialerConfig().TCP()
	}
	c.Start = cmp.Or(c.Start, d.Start)
	c.CheckpointInterval = cmp.Or(c.CheckpointInterval, d.CheckpointInterval)
	c.FetchMaxBytes = cmp.Or(c.FetchMaxBytes, d.FetchMaxBytes)
	c.FetchMaxWait = cmp.Or(c.FetchMaxWait, d.FetchMaxWait)
	c.SessionTimeout = cmp.Or(c.SessionTimeout, d.SessionTimeout)
	c.LagInterval = cmp.Or(c.LagInterval, d.LagInterval)
	if c.Log == nil {
		c.Log = slog.Default()
	}
	c.CheckpointStore = cmp.Or(c.CheckpointStore, d.CheckpointStore)
	if c.Checkpoints == nil {
		c.Checkpoints = c.checkpointStore()
	}
	if c.Hooks == nil {
		c.Hooks = NopHooks{}
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return c
}

// Consumer runs the engine for the partitions a consumer group assigns it.
type Consumer struct {
	cfg    Config
	sink   engine.Sink
	rules  atomic.Pointer[rules.Ruleset]
	dlq    *kafka.Writer
	client *kafka.Client // offsets for the lag
	// transport carries the lag's and dead letters' requests.
	transport *kafka.Transport

	mu       sync.Mutex
	tasks    map[int32]*task // owned partitions, for queries
	unsaved  []error         // final saves that failed on shutdown
	caughtUp caughtUp        // whether this generation has caught up (caughtup.go)
	ready    atomic.Bool
}

// New returns a consumer evaluating rs and writing to sink.
func New(cfg Config, rs *rules.Ruleset, sink engine.Sink) *Consumer {
	cfg = cfg.WithDefaults()
	c := &Consumer{cfg: cfg, sink: sink, tasks: map[int32]*task{}}
	c.rules.Store(rs)
	transport := &kafka.Transport{Dial: cfg.Dialer.DialFunc, TLS: cfg.Dialer.TLS, SASL: cfg.Dialer.SASLMechanism}
	c.transport = transport
	c.client = &kafka.Client{Addr: kafka.TCP(cfg.Brokers...), Timeout: 10 * time.Second, Transport: transport}
	if cfg.DeadLetterTopic != "" {
		c.dlq = &kafka.Writer{
			Addr:                   kafka.TCP(cfg.Brokers...),
			Topic:                  cfg.DeadLetterTopic,
			Balancer:               &kafka.Hash{},
			RequiredAcks:           kafka.RequireAll,
			AllowAutoTopicCreation: true,
			BatchTimeout:           time.Millisecond,
			Transport:              transport,
		}
	}
	return c
}

// SetRules swaps the ruleset; each partition picks it up before its next
// batch.
func (c *Consumer) SetRules(rs *rules.Ruleset) { c.rules.Store(rs) }

// Rules returns the ruleset in force.
func (c *Consumer) Rules() *rules.Ruleset { return c.rules.Load() }

// Ready reports whether the consumer holds a generation and every assigned
// partition has restored its state.
func (c *Consumer) Ready() bool { return c.ready.Load() }

// ErrNotSaved is returned by Run when a partition's final checkpoint
// failed on shutdown: its events since the last checkpoint are re-read on
// the next start, and their outputs are not all stored meanwhile.
var ErrNotSaved = errors.New("not checkpointed")

// Run joins the group and processes assignments until ctx ends. It then
// checkpoints and commits every owned partition, leaves the group and
// returns nil — or an ErrNotSaved error that says, partition by partition,
// what was not checkpointed and which outputs were not stored.
func (c *Consumer) Run(ctx context.Context) error {
	c.mu.Lock()
	c.caughtUp.since = c.cfg.Now()
	c.mu.Unlock()
	if err := c.cfg.Checkpoints.Open(ctx); err != nil {
		if ctx.Err() != nil {
			return nil // stopped before it started: nothing to save
		}
		return fmt.Errorf("checkpoint store: %w", err)
	}
	// Closed last: the tasks' final saves (in group.Close below) use it.
	defer c.cfg.Checkpoints.Close()
	go c.watchLag(ctx)
	group, err := kafka.NewConsumerGroup(kafka.ConsumerGroupConfig{
		ID:                c.cfg.Group,
		Brokers:           c.cfg.Brokers,
		Dialer:            c.cfg.Dialer,
		Topics:            []string{c.cfg.Topic},
		HeartbeatInterval: time.Second,
		SessionTimeout:    c.cfg.SessionTimeout,
		RebalanceTimeout:  c.cfg.SessionTimeout,
		JoinGroupBackoff:  500 * time.Millisecond,
		StartOffset:       kafka.FirstOffset,
		ErrorLogger:       kafka.LoggerFunc(func(f string, a ...any) { c.cfg.Log.Debug("kafka: " + fmt.Sprintf(f, a...)) }),
	})
	if err != nil {
		return fmt.Errorf("joining group %q: %w", c.cfg.Group, err)
	}
	// Closing the group ends the current generation; Close waits for the
	// tasks to checkpoint and commit before it leaves the group.
	stop := context.AfterFunc(ctx, func() { group.Close() })
	defer stop()
	defer group.Close()
	retry := backoff.New(200*time.Millisecond, 5*time.Second)
	for {
		gen, err := group.Next(ctx)
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, kafka.ErrGroupClosed) {
				group.Close() // waits for every task's final save
				return errors.Join(c.unsavedErr(), c.closeDLQ())
			}
			c.cfg.Log.Warn("consumer group", "err", err)
			retry.Wait(ctx)
			continue
		}
		retry.Reset()
		c.generation(ctx, gen)
	}
}

// unsavedErr joins the final saves that failed on shutdown.
func (c *Consumer) unsavedErr() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.unsaved) == 0 {
		return nil
	}
	return fmt.Errorf("%d partitions %w on shutdown: %w", len(c.unsaved), ErrNotSaved, errors.Join(c.unsaved...))
}

func (c *Consumer) closeDLQ() error {
	defer c.transport.CloseIdleConnections()
	if c.dlq != nil {
		return c.dlq.Close()
	}
	return nil
}

// generation starts one task per assigned partition. The tasks end when
// the generation does (a rebalance or shutdown), after checkpointing.
func (c *Consumer) generation(ctx context.Context, gen *kafka.Generation) {
	assigned := gen.Assignments[c.cfg.Topic]
	c.cfg.Log.Info("partitions assigned", "generation", gen.ID, "member", gen.MemberID, "partitions", len(assigned))
	c.ready.Store(false)
	c.mu.Lock()
	c.caughtUp.start(gen.ID, len(assigned), c.cfg.Now())
	c.mu.Unlock()
	var restored sync.WaitGroup
	restored.Add(len(assigned))
	for _, pa := range assigned {
		t := &task{c: c, gen: gen, partition: int32(pa.ID), committed: pa.Offset, queries: make(chan query)}
		gen.Start(func(genCtx context.Context) {
			if genCtx.Err() != nil {
				// The generation has ended, maybe before Start: then kafka-go
				// runs fn without waiting for it, and the next owner may
				// hold the partition already. Nothing is restored yet, so
				// nothing needs saving.
				restored.Done()
				return
			}
			tctx, cancel := context.WithCancel(ctx)
			defer cancel()
			stop := context.AfterFunc(genCtx, cancel)
			defer stop()
			if err := t.run(tctx, restored.Done); err != nil && ctx.Err() != nil {
				// On shutdown (not a rebalance, where the next owner
				// takes over at once) the process must say so.
				c.mu.Lock()
				c.unsaved = append(c.unsaved, err)
				c.mu.Unlock()
			}
		})
	}
	go func() {
		restored.Wait()
		c.ready.Store(true)
	}()
}

func (c *Consumer) register(t *task) {
	c.mu.Lock()
	c.tasks[t.partition] = t
	c.mu.Unlock()
}

func (c *Consumer) unregister(t *task) {
	c.mu.Lock()
	if c.tasks[t.partition] == t {
		delete(c.tasks, t.partition)
	}
	c.mu.Unlock()
}

// commit commits one partition's offset to the group.
func (c *Consumer) commit(gen *kafka.Generation, partition int32, offset int64) error {
	return gen.CommitOffsets(map[string]map[int]int64{c.cfg.Topic: {int(partition): offset}})
}

// watchLag reports every LagInterval the lag of each owned partition:
// the brokers' high watermark (one ListOffsets request for them all)
// minus the partition's next offset to apply. A task also reports its lag
// after each fetch, but one held back by a sink fetches nothing.
func (c *Consumer) watchLag(ctx context.Context) {
	tick := time.NewTicker(c.cfg.LagInterval)
	defer tick.Stop()
	for {
		select {
		case <-tick.C:
		case <-ctx.Done():
			return
		}
		c.mu.Lock()
		var req []kafka.OffsetRequest
		for p := range c.tasks {
			req = append(req, kafka.LastOffsetOf(int(p)))
		}
		c.mu.Unlock()
		if len(req) == 0 {
			continue
		}
		lctx, cancel := context.WithTimeout(ctx, c.cfg.LagInterval+5*time.Second)
		resp, err := c.client.ListOffsets(lctx, &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{c.cfg.Topic: req}})
		cancel()
		if err != nil {
			c.cfg.Log.Debug("reading high watermarks for the lag", "err", err)
			continue
		}
		c.mu.Lock() // a partition revoked meanwhile is not reported again
		lags := make(map[int32]int64, len(req))
		for _, po := range resp.Topics[c.cfg.Topic] {
			t := c.tasks[int32(po.Partition)]
			next := int64(-1)
			if t != nil {
				next = t.applied.Load()
			}
			if po.Error == nil && next >= 0 {
				lag := max(po.LastOffset-next, 0)
				c.cfg.Hooks.Lag(c.cfg.Topic, t.partition, lag)
				lags[t.partition] = lag
			}
		}
		c.checkCaughtUp(lags)
		c.mu.Unlock()
	}
}

// ErrNotOwned is returned by do when no partition answered in time.
var ErrNotOwned = errors.New("partition not owned by this instance")

// do runs fn in the goroutine of every partition this instance owns, one
// after another in partition order, and returns once all have run (or ctx
// ends). fn may read the partition freely; it must not keep references to
// its states after returning. Readers outside the package use the
// engine.View the consumer implements instead: it never waits for a
// partition, and hands out no live state.
func (c *Consumer) do(ctx context.Context, fn func(p *engine.Partition)) error {
	c.mu.Lock()
	tasks := make([]*task, 0, len(c.tasks))
	for _, t := range c.tasks {
		tasks = append(tasks, t)
	}
	c.mu.Unlock()
	sort.Slice(tasks, func(i, j int) bool { return tasks[i].partition < tasks[j].partition })
	for _, t := range tasks {
		if err := t.do(ctx, fn); err != nil && !errors.Is(err, ErrNotOwned) {
			return err
		}
	}
	return nil
}
