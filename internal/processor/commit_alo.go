package processor

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/abacus-streams/abacus/internal/processor/delivery"
	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
)

// commitAtLeastOnce is the committer's half of a commit under
// at_least_once: send the batch's dead letters and counts, write each
// task's counts with its checkpoint to Badger once its changelog and output
// records are delivered, then commit the input offsets. A crash before the
// offsets commit redoes the batch's records: their counts go to the
// changelog again, and a restore keeps the larger of two counts.
func (c *committer) commitAtLeastOnce(b *commitBatch) batchOutcome {
	began := time.Now()
	if err := c.sendDeadLetters(b.dlq); err != nil {
		return batchOutcome{err: err}
	}
	if err := c.sendWindowed(b.tasks); err != nil {
		return batchOutcome{err: err}
	}
	produced, delivered, err := c.storeBatch(b.ctx, b.tasks)
	if err != nil {
		return batchOutcome{err: err}
	}
	updates := c.updates(b.tasks)
	stored := time.Now()
	var out batchOutcome
	if offsets := c.inputOffsets(b.tasks); len(offsets) > 0 {
		if err := c.commitOffsets(offsets); err != nil {
			if !rebalancing(err) {
				return batchOutcome{err: fmt.Errorf("commit input offsets: %w", err)}
			}
			// The counts are stored, the consumer is past their records:
			// only the group's record of the offsets is behind. They go
			// again with the next batch, in the new generation.
			out.owed = true
			c.p.metrics.commitsDeferred.Inc()
			c.log.Info("input offsets not committed while the group rebalances: committing them in the new generation",
				"batch", c.describe(b), "error", err)
		}
	}
	c.committed(b, updates, began, produced, delivered, stored)
	return out
}

// storeWhenDelivered stores a batch whose counts the loop sent as it
// counted them (the record cache off): once every send is delivered.
func (c *committer) storeWhenDelivered(ctx context.Context, tasks []taskBatch) (produced, delivered time.Time, err error) {
	produced = time.Now()
	if err := c.delivered.Wait(ctx, c.p.beat); err != nil {
		return produced, produced, fmt.Errorf("wait for changelog and output deliveries: %w", err)
	}
	delivered = time.Now()
	return produced, delivered, c.storeAll(tasks)
}

// sendThenStore sends a batch, waits for every delivery, then stores it:
// at_least_once with the record cache on, when the output topic's
// partitions are not known (placeOutput).
func (c *committer) sendThenStore(ctx context.Context, tasks []taskBatch) (produced, delivered time.Time, err error) {
	if err := c.sendAll(tasks, nil); err != nil {
		return time.Time{}, time.Time{}, err
	}
	return c.storeWhenDelivered(ctx, tasks)
}

// storeEach sends a batch and writes each task's counts and checkpoint
// to Badger as soon as that task's own changelog and output records are
// delivered, while the later tasks' are still being sent: the store
// overlaps the sends instead of following them all (the order within a
// task is the state protocol's). It returns when the last task is stored
// and every send, dead letters too, is delivered, with the times the sends
// were all handed over and the last task's deliveries came in.
func (c *committer) storeEach(ctx context.Context, tasks []taskBatch) (produced, delivered time.Time, err error) {
	progress := &sendProgress{
		marks:     make([]delivery.Mark, len(tasks)),
		changelog: make(chan int, len(tasks)),
		output:    make(chan int, len(tasks)),
	}
	sent := make(chan error, 1)
	var sentAt time.Time
	go func() {
		err := c.sendAll(tasks, progress)
		sentAt = time.Now()
		sent <- err
	}()
	sending := sent
	work, wait := c.startStores(len(tasks))
	err = func() error {
		for i := range tasks {
			// Each goroutine reports task i (tasks in order) before it ends.
			for _, reports := range []chan int{progress.changelog, progress.output} {
				select {
				case <-reports:
				case err := <-sending:
					sending = nil
					if err != nil {
						return err
					}
					<-reports // it ended well: every report is in the buffer
				}
			}
			if err := c.delivered.WaitMark(ctx, c.p.beat, progress.marks[i]); err != nil {
				return fmt.Errorf("wait for changelog and output deliveries: %w", err)
			}
			work <- tasks[i]
		}
		return nil
	}()
	delivered = time.Now()
	close(work)
	err = errors.Join(err, wait())
	if sending != nil {
		// The senders use the producer: never leave them behind.
		err = errors.Join(err, <-sending)
	}
	if err == nil {
		if werr := c.delivered.Wait(ctx, c.p.beat); werr != nil {
			err = fmt.Errorf("wait for changelog and output deliveries: %w", werr)
		}
	}
	return sentAt, delivered, err
}

// commitOffsets commits input offsets to the group and returns the first
// error, of the request or of a partition.
func (c *committer) commitOffsets(offsets []kafka.TopicPartition) error {
	tps, err := c.group.CommitOffsets(offsets)
	if err != nil {
		return err
	}
	for _, tp := range tps {
		if tp.Error != nil {
			return fmt.Errorf("partition %d: %w", tp.Partition, tp.Error)
		}
	}
	return nil
}

// rebalancing reports the errors of a commit that the group refused
// because it is rebalancing: a generation this member has not joined yet
// (ILLEGAL_GENERATION; librdkafka ignores it while it rejoins, and
// declares the assignment lost through the rebalance callback otherwise)
// or a rebalance waiting for its assignment (REBALANCE_IN_PROGRESS). A
// cooperative rebalance lets the member keep processing the partitions it
// keeps, and their offsets commit in the new generation, as Kafka's own
// consumer does (KIP-429).
func rebalancing(err error) bool {
	var kerr kafka.Error
	if !errors.As(err, &kerr) {
		return false
	}
	switch kerr.Code() {
	case kafka.ErrIllegalGeneration, kafka.ErrRebalanceInProgress:
		return true
	}
	return false
}
