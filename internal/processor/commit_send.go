package processor

import (
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"time"
	"unsafe"

	"github.com/abacus-streams/abacus/internal/abacus"
	"github.com/abacus-streams/abacus/internal/processor/delivery"
	"github.com/abacus-streams/abacus/internal/store"
	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
)

// The committer's steps that both guarantees share: sending a batch's
// counts, writing them to Badger, and telling the world.

// sendDeadLetters sends the dead letters the loop kept for the batch
// (record cache on).
func (c *committer) sendDeadLetters(dlq []*kafka.Message) error {
	for _, m := range dlq {
		if err := c.produce(m); err != nil {
			return err
		}
	}
	return nil
}

// sendProgress tells, while a batch is sent, how far the sends went:
// each sending goroutine puts a task's index on its channel (in the
// batch's order) once it handed over that task's records, after it filled
// in its part of the task's mark.
type sendProgress struct {
	marks     []delivery.Mark
	changelog chan int
	output    chan int
}

// sendAll produces a batch's counts, the changelog's records and the
// output's from two goroutines: the producer takes sends from several
// at once, and a commit's sends are most of its time. The transaction,
// if any, is open before either starts. progress, if not nil, hears how
// far the sends went; it needs the committer to place output records
// itself (outputPartitions > 0), so that each task's records have known
// partitions.
func (c *committer) sendAll(tasks []taskBatch, progress *sendProgress) error {
	if err := c.beginTxn(); err != nil {
		return err
	}
	errc := make(chan error, 1)
	go func() { errc <- c.sendTo(&c.output, false, tasks, progress) }()
	err := c.sendTo(&c.changelog, true, tasks, progress)
	if oerr := <-errc; err == nil {
		err = oerr
	}
	if err != nil {
		return err
	}
	var n int
	for _, tb := range tasks {
		n += len(tb.counts)
	}
	c.p.metrics.producedChangelog.Add(float64(n))
	c.p.metrics.producedOutput.Add(float64(n))
	return nil
}

// sendTo sends a batch's counts to one topic: the changelog (own: each
// task's records to its own partition) or the output.
func (c *committer) sendTo(topic *string, own bool, tasks []taskBatch, progress *sendProgress) error {
	// librdkafka copies key and value, so one message and one value
	// buffer serve every send.
	m := &kafka.Message{TopicPartition: kafka.TopicPartition{Topic: topic, Partition: kafka.PartitionAny}}
	var value []byte
	for i, tb := range tasks {
		if own {
			m.TopicPartition.Partition = tb.partition
		}
		for key, n := range tb.counts {
			value = strconv.AppendInt(value[:0], n, 10)
			m.Key, m.Value = unsafe.Slice(unsafe.StringData(key), len(key)), value
			if !own && c.outputPartitions > 0 {
				m.TopicPartition.Partition = c.p.part(m.Key, c.outputPartitions)
			}
			if err := c.produce(m); err != nil {
				return err
			}
			if progress != nil && !own {
				c.sentOutput[m.TopicPartition.Partition]++
			}
		}
		if progress == nil {
			continue
		}
		if own {
			c.sentChangelog[tb.partition] += int64(len(tb.counts))
			progress.marks[i].Partition = tb.partition
			progress.marks[i].Changelog = c.sentChangelog[tb.partition]
			progress.changelog <- i
		} else {
			progress.marks[i].Output = slices.Clone(c.sentOutput)
			progress.output <- i
		}
	}
	return nil
}

// storeWorkers bounds the tasks whose counts are written to Badger at
// once: building a transaction is most of a write, and Badger's one
// writer goroutine takes the transactions of several tasks together.
const storeWorkers = 4

// storeAll writes each task's counts with the changelog offset of its
// last delivered count as the checkpoint, several tasks at once.
func (c *committer) storeAll(tasks []taskBatch) error {
	work, wait := c.startStores(len(tasks))
	for _, tb := range tasks {
		work <- tb
	}
	close(work)
	return wait()
}

// startStores starts up to storeWorkers goroutines that store the tasks
// put on work (those with counts) until it is closed; wait waits for them
// and returns their first errors. A worker stores nothing after its
// first failure.
func (c *committer) startStores(tasks int) (work chan<- taskBatch, wait func() error) {
	ch := make(chan taskBatch)
	workers := min(storeWorkers, tasks)
	errs := make(chan error, workers)
	for range workers {
		go func() {
			var first error
			for tb := range ch {
				if first == nil && len(tb.counts) > 0 {
					first = c.storeTask(tb)
				}
			}
			errs <- first
		}()
	}
	return ch, func() error {
		var err error
		for range workers {
			err = errors.Join(err, <-errs)
		}
		return err
	}
}

// storeTask writes one task's counts and checkpoint to Badger.
func (c *committer) storeTask(tb taskBatch) error {
	cp, ok := c.delivered.LastChangelogOffset(tb.partition)
	if !ok {
		return fmt.Errorf("task %d has %d counts to commit but no changelog delivery", tb.partition, len(tb.counts))
	}
	if tb.changelogBase >= 0 && !c.eos { // exactly_once_v2 checks before the commit
		// The store and its checkpoint stay as they were: the session
		// ends, nothing of the batch is committed, and the task restores
		// from its checkpoint, the other writer's records included.
		if err := c.delivered.ForeignChangelogRecords(tb.partition, tb.changelogBase); err != nil {
			c.log.Warn("not storing a task whose changelog another member wrote to meanwhile", "task", tb.partition, "error", err)
			c.p.metrics.otherWriter.Inc()
			return err
		}
	}
	batch := store.Batch{Counts: tb.counts, Checkpoint: cp}
	if len(tb.windowed) > 0 {
		var err error
		if batch.Windowed, err = c.windowedStoreBatches(tb); err != nil {
			return err
		}
	}
	sp := c.p.db.Partition(tb.partition)
	if err := sp.Commit(batch); err != nil {
		return err
	}
	if err := c.expireWindows(sp, tb); err != nil {
		return err
	}
	if v, ok := (*c.p.tasks.Load())[tb.partition]; ok {
		v.checkpoint.Store(cp)
	}
	return nil
}

// inputOffsets are the input offsets a batch commits.
func (c *committer) inputOffsets(tasks []taskBatch) []kafka.TopicPartition {
	var offsets []kafka.TopicPartition
	for _, tb := range tasks {
		if tb.nextOffset >= 0 {
			offsets = append(offsets, kafka.TopicPartition{Topic: &c.input, Partition: tb.partition, Offset: kafka.Offset(tb.nextOffset)})
		}
	}
	return offsets
}

// updates are a stored batch's counts for OnCommit, each with the
// changelog offset it reached; nil without OnCommit.
func (c *committer) updates(tasks []taskBatch) []abacus.Update {
	if c.p.cfg.OnCommit == nil {
		return nil
	}
	var updates []abacus.Update
	for _, tb := range tasks {
		cp, _ := c.delivered.LastChangelogOffset(tb.partition)
		for k, v := range tb.counts {
			updates = append(updates, abacus.Update{Key: k, Value: v, Partition: tb.partition, Offset: cp})
		}
	}
	return updates
}

// committed ends a commit that succeeded: its metrics, its log line, and
// OnCommit with its updates, called here on the committer goroutine once
// the counts are durable.
func (c *committer) committed(b *commitBatch, updates []abacus.Update, began, produced, delivered, stored time.Time) {
	if !b.oldestTS.IsZero() {
		c.p.metrics.e2eSeconds.Observe(time.Since(b.oldestTS).Seconds())
	}
	c.p.metrics.commits.Inc()
	c.p.metrics.commitSeconds.Observe(time.Since(began).Seconds())
	c.p.metrics.lastCommit.SetToCurrentTime()
	if c.log.Enabled(b.ctx, slog.LevelDebug) {
		keys := 0
		for _, tb := range b.tasks {
			keys += len(tb.counts)
		}
		c.log.Debug("committed", "tasks", len(b.tasks), "keys", keys,
			"produce", produced.Sub(began), "deliver", delivered.Sub(produced),
			"store", stored.Sub(delivered), "offsets", time.Since(stored), "batch", c.describe(b))
	}
	views := *c.p.tasks.Load()
	for _, tb := range b.tasks {
		if v := views[tb.partition]; v != nil && tb.nextOffset > v.readUpTo.Load() {
			v.readUpTo.Store(tb.nextOffset)
		}
	}
	if len(updates) > 0 {
		c.p.cfg.OnCommit(updates)
	}
	c.publishWindows(b.tasks)
}
