package processor

import (
	"context"
	"errors"
	"fmt"
	"github.com/abacus-streams/abacus/internal/kafkaconf"
	"log/slog"
	"slices"
	"strconv"
	"sync"
	"time"
	"unsafe"

	"github.com/abacus-streams/abacus/internal/config"
	"github.com/abacus-streams/abacus/internal/store"
	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
)

// bookkeepEvery: the loop does its bookkeeping once per this many records
// (and whenever a poll brings no record).
const bookkeepEvery = 64

// processSampleEvery: one record in this many has its processing timed.
const processSampleEvery = 64

// cacheEntryOverhead approximates the bytes a cached key costs beyond its
// own bytes (map entry, count), for the record cache's bound.
const cacheEntryOverhead = 64

// session is one life of the consumer and producer. Its loop goroutine owns
// every field; the poller polls for it and hands the rebalance callback
// over to it (poller.go).
type session struct {
	p         *Processor
	ctx       context.Context
	log       *slog.Logger
	consumer  *kafka.Consumer
	producer  *kafka.Producer
	delivered *deliveries
	eos       bool
	input     string
	changelog string
	output    string
	dlq       string

	tasks          map[int32]*task
	lingering      map[int32]time.Time // revoked tasks whose state waits for cleanup
	assigned       bool                // the first assignment arrived
	inTxn          bool                // owned by whoever produces: the committer, or the loop with the cache off
	refusedSince   time.Time           // committer: first of the transactions aborted in a row because the group rebalanced
	owing          bool                // the last batch's offsets were refused: tasks owe them (task.owed)
	cacheBytes     int64
	lastCommit     time.Time
	oldestTS       time.Time // oldest input timestamp since the last commit
	lastLag        time.Time
	lastSpaceCheck time.Time
	sampled        uint64 // records seen, for sampling the process latency
	idle           bool   // the last poll brought nothing
	err            error  // set by the rebalance callback to end the session
	membership     membershipWatch
	poll           *poller
	// closing guards the session against a consumer Close that outlives
	// closeConsumer's wait: its callback then does nothing (abandoned).
	closing   sync.Mutex
	abandoned bool

	// The committer goroutine and the batch in flight.
	batches       chan *commitBatch
	committerDone chan struct{}
	inflight      *commitBatch
	// batchCtx bounds batches; it outlives a shutdown signal so the last
	// commit can finish, and ends when the session closes.
	batchCtx      context.Context
	cancelBatches context.CancelFunc
	// pendingDLQ holds dead letters for the next batch (record cache on).
	pendingDLQ []*kafka.Message
	// outputPartitions is the output topic's partition count when the
	// session places output records itself (at_least_once with the record
	// cache: see storeEach), else 0 and the producer's partitioner places
	// them. sentChangelog and sentOutput count the records handed to the
	// producer per partition, by the committer's two sending goroutines
	// (one each).
	outputPartitions int32
	sentChangelog    map[int32]int64
	sentOutput       []int64
	// snap is the loop's view of the store for counts in none of a task's
	// maps, refreshed whenever the store gains what the maps no longer
	// hold: a finished batch, a finished restore.
	snap *store.Snapshot
}

// runSession runs one session until ctx ends (graceful shutdown, nil) or
// an error the session cannot mend in place.
func (p *Processor) runSession(ctx context.Context) (err error) {
	s := &session{
		p: p, ctx: ctx, log: p.log,
		eos:       p.cfg.ProcessingGuarantee == config.ExactlyOnceV2,
		input:     p.cfg.InputTopic,
		changelog: p.cfg.ChangelogTopic(),
		output:    p.cfg.OutputTopic,
		dlq:       p.cfg.DLQTopic(),
		tasks:     map[int32]*task{},
		lingering: map[int32]time.Time{},
		snap:      p.db.Snapshot(),
	}
	s.producer, err = kafka.NewProducer(kafkaconf.Producer(p.cfg.Config))
	if err != nil {
		return fatalf("create producer: %w", err)
	}
	s.delivered = newDeliveries(s.changelog, s.output, s.producer.Events(), func(e kafka.Error) {
		p.metrics.kafkaErrors.Inc()
		s.log.Debug("producer error", "error", e)
	})
	if !s.eos && p.cfg.CacheMaxBytes > 0 {
		s.placeOutput()
	}
	s.batchCtx, s.cancelBatches = context.WithCancel(context.WithoutCancel(ctx))
	s.batches, s.committerDone = make(chan *commitBatch, 1), make(chan struct{})
	go s.committer(s.batches)
	defer s.close()
	if s.eos {
		initCtx, cancel := context.WithTimeout(ctx, p.cfg.StartupTimeout)
		err := s.producer.InitTransactions(initCtx)
		cancel()
		if err != nil {
			return fmt.Errorf("init transactions as %s: %w", p.cfg.TransactionalID(), err)
		}
	}
	consumerConf := kafkaconf.Consumer(p.cfg.Config)
	s.membership = newMembershipWatch(consumerConf)
	p.setUnconfirmed(false)
	s.consumer, err = kafka.NewConsumer(consumerConf)
	if err != nil {
		return fatalf("create consumer: %w", err)
	}
	if err := s.consumer.SubscribeTopics([]string{s.input}, s.onRebalance); err != nil {
		return fmt.Errorf("subscribe to %s: %w", s.input, err)
	}
	s.poll = newPoller(s.consumer)
	s.poll.start()
	p.setState(StateRebalancing)
	s.lastCommit = time.Now()
	for turn := bookkeepEvery; ; {
		// Bookkeeping (clock reads, task scans) runs every few records
		// and whenever the consumer has nothing, not for every record.
		// A failed session ends before anything else: a commit handed off
		// now would carry counts of the batch that failed (still in the
		// tasks' buffers) past their offsets, and lose them for good.
		if s.err != nil {
			return s.err
		}
		if turn >= bookkeepEvery {
			turn = 0
			p.beat()
			if ctx.Err() != nil {
				return s.shutdown()
			}
			s.checkRestores()
			if err := s.commitIfDue(); err != nil {
				return err
			}
			s.housekeeping()
			if s.err != nil {
				return s.err
			}
		}
		var it pollItem
		select {
		case it = <-s.poll.items:
		case <-ctx.Done():
			turn = bookkeepEvery
			continue
		}
		for _, r := range it.records {
			if s.poll.stale(r) {
				continue // polled before its partition was sought back
			}
			if err := s.process(r.msg); err != nil {
				return err
			}
		}
		turn += len(it.records)
		if len(it.records) > 0 {
			continue
		}
		if it.rebalance != nil {
			it.reply <- s.rebalance(s.consumer, it.rebalance)
		}
		switch e := it.event.(type) {
		case nil:
			if it.rebalance == nil {
				// The input is drained for now: commit what is counted
				// without waiting out the interval, so counts become durable
				// (and readable) as soon as a burst ends.
				s.idle = true
			}
		case kafka.Error:
			p.metrics.kafkaErrors.Inc()
			if e.IsFatal() {
				return fmt.Errorf("consumer: %w", e)
			}
			s.log.Debug("consumer error", "error", e)
		case *kafka.Stats:
			st := parseStats(e.String())
			p.metrics.observeBrokers(st)
			if s.membership.observe(st.Cgrp) {
				s.membershipChanged("coordinator_state", st.Cgrp.State, "for", time.Duration(st.Cgrp.StateAge)*time.Millisecond)
			}
		}
		turn = bookkeepEvery // anything but records: bookkeeping next
	}
}

// onRebalance is the consumer's rebalance callback. Inside Poll it runs on
// the poller's goroutine and hands the event to the loop; inside Close,
// after the poller ended, it runs on the loop itself.
func (s *session) onRebalance(c *kafka.Consumer, ev kafka.Event) error {
	if s.poll == nil || s.poll.exited {
		// Inside Close, on the goroutine closeConsumer waits for.
		s.closing.Lock()
		defer s.closing.Unlock()
		if s.abandoned {
			return nil // the session went on without this consumer
		}
		return s.rebalance(c, ev)
	}
	return s.poll.handOver(ev)
}

// seek moves an input partition's position; records polled before it are
// dropped as stale.
func (s *session) seek(p int32, off kafka.Offset, also func() error) error {
	return s.poll.reposition(p, func() error {
		if err := s.consumer.Seek(kafka.TopicPartition{Topic: &s.input, Partition: p, Offset: off}, 0); err != nil {
			return err
		}
		if also != nil {
			return also()
		}
		return nil
	})
}

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
		// the pause began can come again (found by the rolling chaos:
		// one count too many on the hottest key, right after an
		// assignment of other partitions).
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
	if s.p.cfg.CacheMaxBytes == 0 {
		if err := s.send(t.partition, m.Key, n); err != nil {
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
	} else if err := s.produce(letter); err != nil {
		return err
	}
	s.p.metrics.producedDLQ.Inc()
	s.p.metrics.deadLettered.WithLabelValues(reason).Inc()
	return nil
}

// send produces a new count to the changelog (the task's own partition)
// and to the output topic (placed by the configured partitioner).
func (s *session) send(partition int32, key []byte, n int64) error {
	value := strconv.AppendInt(nil, n, 10)
	if err := s.produce(&kafka.Message{
		TopicPartition: kafka.TopicPartition{Topic: &s.changelog, Partition: partition},
		Key:            key, Value: value,
	}); err != nil {
		return err
	}
	if err := s.produce(&kafka.Message{
		TopicPartition: kafka.TopicPartition{Topic: &s.output, Partition: kafka.PartitionAny},
		Key:            key, Value: value,
	}); err != nil {
		return err
	}
	s.p.metrics.producedChangelog.Inc()
	s.p.metrics.producedOutput.Inc()
	return nil
}

// sendProgress tells, while a batch is sent, how far the sends went:
// each sending goroutine puts a task's index on its channel (in the
// batch's order) once it handed over that task's records, after it filled
// in its part of the task's mark.
type sendProgress struct {
	marks     []sentMark
	changelog chan int
	output    chan int
}

// sendAll produces a batch's counts, the changelog's records and the
// output's from two goroutines: the producer takes sends from several
// at once, and a commit's sends are most of its time. The transaction,
// if any, is open before either starts. progress, if not nil, hears how
// far the sends went; it needs the session to place output records itself
// (outputPartitions > 0), so that each task's records have known
// partitions.
func (s *session) sendAll(tasks []taskBatch, progress *sendProgress) error {
	if err := s.beginTxn(); err != nil {
		return err
	}
	sendTo := func(topic *string, own bool) error {
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
				if !own && s.outputPartitions > 0 {
					m.TopicPartition.Partition = s.p.part(m.Key, s.outputPartitions)
				}
				if err := s.produce(m); err != nil {
					return err
				}
				if progress != nil && !own {
					s.sentOutput[m.TopicPartition.Partition]++
				}
			}
			if progress == nil {
				continue
			}
			if own {
				s.sentChangelog[tb.partition] += int64(len(tb.counts))
				progress.marks[i].partition = tb.partition
				progress.marks[i].changelog = s.sentChangelog[tb.partition]
				progress.changelog <- i
			} else {
				progress.marks[i].output = slices.Clone(s.sentOutput)
				progress.output <- i
			}
		}
		return nil
	}
	errc := make(chan error, 1)
	go func() { errc <- sendTo(&s.output, false) }()
	err := sendTo(&s.changelog, true)
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
	s.p.metrics.producedChangelog.Add(float64(n))
	s.p.metrics.producedOutput.Add(float64(n))
	return nil
}

// placeOutput makes the session place output records itself, with the
// configured partitioner over the output topic's partitions (what the
// producer's partitioner would do), if it can read their number; else
// the producer places them and commits wait for all deliveries at once.
func (s *session) placeOutput() {
	md, err := s.producer.GetMetadata(&s.output, false, 5000)
	if err != nil {
		s.log.Debug("output partitions not known: commits wait for all deliveries at once", "topic", s.output, "error", err)
		return
	}
	t, ok := md.Topics[s.output]
	if !ok || t.Error.Code() != kafka.ErrNoError || len(t.Partitions) == 0 {
		s.log.Debug("output partitions not known: commits wait for all deliveries at once", "topic", s.output)
		return
	}
	s.outputPartitions = int32(len(t.Partitions))
	s.sentChangelog = map[int32]int64{}
	s.sentOutput = make([]int64, len(t.Partitions))
}

// produce hands one record to the producer, opening the transaction first
// under exactly_once_v2 and waiting out a full local queue.
func (s *session) produce(m *kafka.Message) error {
	if err := s.beginTxn(); err != nil {
		return err
	}
	s.delivered.add(1)
	for {
		err := s.producer.Produce(m, nil)
		if err == nil {
			return nil
		}
		var kerr kafka.Error
		if errors.As(err, &kerr) && kerr.Code() == kafka.ErrQueueFull && s.batchCtx.Err() == nil {
			// The batch context, not the session's: the last commit of a
			// graceful shutdown waits out a full queue too.
			s.producer.Flush(20)
			continue
		}
		s.delivered.add(-1)
		return fmt.Errorf("produce to %s: %w", *m.TopicPartition.Topic, err)
	}
}

// beginTxn opens a transaction under exactly_once_v2 if none is open.
func (s *session) beginTxn() error {
	if !s.eos || s.inTxn {
		return nil
	}
	if err := s.producer.BeginTransaction(); err != nil {
		return fmt.Errorf("begin transaction: %w", err)
	}
	s.inTxn = true
	return nil
}

// due reports whether a commit is due: the interval passed, the record
// cache is full, or the input is drained and a tenth of the interval passed
// (so an idle pipeline does not commit more than ten times an interval).
func (s *session) due() bool {
	since := time.Since(s.lastCommit)
	idle := s.idle
	s.idle = false
	return since >= s.p.cfg.CommitInterval ||
		(s.owing && since >= owedRetry) ||
		(idle && since >= s.p.cfg.CommitInterval/10) ||
		(s.p.cfg.CacheMaxBytes > 0 && s.cacheBytes >= s.p.cfg.CacheMaxBytes)
}

// owedRetry is how soon offsets the group refused while rebalancing are
// committed again.
const owedRetry = 250 * time.Millisecond

// commitIfDue hands the buffers to the committer when a commit is due. With
// a batch still in flight the loop goes on counting, unless the buffers
// have grown to twice the cache's budget; with the cache off it waits for
// every commit.
//
// While the membership is unconfirmed (the coordinator out of reach for
// half the session timeout or more) it starts no batch: the group may have
// given the tasks to another member, and this member's changelog records
// would land among the new owner's, which then refuses to commit over them
// and restores (abacus_changelog_other_writer_total). The counts wait in
// the buffers for the group's word: confirmed, they commit; lost, they are
// dropped. Only buffers grown to twice the cache's budget are handed off
// regardless (the broker still fences a member it expired).
func (s *session) commitIfDue() error {
	if _, err := s.checkInflight(); err != nil {
		return err
	}
	if !s.due() {
		return nil
	}
	cacheOff := s.p.cfg.CacheMaxBytes == 0
	if s.inflight != nil && (cacheOff || s.cacheBytes >= 2*s.p.cfg.CacheMaxBytes) {
		if err := s.awaitInflight(); err != nil {
			return err
		}
	}
	if s.inflight != nil {
		return nil
	}
	if s.membership.unconfirmed && !cacheOff && s.cacheBytes < 2*s.p.cfg.CacheMaxBytes {
		return nil
	}
	s.handOff(s.batchCtx)
	if cacheOff {
		return s.awaitInflight()
	}
	return nil
}

// membershipChanged publishes the membership watch's verdict: while
// unconfirmed, the member answers no lookup or scan for its tasks.
func (s *session) membershipChanged(args ...any) {
	s.p.setUnconfirmed(s.membership.unconfirmed)
	if s.membership.unconfirmed {
		s.log.Warn("out of reach of the group coordinator: not answering for this member's tasks until the group confirms them",
			append(args, "session_timeout", s.membership.sessionTimeout)...)
		return
	}
	s.log.Info("group membership confirmed: answering for the tasks again", args...)
}
