package processor

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
)

// commitExactlyOnce is the committer's half of a commit under
// exactly_once_v2: the batch's dead letters, its changelog and output
// records (sent now with the record cache on, else by the loop as it
// counted) and the input offsets commit in one Kafka transaction, and
// Badger is written only once it has. An aborted transaction comes back as
// such, and the loop rewinds its tasks to redo the records.
func (c *committer) commitExactlyOnce(b *commitBatch) batchOutcome {
	began := time.Now()
	// Each task with counts writes its changelog partition in this
	// transaction, so the transaction's end puts a marker there.
	for _, tb := range b.tasks {
		if len(tb.counts) > 0 {
			c.delivered.SentInTxn(tb.partition)
		}
	}
	if err := c.sendDeadLetters(b.dlq); err != nil {
		return batchOutcome{err: err}
	}
	if c.sendsCounts {
		if err := c.sendAll(b.tasks, nil); err != nil {
			return batchOutcome{err: err}
		}
	}
	if err := c.sendWindowed(b.tasks); err != nil {
		return batchOutcome{err: err}
	}
	produced := time.Now()
	if aborted, err := c.commitTransaction(b.ctx, b.tasks, c.inputOffsets(b.tasks)); err != nil || aborted {
		return batchOutcome{aborted: aborted, err: err}
	}
	if err := c.delivered.Wait(b.ctx, c.p.beat); err != nil {
		return batchOutcome{err: fmt.Errorf("wait for changelog and output deliveries: %w", err)}
	}
	delivered := time.Now()
	if err := c.storeAll(b.tasks); err != nil {
		return batchOutcome{err: err}
	}
	updates := c.updates(b.tasks)
	c.committed(b, updates, began, produced, delivered, time.Now())
	return batchOutcome{}
}

// commitTransaction puts the input offsets in the open transaction and
// commits it. A transaction that must be aborted is aborted (aborted =
// true); an error ends the session.
func (c *committer) commitTransaction(ctx context.Context, tasks []taskBatch, offsets []kafka.TopicPartition) (aborted bool, err error) {
	if len(offsets) > 0 {
		if err := c.beginTxn(); err != nil {
			return false, err
		}
		if c.group.AssignmentLost() {
			return c.abortLost("send offsets to transaction")
		}
		md, err := c.group.GetConsumerGroupMetadata()
		if err != nil {
			return false, fmt.Errorf("read consumer group metadata: %w", err)
		}
		if err := retryTxn(ctx, c.p.beat, func() error { return c.producer.SendOffsetsToTransaction(ctx, offsets, md) }); err != nil {
			return c.txnFailed("send offsets to transaction", err)
		}
	}
	if !c.inTxn {
		return false, nil
	}
	// CommitTransaction would first wait for the transaction's records,
	// which can take long (a broker cut): the assignment can be lost
	// meanwhile. So wait here, and look at the assignment once they are in.
	if err := c.delivered.Wait(ctx, c.p.beat); err != nil {
		_ = c.abortTxn("delivery failed")
		return false, fmt.Errorf("wait for changelog and output deliveries: %w", err)
	}
	if len(offsets) > 0 && c.group.AssignmentLost() {
		return c.abortLost("commit transaction")
	}
	if err := c.checkOwnChangelogs(ctx, tasks); err != nil {
		return false, err
	}
	if err := retryTxn(ctx, c.p.beat, func() error { return c.producer.CommitTransaction(ctx) }); err != nil {
		return c.txnFailed("commit transaction", err)
	}
	c.refusedSince = time.Time{}
	c.inTxn = false
	c.delivered.TxnEnded()
	return false, nil
}

// checkOwnChangelogs aborts the open transaction unless each task's
// changelog records follow its own since its restore. The broker fences a
// previous owner by the group's generation; should that ever fail (a
// member that does not know it was replaced, a broker's bug), its records
// would land among this transaction's and both would commit. Another
// producer's markers alone do no harm (foreignMarkersOnly). After an
// abort here the session ends and the task restores
// (e2e TestNoCommitOverAnotherWritersChangelogRecordExactlyOnce,
// TestAnotherProducersMarkerAloneIsNoOtherWriterExactlyOnce).
func (c *committer) checkOwnChangelogs(ctx context.Context, tasks []taskBatch) error {
	for _, tb := range tasks {
		if tb.changelogBase < 0 || len(tb.counts) == 0 {
			continue
		}
		if err := c.delivered.ForeignChangelogRecords(tb.partition, tb.changelogBase); err != nil && !c.foreignMarkersOnly(ctx, err) {
			c.log.Warn("not committing a task whose changelog another member wrote to meanwhile", "task", tb.partition, "error", err)
			c.p.metrics.otherWriter.Inc()
			if aerr := c.abortTxn("another writer on the changelog"); aerr != nil {
				// The session ends either way; its next producer's
				// initialisation fences and aborts what is left open.
				c.log.Warn("abort failed", "error", aerr)
			}
			return err
		}
	}
	return nil
}

// abortLost aborts a transaction whose member lost its assignment while
// the transaction was open (the group expired it: a broker cut, a stall).
// Its partitions may have a new owner already, and the offsets must not
// commit: once librdkafka has reset the member's id and generation, the
// group metadata it gives for the offsets carries generation -1, which the
// broker accepts without fencing (the pre-KIP-447 form), so nothing else
// would stop this zombie's counts from landing among the new owner's. The
// work is redone by whoever owns the partitions next.
func (c *committer) abortLost(during string) (bool, error) {
	c.log.Warn("assignment lost with a transaction open: aborting it, its records are redone by the partitions' next owner", "during", during)
	if err := c.abortTxn("assignment lost"); err != nil {
		return false, err
	}
	return true, nil
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
// Offsets the group refused while it rebalances abort the transaction
// and the work is redone in place: the member keeps the partitions it
// keeps, and commits them in the new generation. A member the group no
// longer knows (its tasks migrated, as Kafka Streams says) must not abort
// and redo: that loops forever on tasks another member now owns. It
// aborts and ends the session, and the next session rejoins; so does a
// member whose offsets the group keeps refusing for a whole session
// timeout.
func (c *committer) txnFailed(what string, err error) (bool, error) {
	var kerr kafka.Error
	if rebalancing(err) {
		if c.refusedSince.IsZero() {
			c.refusedSince = time.Now()
		}
		if time.Since(c.refusedSince) < c.sessionTimeout {
			c.p.metrics.commitsDeferred.Inc()
			c.log.Info("transaction aborted: the group refused its offsets while rebalancing; its records are redone", "during", what, "error", err)
			if err := c.abortTxn(what); err != nil {
				return false, err
			}
			return true, nil
		}
		_ = c.abortTxn(what)
		return false, fmt.Errorf("%s: the group refused the offsets for %s: %w", what, c.sessionTimeout, err)
	}
	if errors.As(err, &kerr) && taskMigrated(kerr.Code()) {
		_ = c.abortTxn(what)
		return false, fmt.Errorf("%s: tasks migrated to another member: %w", what, err)
	}
	if errors.As(err, &kerr) && kerr.TxnRequiresAbort() {
		c.log.Warn("transaction aborted; its records are redone", "during", what, "error", err)
		if err := c.abortTxn(what); err != nil {
			return false, err
		}
		return true, nil
	}
	return false, fmt.Errorf("%s: %w", what, err)
}

// taskMigrated reports the errors that mean this member lost its place in
// the group: its transaction's offsets cannot commit until it rejoins.
func taskMigrated(code kafka.ErrorCode) bool {
	switch code {
	case kafka.ErrUnknownMemberID, kafka.ErrFencedInstanceID:
		return true
	}
	return false
}
