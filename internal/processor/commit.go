package processor

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/abacus-streams/abacus/internal/store"
	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
)

// commit is step 2 of the state protocol for every task with work since the
// last commit. On return without error, Badger holds each task's new counts
// and checkpoint and the input offsets are committed; an aborted
// transaction instead drops the work and rewinds the consumer, which is not
// an error. Any other error ends the session.
func (s *session) commit(ctx context.Context) error {
	s.lastCommit = time.Now()
	var work []*task
	for _, t := range s.tasks {
		if t.nextOffset >= 0 || len(t.dirty) > 0 {
			work = append(work, t)
		}
	}
	if len(work) == 0 {
		return nil
	}
	began := time.Now()
	for _, t := range work {
		for key := range t.unsent {
			if err := s.send(t.partition, []byte(key), t.dirty[key]); err != nil {
				return err
			}
		}
		clear(t.unsent)
	}
	s.cacheBytes = 0

	offsets := make([]kafka.TopicPartition, 0, len(work))
	for _, t := range work {
		if t.nextOffset >= 0 {
			offsets = append(offsets, kafka.TopicPartition{Topic: &s.input, Partition: t.partition, Offset: kafka.Offset(t.nextOffset)})
		}
	}
	if s.eos {
		aborted, err := s.commitTransaction(ctx, offsets)
		if err != nil || aborted {
			return err
		}
	}
	if err := s.delivered.wait(ctx, s.producer, s.p.beat); err != nil {
		return fmt.Errorf("wait for changelog and output deliveries: %w", err)
	}
	var updates []Update
	for _, t := range work {
		if len(t.dirty) == 0 {
			continue
		}
		cp, ok := s.delivered.lastChangelogOffset(t.partition)
		if !ok {
			return fmt.Errorf("task %d has %d dirty counts but no changelog delivery", t.partition, len(t.dirty))
		}
		if err := t.store.Commit(store.Batch{Counts: t.dirty, Checkpoint: cp}); err != nil {
			return err
		}
		t.checkpoint.Store(cp)
		if s.p.cfg.OnCommit != nil {
			for k, v := range t.dirty {
				updates = append(updates, Update{Key: k, Value: v, Partition: t.partition, Offset: cp})
			}
		}
	}
	if !s.eos && len(offsets) > 0 {
		if _, err := s.consumer.CommitOffsets(offsets); err != nil {
			return fmt.Errorf("commit input offsets: %w", err)
		}
	}
	for _, t := range work {
		if t.nextOffset >= 0 {
			t.committed = t.nextOffset
		}
		t.reset()
	}
	if !s.oldestTS.IsZero() {
		s.p.metrics.e2eSeconds.Observe(time.Since(s.oldestTS).Seconds())
		s.oldestTS = time.Time{}
	}
	s.p.metrics.commits.Inc()
	s.p.metrics.commitSeconds.Observe(time.Since(began).Seconds())
	if len(updates) > 0 {
		s.p.cfg.OnCommit(updates)
	}
	return nil
}

// commitTransaction puts the input offsets in the open transaction and
// commits it. A transaction that must be aborted is aborted and its work
// dropped (aborted = true); an error ends the session.
func (s *session) commitTransaction(ctx context.Context, offsets []kafka.TopicPartition) (aborted bool, err error) {
	if len(offsets) > 0 {
		if !s.inTxn {
			if err := s.producer.BeginTransaction(); err != nil {
				return false, fmt.Errorf("begin transaction: %w", err)
			}
			s.inTxn = true
		}
		md, err := s.consumer.GetConsumerGroupMetadata()
		if err != nil {
			return false, fmt.Errorf("read consumer group metadata: %w", err)
		}
		if err := retryTxn(ctx, s.p.beat, func() error { return s.producer.SendOffsetsToTransaction(ctx, offsets, md) }); err != nil {
			return s.txnFailed("send offsets to transaction", err)
		}
	}
	if !s.inTxn {
		return false, nil
	}
	if err := retryTxn(ctx, s.p.beat, func() error { return s.producer.CommitTransaction(ctx) }); err != nil {
		return s.txnFailed("commit transaction", err)
	}
	s.inTxn = false
	return false, nil
}

// retryTxn retries a transactional call while librdkafka says it may.
func retryTxn(ctx context.Context, beat func(), call func() error) error {
	for {
		beat()
		err := call()
		var kerr kafka.Error
		if err == nil || !errors.As(err, &kerr) || !kerr.IsRetriable() || ctx.Err() != nil {
			return err
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// txnFailed aborts when the error allows it, otherwise ends the session.
func (s *session) txnFailed(what string, err error) (bool, error) {
	var kerr kafka.Error
	if errors.As(err, &kerr) && kerr.TxnRequiresAbort() {
		s.log.Warn("transaction aborted; its records are redone", "during", what, "error", err)
		s.abort(what)
		return true, nil
	}
	return false, fmt.Errorf("%s: %w", what, err)
}

// abort drops every task's uncommitted work: the open transaction is
// aborted and each task's consumer position goes back to its first
// uncommitted record. Badger never saw that work.
func (s *session) abort(reason string) {
	if s.inTxn {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err := s.producer.AbortTransaction(ctx)
		cancel()
		if err != nil {
			s.log.Warn("abort transaction", "reason", reason, "error", err)
			if s.err == nil {
				s.err = fmt.Errorf("abort transaction: %w", err)
			}
		}
		s.inTxn = false
		s.p.metrics.aborts.Inc()
	}
	for _, t := range s.tasks {
		if t.nextOffset >= 0 && t.active.Load() && s.err == nil {
			tp := kafka.TopicPartition{Topic: &s.input, Partition: t.partition, Offset: kafka.Offset(t.rewindTo)}
			if err := s.consumer.Seek(tp, 0); err != nil {
				s.err = fmt.Errorf("rewind task %d after abort: %w", t.partition, err)
			}
		}
		t.reset()
	}
	s.cacheBytes = 0
	s.oldestTS = time.Time{}
}
