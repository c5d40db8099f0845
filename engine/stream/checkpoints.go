package stream

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/segmentio/kafka-go"

	"github.com/pulsehq/pulse/engine"
	"github.com/pulsehq/pulse/engine/changelog"
)

// CheckpointStore keeps the newest checkpoint of each partition (its
// state and next offset, engine.Partition.AppendCheckpoint), so that the
// partition's next owner — this instance after a restart, or another one
// after a rebalance — resumes where the state stands instead of
// rebuilding it from the start of the topic.
//
// The consumer owns this seam; DirStore (files in a directory) and
// changelog.Store (a compacted Kafka topic) implement it. The consumer
// calls Open once before anything else and Close once after its last
// Save. One task at a time drives a partition, so Load and Save of one
// partition never overlap, and Load comes first; calls for different
// partitions run concurrently.
type CheckpointStore interface {
	// Open makes the store usable: it returns nil once Load and Save may
	// be called, or an error that stops the consumer (a store that can
	// never work as configured, or ctx ended first).
	Open(ctx context.Context) error
	// Load hands the partition's checkpoints to restore, newest first,
	// until restore accepts one (returns nil). It returns the checkpoints
	// it could not use — damaged in the store, or refused by restore —
	// each as an error saying where it was and what became of it (set
	// aside, or left for the next Save to delete), and: nil once restore
	// accepted one; an error wrapping engine.ErrNoCheckpoint when none is
	// usable (the partition starts from its configured position); any
	// other error when the store cannot be read now (the caller retries:
	// starting afresh would rebuild the partition from the start).
	// restore must not keep data after it returns.
	Load(ctx context.Context, partition int32, restore func(data []byte) error) (unusable []error, err error)
	// Save stores data as the partition's checkpoint. When it returns nil
	// the checkpoint is durable: every later Load, in any instance, finds
	// it or a newer one — only then may the offset be committed. After an
	// error the previous checkpoint is still what Load finds. Save must not
	// keep data after it returns.
	Save(ctx context.Context, partition int32, data []byte) error
	// Close releases what the store holds (connections).
	Close() error
}

// Values of Config.CheckpointStore.
const (
	CheckpointsInDir   = "dir"
	CheckpointsInKafka = "kafka"
)

// DefaultCheckpointTopic is the checkpoint topic of an events topic when
// CheckpointTopic is "".
func DefaultCheckpointTopic(topic string) string { return changelog.DefaultTopic(topic) }

// checkpointStore returns the store c's settings name. With Kafka, a
// partition the topic has no checkpoint of is restored from
// CheckpointDir's file, if any, so that moving a group to the topic
// rebuilds nothing. Records are lz4-compressed: a checkpoint shrinks about
// fivefold (bench/results/changelog.md).
func (c *Config) checkpointStore() CheckpointStore {
	dir := NewDirStore(c.CheckpointDir, c.Topic, c.Log)
	if c.CheckpointStore != CheckpointsInKafka {
		return dir
	}
	topic := cmp.Or(c.CheckpointTopic, DefaultCheckpointTopic(c.Topic))
	store := changelog.New(changelog.Config{Brokers: c.Brokers, Dialer: c.Dialer, Topic: topic, Source: c.Topic, Group: c.Group,
		Compression: kafka.Lz4, Log: c.Log})
	if c.CheckpointDir == "" {
		return store
	}
	return WithFallback(store, dir, c.Log)
}

// DirStore keeps each partition's checkpoint in a file of a directory,
// TOPIC-N.ckpt, written atomically (engine.WriteCheckpointFile). Instances
// of a group that share the directory (a shared filesystem) hand
// partitions over without rebuilding them; with a local directory per
// instance, a partition that moves is rebuilt from the topic.
type DirStore struct {
	dir, topic string
	log        *slog.Logger
}

// NewDirStore returns the store of topic's checkpoints in dir; it logs to
// log (nil: slog.Default()).
func NewDirStore(dir, topic string, log *slog.Logger) *DirStore {
	if log == nil {
		log = slog.Default()
	}
	return &DirStore{dir: dir, topic: topic, log: log}
}

// Path is the file of a partition's checkpoint.
func (s *DirStore) Path(partition int32) string {
	return filepath.Join(s.dir, fmt.Sprintf("%s-%d.ckpt", s.topic, partition))
}

// Open does nothing: the directory is created by whoever configures it.
func (s *DirStore) Open(context.Context) error { return nil }

// Close does nothing.
func (s *DirStore) Close() error { return nil }

// Load restores the partition's file. A file restore refuses is moved
// aside to TOPIC-N.ckpt.corrupt — never used, never lost — so the next
// start does not trip on it again. Temporary files of writes a crash cut
// short are removed first: the caller owns the partition now, so any such
// file is a dead write, or one of a former owner that must not land any
// more.
func (s *DirStore) Load(_ context.Context, partition int32, restore func([]byte) error) ([]error, error) {
	path := s.Path(partition)
	if tmps, _ := filepath.Glob(path + ".tmp-*"); len(tmps) > 0 {
		removed := 0
		for _, f := range tmps {
			if err := os.Remove(f); err == nil {
				removed++
			} else {
				s.log.Warn("cannot remove an unfinished checkpoint write", "partition", partition, "err", err)
			}
		}
		s.log.Info("removed unfinished checkpoint writes", "partition", partition, "files", removed)
	}
	data, err := os.ReadFile(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return nil, fmt.Errorf("%s: %w", path, engine.ErrNoCheckpoint)
	case err != nil:
		return []error{fmt.Errorf("%s is unreadable: %w", path, err)}, fmt.Errorf("%s: %w", path, engine.ErrNoCheckpoint)
	}
	if err := restore(data); err != nil {
		aside := path + ".corrupt"
		if rerr := os.Rename(path, aside); rerr != nil {
			err = fmt.Errorf("%s could not be moved aside (%v): %w", path, rerr, err)
		} else {
			err = fmt.Errorf("%s moved to %s: %w", path, aside, err)
		}
		return []error{err}, fmt.Errorf("%s: %w", path, engine.ErrNoCheckpoint)
	}
	return nil, nil
}

// Save writes the partition's file atomically: a crash leaves the old
// checkpoint or the new one.
func (s *DirStore) Save(_ context.Context, partition int32, data []byte) error {
	return engine.WriteCheckpointFile(s.Path(partition), data)
}

// WithFallback returns a store that saves to primary and loads from it,
// or — when primary holds no checkpoint of a partition — from older, a
// store written before (a checkpoint directory, when a group moves its
// checkpoints to Kafka): the first start after the move resumes where the
// old checkpoints stand instead of rebuilding every partition. A
// checkpoint restored from older is copied to primary at once, so the
// partition's next owner finds it there even if no event comes before the
// partition moves. Nothing else is ever saved to older. Failures to copy
// are logged to log (the partition's next checkpoint is saved anyway).
func WithFallback(primary, older CheckpointStore, log *slog.Logger) CheckpointStore {
	if log == nil {
		log = slog.Default()
	}
	return fallback{primary, older, log}
}

type fallback struct {
	primary, older CheckpointStore
	log            *slog.Logger
}

func (f fallback) Open(ctx context.Context) error {
	return errors.Join(f.primary.Open(ctx), f.older.Open(ctx))
}

func (f fallback) Close() error { return errors.Join(f.primary.Close(), f.older.Close()) }

func (f fallback) Save(ctx context.Context, partition int32, data []byte) error {
	return f.primary.Save(ctx, partition, data)
}

func (f fallback) Load(ctx context.Context, partition int32, restore func([]byte) error) ([]error, error) {
	unusable, err := f.primary.Load(ctx, partition, restore)
	if !errors.Is(err, engine.ErrNoCheckpoint) {
		return unusable, err
	}
	var restored []byte
	more, err := f.older.Load(ctx, partition, func(data []byte) error {
		err := restore(data)
		if err == nil {
			restored = append([]byte(nil), data...)
		}
		return err
	})
	if err == nil {
		if serr := f.primary.Save(ctx, partition, restored); serr != nil {
			f.log.Warn("copying a checkpoint to the new store failed; the partition's next checkpoint goes there", "partition", partition, "err", serr)
		}
	}
	return append(unusable, more...), err
}
