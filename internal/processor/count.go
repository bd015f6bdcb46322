package processor

import (
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"github.com/abacus-streams/abacus/internal/config"
	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
)

// The loop's counting, one input record at a time into the task's write
// buffer (docs/state.md, "Processing and the record cache").

// processSampleEvery: one record in this many has its processing timed.
const processSampleEvery = 64

// cacheEntryOverhead approximates the bytes a cached key costs beyond its
// own bytes (map entry, count), for the record cache's bound.
const cacheEntryOverhead = 64

// process counts one input record.
func (s *session) process(m *kafka.Message) error {
	tp := m.TopicPartition
	t := s.tasks[tp.Partition]
	if t == nil {
		// A record of a partition revoked meanwhile: its new owner reads it
		// again from the committed offset.
		return nil
	}
	if !t.active.Load() {
		// Fetched before the pause took hold: give it back for later.
		if err := s.seek(tp.Partition, tp.Offset, func() error {
			return s.consumer.Pause([]kafka.TopicPartition{{Topic: tp.Topic, Partition: tp.Partition}})
		}); err != nil {
			return fmt.Errorf("rewind restoring task %d: %w", tp.Partition, err)
		}
		return nil
	}
	if int64(tp.Offset) < t.position {
		// Counted already: librdkafka pauses every partition while a
		// rebalance callback is pending and resumes it from the last
		// record the application took, and a record it handed over as
		// the pause began can come again, right after an assignment of
		// other partitions (abacus_records_redelivered_total;
		// TestRedeliveredRecordIsNotCountedTwice).
		s.p.metrics.redelivered.Inc()
		if s.log.Enabled(s.ctx, slog.LevelDebug) {
			s.log.Debug("dropping an input record counted already", "task", t.partition, "offset", int64(tp.Offset), "expected", t.position)
		}
		return nil
	}
	t.position = int64(tp.Offset) + 1
	s.p.metrics.consumed.Inc()
	if t.nextOffset < 0 {
		t.rewindTo = int64(tp.Offset)
	}
	t.nextOffset = int64(tp.Offset) + 1
	if !m.Timestamp.IsZero() && (s.oldestTS.IsZero() || m.Timestamp.Before(s.oldestTS)) {
		s.oldestTS = m.Timestamp
	}
	if m.Key == nil {
		return s.reject(m, "null_key", "record has a null key")
	}
	if want := s.p.part(m.Key, s.p.numPartitions.Load()); want != tp.Partition {
		s.p.metrics.partitionMismatch.Inc()
		s.p.mismatchOnce.Do(func() {
			s.log.Warn("input record is not in the partition the configured partitioner gives its key: key lookups will be routed wrongly; set ABACUS_PARTITIONER to the producers' partitioner",
				"partitioner", s.p.cfg.Partitioner, "record_partition", tp.Partition, "expected_partition", want, "offset", int64(tp.Offset))
		})
	}
	var began time.Time
	if s.sampled++; s.sampled%processSampleEvery == 0 {
		began = time.Now()
	}
	n, fresh, err := t.count(m.Key, s.snap)
	if err != nil {
		return err
	}
	if len(t.windows) > 0 {
		if err := s.countWindows(t, m); err != nil {
			return err
		}
	}
	if s.p.cfg.CacheMaxBytes == 0 {
		if err := s.committer.send(t.partition, m.Key, n); err != nil {
			return err
		}
	} else if fresh {
		s.cacheBytes += int64(len(m.Key)) + cacheEntryOverhead
	}
	s.p.metrics.processed.Inc()
	if !began.IsZero() {
		s.p.metrics.processSeconds.Observe(time.Since(began).Seconds())
	}
	return nil
}

// reject handles a record that cannot be counted, by the on_error policy.
func (s *session) reject(m *kafka.Message, reason, message string) error {
	tp := m.TopicPartition
	switch s.p.cfg.OnError {
	case config.OnErrorDrop:
		s.p.metrics.dropped.WithLabelValues(reason).Inc()
		return nil
	case config.OnErrorFail:
		return fatalf("%s at %s[%d]@%d and ABACUS_ON_ERROR=fail", message, *tp.Topic, tp.Partition, int64(tp.Offset))
	}
	return s.deadLetter(m, reason, message)
}

// lateRecord dead-letters a record late for a windowed store, with
// on_error=dlq; with drop or fail it is only counted
// (abacus_records_late_total): a late record is a normal event of
// event-time processing, not an error to stop for.
func (s *session) lateRecord(m *kafka.Message, storeName string, ts int64) error {
	if s.p.cfg.OnError != config.OnErrorDLQ {
		return nil
	}
	msg := fmt.Sprintf("record is late for windowed store %s: every window of timestamp %d is closed", storeName, ts)
	if ts < 0 {
		msg = fmt.Sprintf("record has no timestamp in the epoch for windowed store %s", storeName)
	}
	return s.deadLetter(m, "late", msg)
}

// deadLetter sends a record to the dead-letter topic with the reason.
func (s *session) deadLetter(m *kafka.Message, reason, message string) error {
	tp := m.TopicPartition
	headers := append(m.Headers[:len(m.Headers):len(m.Headers)],
		kafka.Header{Key: "abacus.error", Value: []byte(message)},
		kafka.Header{Key: "abacus.error.reason", Value: []byte(reason)},
		kafka.Header{Key: "abacus.source.topic", Value: []byte(*tp.Topic)},
		kafka.Header{Key: "abacus.source.partition", Value: []byte(strconv.Itoa(int(tp.Partition)))},
		kafka.Header{Key: "abacus.source.offset", Value: []byte(strconv.FormatInt(int64(tp.Offset), 10))},
		kafka.Header{Key: "abacus.source.timestamp", Value: []byte(m.Timestamp.UTC().Format(time.RFC3339Nano))},
		kafka.Header{Key: "abacus.time", Value: []byte(time.Now().UTC().Format(time.RFC3339Nano))},
	)
	letter := &kafka.Message{
		TopicPartition: kafka.TopicPartition{Topic: &s.dlq, Partition: kafka.PartitionAny},
		Key:            m.Key, Value: m.Value, Headers: headers, Timestamp: m.Timestamp,
	}
	if s.p.cfg.CacheMaxBytes > 0 {
		// The committer sends it with the next batch (and transaction).
		s.pendingDLQ = append(s.pendingDLQ, letter)
		s.cacheBytes += int64(len(m.Key)+len(m.Value)) + cacheEntryOverhead
	} else if err := s.committer.produce(letter); err != nil {
		return err
	}
	s.p.metrics.producedDLQ.Inc()
	s.p.metrics.deadLettered.WithLabelValues(reason).Inc()
	return nil
}
