package processor

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/abacus-streams/abacus/internal/abacus"
	"github.com/abacus-streams/abacus/internal/store"
	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
)

// A commit is step 2 of the state protocol. The session loop hands the
// write buffers of every task over as one batch to the session's committer
// goroutine and goes on counting into fresh buffers; the committer sends
// the batch's counts to the changelog and the output topic, waits for them
// (at_least_once) or commits them with the input offsets in one
// transaction (exactly_once_v2), writes each task's counts and checkpoint
// to Badger, and (at_least_once) commits the input offsets. One batch is in
// flight at a time, in order. With the record cache off every update was
// sent as it was counted, so the loop waits for its batch instead.

// taskBatch is one task's part of a batch.
type taskBatch struct {
	partition  int32
	counts     map[string]int64
	nextOffset int64 // -1: no input processed since the previous batch
	rewindTo   int64
	// changelogBase is where the task's own changelog records begin
	// (at_least_once; -1: not checked): see foreignChangelogRecords.
	changelogBase int64
}

// commitBatch is the work of one commit.
type commitBatch struct {
	ctx   context.Context
	tasks []taskBatch
	// dlq holds dead letters to send (record cache on: only the committer
	// produces, so it is the one to open transactions).
	dlq []*kafka.Message
	// send: produce the counts (record cache on); off, they were sent already.
	send     bool
	oldestTS time.Time
	done     chan struct{}
	// Set by the committer before done closes.
	aborted bool
	err     error
	// owed: the batch is stored but the group refused its input offsets
	// while it rebalanced (at_least_once); the tasks owe them.
	owed bool
}

// committer runs batches in order until its channel closes.
func (s *session) committer(batches <-chan *commitBatch) {
	defer close(s.committerDone)
	for b := range batches {
		b.aborted, b.err = s.runBatch(b)
		close(b.done)
	}
}

// handOff starts a commit of everything counted since the previous one, if
// anything was. The caller must have no batch in flight.
func (s *session) handOff(ctx context.Context) {
	if s.err != nil {
		// The session is failing: the buffers may hold counts of a batch
		// that failed, and must not commit (see runSession).
		return
	}
	s.lastCommit = time.Now()
	b := &commitBatch{ctx: ctx, send: s.p.cfg.CacheMaxBytes > 0, oldestTS: s.oldestTS, dlq: s.pendingDLQ, done: make(chan struct{})}
	for _, t := range s.tasks {
		if t.nextOffset >= 0 || len(t.dirty) > 0 || t.owed >= 0 {
			b.tasks = append(b.tasks, t.handOff())
		}
	}
	if len(b.tasks) == 0 && len(b.dlq) == 0 {
		return
	}
	s.pendingDLQ, s.cacheBytes, s.oldestTS = nil, 0, time.Time{}
	s.inflight = b
	if s.log.Enabled(ctx, slog.LevelDebug) {
		s.log.Debug("batch handed off", "batch", s.describe(b))
	}
	s.batches <- b
}

// checkInflight handles a finished batch, if one is; it reports whether
// none is in flight any more.
func (s *session) checkInflight() (bool, error) {
	if s.inflight == nil {
		return true, nil
	}
	select {
	case <-s.inflight.done:
		return true, s.finish()
	default:
		return false, nil
	}
}

// awaitInflight waits for the batch in flight, beating the heartbeat: the
// loop is waiting on the broker, not stuck.
func (s *session) awaitInflight() error {
	if s.inflight == nil {
		return nil
	}
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-s.inflight.done:
			return s.finish()
		case <-tick.C:
			s.p.beat()
		}
	}
}

// finish applies a finished batch to the tasks.
func (s *session) finish() error {
	b := s.inflight
	s.inflight = nil
	if b.err != nil {
		s.log.Info("batch failed: nothing of it is stored", "batch", s.describe(b), "error", b.err)
		return b.err
	}
	if b.aborted {
		s.log.Info("batch aborted: rewinding", "batch", s.describe(b))
		s.rewind(b)
		return nil
	}
	// The batch's counts are in Badger now, and may leave the read cache.
	s.snap.Refresh()
	// Every task owing offsets was in the batch (handOff), so the tasks
	// owe offsets now exactly when this batch's were refused.
	s.owing = b.owed
	// The read caches of all tasks share the record cache's budget.
	budget := s.p.cfg.CacheMaxBytes / int64(max(1, len(s.tasks)))
	for _, tb := range b.tasks {
		if t, ok := s.tasks[tb.partition]; ok {
			t.durable(tb, budget, b.owed)
		}
	}
	return nil
}

// describe sums a batch up for the log, task by task: partition, input
// offset to commit, counts, and the last changelog offset delivered, the
// trail to follow when a count comes out wrong.
func (s *session) describe(b *commitBatch) string {
	var sb strings.Builder
	for i, tb := range b.tasks {
		if i > 0 {
			sb.WriteByte(' ')
		}
		cp, _ := s.delivered.lastChangelogOffset(tb.partition)
		fmt.Fprintf(&sb, "%d:offset=%d,counts=%d,changelog=%d", tb.partition, tb.nextOffset, len(tb.counts), cp)
	}
	return sb.String()
}

// commitSync commits everything counted so far and waits for it: before a
// revocation and at shutdown.
func (s *session) commitSync(ctx context.Context) error {
	if err := s.awaitInflight(); err != nil {
		return err
	}
	s.handOff(ctx)
	return s.awaitInflight()
}

// runBatch is the committer's half of a commit.
func (s *session) runBatch(b *commitBatch) (aborted bool, err error) {
	ctx := b.ctx
	began := time.Now()
	if s.eos {
		// Each task with counts writes its changelog partition in this
		// transaction (sent now, or as counted with the cache off), so
		// the transaction's end puts a marker there.
		for _, tb := range b.tasks {
			if len(tb.counts) > 0 {
				s.delivered.sentInTxn(tb.partition)
			}
		}
	}
	for _, m := range b.dlq {
		if err := s.produce(m); err != nil {
			return false, err
		}
	}
	// At least once with the record cache, each task's counts go to
	// Badger as soon as its own records are delivered (storeEach);
	// otherwise all are sent, delivered or committed, then stored.
	pipelined := b.send && !s.eos && s.outputPartitions > 0
	var produced, delivered time.Time
	if pipelined {
		var err error
		if produced, delivered, err = s.storeEach(ctx, b.tasks); err != nil {
			return false, err
		}
	} else if b.send {
		if err := s.sendAll(b.tasks, nil); err != nil {
			return false, err
		}
	}
	if !pipelined {
		produced = time.Now()
	}
	var offsets []kafka.TopicPartition
	for _, tb := range b.tasks {
		if tb.nextOffset >= 0 {
			offsets = append(offsets, kafka.TopicPartition{Topic: &s.input, Partition: tb.partition, Offset: kafka.Offset(tb.nextOffset)})
		}
	}
	if s.eos {
		if aborted, err := s.commitTransaction(ctx, b.tasks, offsets); err != nil || aborted {
			return aborted, err
		}
	}
	// Every send, dead letters too, before the input offsets.
	if err := s.delivered.wait(ctx, s.p.beat); err != nil {
		return false, fmt.Errorf("wait for changelog and output deliveries: %w", err)
	}
	if !pipelined {
		delivered = time.Now()
		if err := s.storeAll(b.tasks); err != nil {
			return false, err
		}
	}
	var updates []abacus.Update
	if s.p.cfg.OnCommit != nil {
		for _, tb := range b.tasks {
			cp, _ := s.delivered.lastChangelogOffset(tb.partition)
			for k, v := range tb.counts {
				updates = append(updates, abacus.Update{Key: k, Value: v, Partition: tb.partition, Offset: cp})
			}
		}
	}
	stored := time.Now()
	if !s.eos && len(offsets) > 0 {
		if err := s.commitOffsets(offsets); err != nil {
			if !rebalancing(err) {
				return false, fmt.Errorf("commit input offsets: %w", err)
			}
			// The counts are stored, the consumer is past their records:
			// only the group's record of the offsets is behind. They go
			// again with the next batch, in the new generation.
			b.owed = true
			s.p.metrics.commitsDeferred.Inc()
			s.log.Info("input offsets not committed while the group rebalances: committing them in the new generation",
				"batch", s.describe(b), "error", err)
		}
	}
	if !b.oldestTS.IsZero() {
		s.p.metrics.e2eSeconds.Observe(time.Since(b.oldestTS).Seconds())
	}
	s.p.metrics.commits.Inc()
	s.p.metrics.commitSeconds.Observe(time.Since(began).Seconds())
	if s.log.Enabled(ctx, slog.LevelDebug) {
		keys := 0
		for _, tb := range b.tasks {
			keys += len(tb.counts)
		}
		s.log.Debug("committed", "tasks", len(b.tasks), "keys", keys,
			"produce", produced.Sub(began), "deliver", delivered.Sub(produced),
			"store", stored.Sub(delivered), "offsets", time.Since(stored), "batch", s.describe(b))
	}
	if len(updates) > 0 {
		s.p.cfg.OnCommit(updates)
	}
	return false, nil
}

// storeWorkers bounds the tasks whose counts are written to Badger at
// once: building a transaction is most of a write, and Badger's one
// writer goroutine takes the transactions of several tasks together.
const storeWorkers = 4

// storeAll writes each task's counts with the changelog offset of its
// last delivered count as the checkpoint, several tasks at once.
func (s *session) storeAll(tasks []taskBatch) error {
	work, wait := s.startStores(len(tasks))
	for _, tb := range tasks {
		work <- tb
	}
	close(work)
	return wait()
}

// storeEach sends a batch and writes each task's counts and checkpoint
// to Badger as soon as that task's own changelog and output records are
// delivered, while the later tasks' are still being sent: the store
// overlaps the sends instead of following them all (at_least_once; the
// order within a task is the state protocol's). It returns when the
// last task is stored, with the times the sends were all handed over and
// the last task's deliveries came in.
func (s *session) storeEach(ctx context.Context, tasks []taskBatch) (produced, delivered time.Time, err error) {
	progress := &sendProgress{
		marks:     make([]sentMark, len(tasks)),
		changelog: make(chan int, len(tasks)),
		output:    make(chan int, len(tasks)),
	}
	sent := make(chan error, 1)
	var sentAt time.Time
	go func() {
		err := s.sendAll(tasks, progress)
		sentAt = time.Now()
		sent <- err
	}()
	sending := sent
	work, wait := s.startStores(len(tasks))
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
			if err := s.delivered.waitMark(ctx, s.p.beat, progress.marks[i]); err != nil {
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
	return sentAt, delivered, err
}

// startStores starts up to storeWorkers goroutines that store the tasks
// put on work (those with counts) until it is closed; wait waits for them
// and returns their first errors. A worker stores nothing after its
// first failure.
func (s *session) startStores(tasks int) (work chan<- taskBatch, wait func() error) {
	ch := make(chan taskBatch)
	workers := min(storeWorkers, tasks)
	errs := make(chan error, workers)
	for range workers {
		go func() {
			var first error
			for tb := range ch {
				if first == nil && len(tb.counts) > 0 {
					first = s.storeTask(tb)
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
func (s *session) storeTask(tb taskBatch) error {
	cp, ok := s.delivered.lastChangelogOffset(tb.partition)
	if !ok {
		return fmt.Errorf("task %d has %d counts to commit but no changelog delivery", tb.partition, len(tb.counts))
	}
	if tb.changelogBase >= 0 && !s.eos { // exactly_once_v2 checked before the commit
		// The store and its checkpoint stay as they were: the session
		// ends, nothing of the batch is committed, and the task restores
		// from its checkpoint, the other writer's records included.
		if err := s.delivered.foreignChangelogRecords(tb.partition, tb.changelogBase); err != nil {
			s.log.Warn("not storing a task whose changelog another member wrote to meanwhile", "task", tb.partition, "error", err)
			s.p.metrics.otherWriter.Inc()
			return err
		}
	}
	if err := s.p.db.Partition(tb.partition).Commit(store.Batch{Counts: tb.counts, Checkpoint: cp}); err != nil {
		return err
	}
	if t, ok := s.views()[tb.partition]; ok {
		t.checkpoint.Store(cp)
	}
	return nil
}

// views is the readers' task table (safe from the committer).
func (s *session) views() map[int32]*taskView { return *s.p.tasks.Load() }

// commitTransaction puts the input offsets in the open transaction and
// commits it. A transaction that must be aborted is aborted (aborted =
// true); an error ends the session.
func (s *session) commitTransaction(ctx context.Context, tasks []taskBatch, offsets []kafka.TopicPartition) (aborted bool, err error) {
	if len(offsets) > 0 {
		if err := s.beginTxn(); err != nil {
			return false, err
		}
		if s.consumer.AssignmentLost() {
			return s.abortLost("send offsets to transaction")
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
	// CommitTransaction would first wait for the transaction's records,
	// which can take long (a broker cut): the assignment can be lost
	// meanwhile. So wait here, and look at the assignment once they are in.
	if err := s.delivered.wait(ctx, s.p.beat); err != nil {
		_ = s.abortTxn("delivery failed")
		return false, fmt.Errorf("wait for changelog and output deliveries: %w", err)
	}
	if len(offsets) > 0 && s.consumer.AssignmentLost() {
		return s.abortLost("commit transaction")
	}
	// The broker fences a previous owner by the group's generation; should
	// that ever fail (a member that does not know it was replaced, a
	// broker's bug), its records would land among this transaction's and
	// both would commit. So each task's changelog records must follow its
	// own since its restore (another producer's markers alone do no harm:
	// foreignMarkersOnly): else abort, and the session ends and restores.
	for _, tb := range tasks {
		if tb.changelogBase < 0 || len(tb.counts) == 0 {
			continue
		}
		if err := s.delivered.foreignChangelogRecords(tb.partition, tb.changelogBase); err != nil && !s.foreignMarkersOnly(ctx, err) {
			s.log.Warn("not committing a task whose changelog another member wrote to meanwhile", "task", tb.partition, "error", err)
			s.p.metrics.otherWriter.Inc()
			if aerr := s.abortTxn("another writer on the changelog"); aerr != nil {
				// The session ends either way; its next producer's
				// initialisation fences and aborts what is left open.
				s.log.Warn("abort failed", "error", aerr)
			}
			return false, err
		}
	}
	if err := retryTxn(ctx, s.p.beat, func() error { return s.producer.CommitTransaction(ctx) }); err != nil {
		return s.txnFailed("commit transaction", err)
	}
	s.refusedSince = time.Time{}
	s.inTxn = false
	s.delivered.txnEnded()
	return false, nil
}

// abortLost aborts a transaction whose member lost its assignment while
// the transaction was open (the group expired it: a broker cut, a stall).
// Its partitions may have a new owner already, and the offsets must not
// commit: once librdkafka has reset the member's id and generation, the
// group metadata it gives for the offsets carries generation -1, which the
// broker accepts without fencing (the pre-KIP-447 form), so nothing else
// would stop this zombie's counts from landing among the new owner's. The
// work is redone by whoever owns the partitions next.
func (s *session) abortLost(during string) (bool, error) {
	s.log.Warn("assignment lost with a transaction open: aborting it, its records are redone by the partitions' next owner", "during", during)
	if err := s.abortTxn("assignment lost"); err != nil {
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
func (s *session) txnFailed(what string, err error) (bool, error) {
	var kerr kafka.Error
	if rebalancing(err) {
		if s.refusedSince.IsZero() {
			s.refusedSince = time.Now()
		}
		if time.Since(s.refusedSince) < s.membership.sessionTimeout {
			s.p.metrics.commitsDeferred.Inc()
			s.log.Info("transaction aborted: the group refused its offsets while rebalancing; its records are redone", "during", what, "error", err)
			if err := s.abortTxn(what); err != nil {
				return false, err
			}
			return true, nil
		}
		_ = s.abortTxn(what)
		return false, fmt.Errorf("%s: the group refused the offsets for %s: %w", what, s.membership.sessionTimeout, err)
	}
	if errors.As(err, &kerr) && taskMigrated(kerr.Code()) {
		_ = s.abortTxn(what)
		return false, fmt.Errorf("%s: tasks migrated to another member: %w", what, err)
	}
	if errors.As(err, &kerr) && kerr.TxnRequiresAbort() {
		s.log.Warn("transaction aborted; its records are redone", "during", what, "error", err)
		if err := s.abortTxn(what); err != nil {
			return false, err
		}
		return true, nil
	}
	return false, fmt.Errorf("%s: %w", what, err)
}

// abortTxn aborts the open transaction, if any.
func (s *session) abortTxn(reason string) error {
	if !s.inTxn {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s.inTxn = false
	s.p.metrics.aborts.Inc()
	if err := s.producer.AbortTransaction(ctx); err != nil {
		return fmt.Errorf("abort transaction (%s): %w", reason, err)
	}
	s.delivered.txnEnded()
	return nil
}

// rewind drops every task's uncommitted work after an aborted batch: each
// task's consumer position goes back to its first record not committed.
// Badger never saw that work.
func (s *session) rewind(aborted *commitBatch) {
	from := map[int32]int64{}
	if aborted != nil {
		for _, tb := range aborted.tasks {
			if tb.nextOffset >= 0 {
				from[tb.partition] = tb.rewindTo
			}
		}
	}
	for p, t := range s.tasks {
		if _, ok := from[p]; !ok && t.nextOffset >= 0 {
			from[p] = t.rewindTo
		}
		t.reset()
	}
	for p, off := range from {
		t, ok := s.tasks[p]
		if !ok || !t.active.Load() || s.err != nil {
			continue
		}
		if err := s.seek(p, kafka.Offset(off), nil); err != nil {
			s.err = fmt.Errorf("rewind task %d after abort: %w", p, err)
		}
		t.position = off
	}
	s.pendingDLQ, s.cacheBytes, s.oldestTS = nil, 0, time.Time{}
}

// commitOffsets commits input offsets to the group and returns the first
// error, of the request or of a partition.
func (s *session) commitOffsets(offsets []kafka.TopicPartition) error {
	tps, err := s.consumer.CommitOffsets(offsets)
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

// taskMigrated reports the errors that mean this member lost its place in
// the group: its transaction's offsets cannot commit until it rejoins.
func taskMigrated(code kafka.ErrorCode) bool {
	switch code {
	case kafka.ErrUnknownMemberID, kafka.ErrFencedInstanceID:
		return true
	}
	return false
}
