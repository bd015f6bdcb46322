package processor

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/abacus-streams/abacus/internal/config"
	"github.com/abacus-streams/abacus/internal/kafkaconf"
	"github.com/abacus-streams/abacus/internal/store"
	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
)

// bookkeepEvery: the loop does its bookkeeping once per this many records
// (and whenever a poll brings no record).
const bookkeepEvery = 64

// session is one life of the consumer and the producer, and the state of
// its loop: the goroutine that runs runSession owns every field of it, the
// consumer and every task. The poller polls the consumer for it and hands
// over records and the rebalance callback (poller.go); the committer owns
// the producer and runs the batches the loop hands it (committer.go); each
// restoring task's restorer owns that task's store partition until the
// loop sees it finished (package restore).
type session struct {
	p *Processor
	// rebalanceStarted is when the rebalance under way reached this
	// member (its first callback); zero between rebalances.
	rebalanceStarted time.Time
	ctx              context.Context
	log              *slog.Logger
	consumer         *kafka.Consumer
	committer        *committer
	poll             *poller
	input            string
	dlq              string

	tasks      map[int32]*task
	assigned   bool // the first assignment arrived
	membership membershipWatch
	err        error // set by the rebalance callback to end the session
	idle       bool  // the last poll brought nothing
	sampled    uint64
	// snap is the loop's view of the store for counts in none of a task's
	// maps, refreshed whenever the store gains what the maps no longer
	// hold: a finished batch, a finished restore.
	snap *store.Snapshot

	// The record cache: counts wait in the tasks' write buffers and dead
	// letters in pendingDLQ for the next batch.
	cacheBytes int64
	pendingDLQ []*kafka.Message
	oldestTS   time.Time // oldest input timestamp since the last commit

	// The batch in flight, and when the last was handed over. batchCtx
	// bounds batches; it outlives a shutdown signal so the last commit can
	// finish, and ends when the session closes.
	inflight      *commitBatch
	lastCommit    time.Time
	owing         bool // the last batch's offsets were refused: tasks owe them (task.owed)
	batchCtx      context.Context
	cancelBatches context.CancelFunc

	lastLag        time.Time
	lastSpaceCheck time.Time

	// closing guards the session against a consumer Close that outlives
	// closeConsumer's wait: its callback then does nothing (abandoned).
	closing   sync.Mutex
	abandoned bool
}

// runSession runs one session until ctx ends (graceful shutdown, nil) or
// an error the session cannot mend in place.
func (p *Processor) runSession(ctx context.Context) error {
	s, err := p.startSession(ctx)
	if s != nil {
		defer s.close()
	}
	if err != nil {
		return err
	}
	return s.run()
}

// startSession creates the session's clients and starts its goroutines:
// the committer with its producer (its transactions initialised under
// exactly_once_v2), then the consumer in the group and its poller. It
// returns the session to close even when it fails past the producer.
func (p *Processor) startSession(ctx context.Context) (*session, error) {
	consumerConf := kafkaconf.Consumer(p.cfg.Config)
	s := &session{
		p: p, ctx: ctx, log: p.log,
		input:      p.cfg.InputTopic,
		dlq:        p.cfg.DLQTopic(),
		tasks:      map[int32]*task{},
		membership: newMembershipWatch(consumerConf),
		snap:       p.db.Snapshot(),
	}
	s.batchCtx, s.cancelBatches = context.WithCancel(context.WithoutCancel(ctx))
	eos := p.cfg.ProcessingGuarantee == config.ExactlyOnceV2
	var err error
	s.committer, err = p.newCommitter(committerConfig{ctx: s.batchCtx, eos: eos, sessionTimeout: s.membership.sessionTimeout})
	if err != nil {
		s.snap.Refresh()
		s.cancelBatches()
		return nil, err
	}
	if eos {
		initCtx, cancel := context.WithTimeout(ctx, p.cfg.StartupTimeout)
		err := s.committer.producer.InitTransactions(initCtx)
		cancel()
		if err != nil {
			return s, fmt.Errorf("init transactions as %s: %w", p.cfg.TransactionalID(), err)
		}
	}
	p.setUnconfirmed(false)
	if s.consumer, err = kafkaconf.NewConsumer(consumerConf, p.log, kafkaconf.RoleConsumer); err != nil {
		return s, fatalf("create consumer: %w", err)
	}
	s.committer.group = s.consumer
	if err := s.consumer.SubscribeTopics([]string{s.input}, s.onRebalance); err != nil {
		return s, fmt.Errorf("subscribe to %s: %w", s.input, err)
	}
	s.poll = newPoller(s.consumer)
	s.poll.start()
	p.setState(StateRebalancing)
	s.lastCommit = time.Now()
	return s, nil
}

// run is the loop: it counts the records the poller hands over, runs the
// rebalance callback, and commits, until ctx ends or the session fails.
func (s *session) run() error {
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
			if stop, err := s.bookkeep(); stop {
				return err
			}
		}
		var it pollItem
		select {
		case it = <-s.poll.items:
		case <-s.ctx.Done():
			turn = bookkeepEvery
			continue
		}
		if len(it.records) > 0 {
			if err := s.processAll(it.records); err != nil {
				return err
			}
			turn += len(it.records)
			continue
		}
		if err := s.handle(it); err != nil {
			return err
		}
		turn = bookkeepEvery // anything but records: bookkeeping next
	}
}

// bookkeep is the loop's turn between records: the heartbeat, a graceful
// shutdown, finished restores, a commit when due, and housekeeping. stop
// says the session ends, with err.
func (s *session) bookkeep() (stop bool, err error) {
	s.p.beat()
	if s.ctx.Err() != nil {
		return true, s.shutdown()
	}
	s.checkRestores()
	if err := s.commitIfDue(); err != nil {
		return true, err
	}
	select {
	case reason := <-s.p.rejoin:
		s.rejoinGroup(reason)
	default:
	}
	s.housekeeping()
	return s.err != nil, s.err
}

// rejoinGroup leaves the group and joins it again. Unsubscribing revokes
// every task through the rebalance callback (committed as for any
// revocation) and, once they are given up, sends LeaveGroup: librdkafka
// sends it for a static member too when it is not closing, and Kafka
// rebalances. The new subscription waits in librdkafka until the
// revocation is done, then joins as a new member. Tasks this member gets
// back restore only their delta from the disk. A failure is logged: the
// session goes on, and the watch asks again if the group still needs it.
func (s *session) rejoinGroup(reason string) {
	s.log.Warn("leaving the consumer group and joining it again", "reason", reason)
	s.p.metrics.rejoins.WithLabelValues(reason).Inc()
	if err := s.consumer.Unsubscribe(); err != nil {
		s.log.Error("leave the consumer group to rejoin it", "error", err)
		return
	}
	if err := s.consumer.SubscribeTopics([]string{s.input}, s.onRebalance); err != nil {
		s.log.Error("join the consumer group again", "error", err)
		s.err = fmt.Errorf("subscribe to %s again: %w", s.input, err)
	}
}

// processAll counts polled records, but none polled before its
// partition was sought back.
func (s *session) processAll(records []polled) error {
	for _, r := range records {
		if s.poll.stale(r) {
			continue
		}
		if err := s.process(r.msg); err != nil {
			return err
		}
	}
	return nil
}

// handle runs what a poll brought besides records: the rebalance callback,
// the end of the input for now, a client error, the client's statistics.
func (s *session) handle(it pollItem) error {
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
		s.p.metrics.kafkaErrors.Inc()
		if e.IsFatal() {
			return fmt.Errorf("consumer: %w", e)
		}
		s.log.Debug("consumer error", "error", e)
	case *kafka.Stats:
		st := parseStats(e.String())
		s.p.metrics.observeBrokers(st)
		if s.membership.observe(st.Cgrp) {
			s.membershipChanged("coordinator_state", st.Cgrp.State, "for", time.Duration(st.Cgrp.StateAge)*time.Millisecond)
		}
	}
	return nil
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

// shutdown stops taking work and commits within the shutdown timeout
// (docs/state.md, "Revocation and shutdown"); close then closes the
// clients.
func (s *session) shutdown() error {
	s.p.setState(StatePendingShutdown)
	ctx, cancel := context.WithTimeout(s.batchCtx, s.p.cfg.ShutdownTimeout)
	defer cancel()
	// The batch in flight runs under batchCtx: end it too at the timeout.
	stop := time.AfterFunc(s.p.cfg.ShutdownTimeout, s.cancelBatches)
	defer stop.Stop()
	if err := s.commitSync(ctx); err != nil {
		s.log.Error("final commit failed; uncommitted work will be redone by the next owner", "error", err)
		s.dropWork("shutdown")
	}
	return nil
}

// dropWork gives up everything not committed: the batch in flight is
// waited for (it may still commit), then the open transaction is aborted
// and every task rewound to its first record not committed.
func (s *session) dropWork(reason string) {
	if err := s.awaitInflight(); err != nil && s.err == nil {
		s.err = err
	}
	if err := s.committer.abortTxn(reason); err != nil && s.err == nil {
		s.err = err
	}
	s.rewind(nil)
}

// close stops the session's goroutines and closes its clients: the
// poller, the restorers, the committer (once its batch in flight is done)
// and its producer, then the consumer. With static membership the consumer
// does not leave the group, so a member back within session.timeout.ms
// gets its partitions again without a rebalance.
func (s *session) close() {
	if s.poll != nil {
		// First: it uses the consumer, and its callback hands over to a
		// loop that is no longer there.
		s.poll.close()
	}
	// A graceful shutdown has sent everything by now; a failed session
	// must send nothing more.
	s.committer.purge("session closing")
	for _, t := range s.tasks {
		if t.restore != nil {
			t.restore.Stop()
		}
		// Its store stays as it is: the next session most likely gets
		// the task back (static membership), and restores only a delta.
		s.p.setActive(t.partition, false)
	}
	// The committer before the consumer: a commit uses both.
	s.cancelBatches()
	if s.inflight != nil {
		<-s.inflight.done
		s.inflight = nil
	}
	s.committer.stop()
	if s.consumer != nil {
		// Close runs the final revocation through our callback; nothing is
		// left to commit by then, and a failed session must not commit.
		s.err = errSessionClosing
		s.closeConsumer()
	}
	s.committer.close()
	s.snap.Refresh() // ends its view before the store can close
	empty := map[int32]*taskView{}
	s.p.tasks.Store(&empty)
}

var errSessionClosing = fmt.Errorf("session closing")

// consumerCloseTimeout bounds the wait for the consumer's Close.
const consumerCloseTimeout = 10 * time.Second

// closeConsumer closes the consumer, but waits at most
// consumerCloseTimeout. librdkafka's Close waits for the group requests in
// flight, and a JoinGroup can be parked at the coordinator for as long as
// a rebalance lasts (minutes, should the coordinator hold it: the
// member's session never ends, it holds its task and the group never
// rebalances). Past the
// wait the session goes on without it: the next session's consumer joins
// with the same group.instance.id, which fences the old one, and the old
// Close ends by itself; its callbacks then touch nothing.
func (s *session) closeConsumer() {
	done := make(chan error, 1)
	go func() { done <- s.consumer.Close() }()
	select {
	case err := <-done:
		if err != nil {
			s.log.Warn("close consumer", "error", err)
		}
	case <-time.After(consumerCloseTimeout):
		s.closing.Lock()
		s.abandoned = true
		s.closing.Unlock()
		s.log.Warn("the consumer did not close in time: leaving it behind; the next session's consumer takes its place in the group",
			"waited", consumerCloseTimeout)
	}
}
