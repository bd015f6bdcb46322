package processor

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"github.com/abacus-streams/abacus/internal/kafkaconf"
	"github.com/abacus-streams/abacus/internal/processor/delivery"
	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
)

// committer is the goroutine of a session that runs commits, one batch at
// a time, in the order the loop hands them over. It owns the producer and
// what goes with it: the open transaction, the placement of output records,
// the per-partition counts of sends, and the Badger writes of each batch.
//
// Ownership passes by the batch channel: while a batch is in flight only
// the committer goroutine uses these fields; between batches (after the
// loop took the outcome back from done) only the loop does, to send counts
// as it counts them with the record cache off, to abort a transaction when
// it drops its work, and to close the producer. The loop never hands a
// batch over while it sends itself: with the record cache off it waits for
// every batch (commitIfDue). Two calls are safe from the loop at any time,
// since librdkafka's are: purge (which fails the batch in flight on its
// purged sends) and the delivery tracker's, which has a lock of its own.
type committer struct {
	p   *Processor
	log *slog.Logger
	// ctx is the session's batch context (see session.batchCtx).
	ctx       context.Context
	producer  *kafka.Producer
	delivered *delivery.Tracker
	// group is the consumer, as far as a commit needs it; set by the loop
	// before its first batch.
	group                    group
	input, changelog, output string
	eos                      bool
	sessionTimeout           time.Duration

	inTxn        bool
	refusedSince time.Time // first of the transactions aborted in a row because the group rebalanced
	// outputPartitions is the output topic's partition count when the
	// committer places output records itself (at_least_once with the
	// record cache: see storeEach), else 0 and the producer's partitioner
	// places them. sentChangelog and sentOutput count the records handed
	// to the producer per partition, by sendAll's two sending goroutines
	// (one each).
	outputPartitions int32
	sentChangelog    map[int32]int64
	sentOutput       []int64

	// commit is the commit function of the session's guarantee
	// (commitAtLeastOnce or commitExactlyOnce), and storeBatch the way
	// at_least_once sends and stores a batch (storeEach, sendThenStore or
	// storeWhenDelivered); both chosen once, by newCommitter.
	commit     func(*commitBatch) batchOutcome
	storeBatch func(ctx context.Context, tasks []taskBatch) (produced, delivered time.Time, err error)
	// sendsCounts: the batch's counts are sent by the committer (the record
	// cache is on); off, the loop sent each as it counted it.
	sendsCounts bool

	batches chan *commitBatch
	done    chan struct{}
}

// group is what a commit asks of the session's consumer. librdkafka's
// consumer takes these calls from any goroutine.
type group interface {
	AssignmentLost() bool
	GetConsumerGroupMetadata() (*kafka.ConsumerGroupMetadata, error)
	CommitOffsets(offsets []kafka.TopicPartition) ([]kafka.TopicPartition, error)
}

// committerConfig is what a session gives its committer.
type committerConfig struct {
	ctx            context.Context
	eos            bool
	sessionTimeout time.Duration
}

// newCommitter creates the session's producer and its delivery tracker,
// chooses the commit function of the guarantee, and starts the committer
// goroutine; stop and close end them.
func (p *Processor) newCommitter(cc committerConfig) (*committer, error) {
	producer, err := kafkaconf.NewProducer(kafkaconf.Producer(p.cfg.Config), p.log, kafkaconf.RoleProducer)
	if err != nil {
		return nil, fatalf("create producer: %w", err)
	}
	c := &committer{
		p: p, log: p.log, ctx: cc.ctx, producer: producer,
		input: p.cfg.InputTopic, changelog: p.cfg.ChangelogTopic(), output: p.cfg.OutputTopic,
		eos: cc.eos, sessionTimeout: cc.sessionTimeout,
		sendsCounts: p.cfg.CacheMaxBytes > 0,
		batches:     make(chan *commitBatch, 1), done: make(chan struct{}),
	}
	var windowChangelogs []string
	for _, w := range p.windowed {
		windowChangelogs = append(windowChangelogs, w.changelog)
	}
	c.delivered = delivery.New(c.changelog, c.output, windowChangelogs, producer.Events(), func(ev kafka.Event) {
		switch e := ev.(type) {
		case kafka.Error:
			p.metrics.kafkaErrors.Inc()
			c.log.Debug("producer error", "error", e)
		case *kafka.Stats:
			p.metrics.observeProducer(parseStats(e.String()))
		case *kafka.Message:
			p.metrics.producer.errors.Inc()
		}
	})
	switch {
	case c.eos:
		c.commit = c.commitExactlyOnce
	case !c.sendsCounts:
		c.commit, c.storeBatch = c.commitAtLeastOnce, c.storeWhenDelivered
	case len(p.windowed) == 0 && c.placeOutput():
		// A task is stored once its own records are delivered; with
		// windowed stores, whose records that account does not cover,
		// every batch waits for all its deliveries.
		c.commit, c.storeBatch = c.commitAtLeastOnce, c.storeEach
	default:
		c.commit, c.storeBatch = c.commitAtLeastOnce, c.sendThenStore
	}
	go c.run()
	return c, nil
}

// run commits batches in order until the channel closes.
func (c *committer) run() {
	defer close(c.done)
	for b := range c.batches {
		b.outcome = c.commit(b)
		close(b.done)
	}
}

// stop ends the committer goroutine once the batch in flight, if any, is
// done; from then on the loop alone uses the producer.
func (c *committer) stop() {
	close(c.batches)
	<-c.done
}

// close aborts an open transaction and closes the producer and the
// delivery tracker; after stop, and after the consumer closed (its last
// revocation may still abort through the committer).
func (c *committer) close() {
	_ = c.abortTxn("session closing")
	c.producer.Close()
	c.delivered.Close()
}

// placeOutput makes the committer place output records itself, with the
// configured partitioner over the output topic's partitions (what the
// producer's partitioner would do), if it can read their number, and
// reports whether it can; else the producer places them and commits wait
// for all deliveries at once.
func (c *committer) placeOutput() bool {
	md, err := c.producer.GetMetadata(&c.output, false, 5000)
	if err != nil {
		c.log.Debug("output partitions not known: commits wait for all deliveries at once", "topic", c.output, "error", err)
		return false
	}
	t, ok := md.Topics[c.output]
	if !ok || t.Error.Code() != kafka.ErrNoError || len(t.Partitions) == 0 {
		c.log.Debug("output partitions not known: commits wait for all deliveries at once", "topic", c.output)
		return false
	}
	c.outputPartitions = int32(len(t.Partitions))
	c.sentChangelog = map[int32]int64{}
	c.sentOutput = make([]int64, len(t.Partitions))
	return true
}

// send produces a new count to the changelog (the task's own partition)
// and to the output topic (placed by the configured partitioner). The loop
// calls it as it counts, with the record cache off.
func (c *committer) send(partition int32, key []byte, n int64) error {
	value := strconv.AppendInt(nil, n, 10)
	if err := c.produce(&kafka.Message{
		TopicPartition: kafka.TopicPartition{Topic: &c.changelog, Partition: partition},
		Key:            key, Value: value,
	}); err != nil {
		return err
	}
	if err := c.produce(&kafka.Message{
		TopicPartition: kafka.TopicPartition{Topic: &c.output, Partition: kafka.PartitionAny},
		Key:            key, Value: value,
	}); err != nil {
		return err
	}
	c.p.metrics.producedChangelog.Inc()
	c.p.metrics.producedOutput.Inc()
	return nil
}

// produce hands one record to the producer, opening the transaction first
// under exactly_once_v2 and waiting out a full local queue.
func (c *committer) produce(m *kafka.Message) error {
	if err := c.beginTxn(); err != nil {
		return err
	}
	c.delivered.Add(1)
	for {
		err := c.producer.Produce(m, nil)
		if err == nil {
			return nil
		}
		var kerr kafka.Error
		if errors.As(err, &kerr) && kerr.Code() == kafka.ErrQueueFull && c.ctx.Err() == nil {
			// The batch context, not the session's: the last commit of a
			// graceful shutdown waits out a full queue too.
			c.producer.Flush(20)
			continue
		}
		c.delivered.Add(-1)
		return fmt.Errorf("produce to %s: %w", *m.TopicPartition.Topic, err)
	}
}

// beginTxn opens a transaction under exactly_once_v2 if none is open.
func (c *committer) beginTxn() error {
	if !c.eos || c.inTxn {
		return nil
	}
	if err := c.producer.BeginTransaction(); err != nil {
		return fmt.Errorf("begin transaction: %w", err)
	}
	c.inTxn = true
	return nil
}

// abortTxn aborts the open transaction, if any.
func (c *committer) abortTxn(reason string) error {
	if !c.inTxn {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c.inTxn = false
	c.p.metrics.aborts.Inc()
	if err := c.producer.AbortTransaction(ctx); err != nil {
		return fmt.Errorf("abort transaction (%s): %w", reason, err)
	}
	c.delivered.TxnEnded()
	return nil
}

// purge drops the producer's queued and in-flight sends under
// at_least_once, so that nothing a failed session counted lands later,
// behind a newer owner's counts (under exactly_once_v2 the abort does it,
// and the broker fences the transaction). The purged sends report
// failures, which fail any commit waiting on them. Safe from the loop
// while a batch is in flight.
func (c *committer) purge(reason string) {
	if c.eos {
		return
	}
	if err := c.producer.Purge(kafka.PurgeQueue | kafka.PurgeInFlight); err != nil {
		c.log.Warn("purge the producer", "reason", reason, "error", err)
	}
}

// describe sums a batch up for the log, task by task: partition, input
// offset to commit, counts, and the last changelog offset delivered, the
// trail to follow when a count comes out wrong.
func (c *committer) describe(b *commitBatch) string {
	var sb []byte
	for i, tb := range b.tasks {
		if i > 0 {
			sb = append(sb, ' ')
		}
		cp, _ := c.delivered.LastChangelogOffset(tb.partition)
		sb = fmt.Appendf(sb, "%d:offset=%d,counts=%d,changelog=%d", tb.partition, tb.nextOffset, len(tb.counts), cp)
	}
	return string(sb)
}
