package processor

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
)

// rebalance is the consumer's rebalance callback (cooperative-sticky). It
// runs on the session loop (handed over by the poller, or inside Close). A revocation commits what it must
// before it returns, so the next owner starts exactly where this one ended.
func (s *session) rebalance(c *kafka.Consumer, ev kafka.Event) error {
	// An assignment or a revocation the group asked for confirms the
	// membership; a lost assignment does not (its tasks go anyway).
	if _, revoked := ev.(kafka.RevokedPartitions); (!revoked || !c.AssignmentLost()) && s.membership.rebalanced() {
		s.membershipChanged("by", "rebalance")
	}
	switch e := ev.(type) {
	case kafka.AssignedPartitions:
		s.p.metrics.rebalances.Inc()
		s.assigned = true
		if err := c.IncrementalAssign(e.Partitions); err != nil {
			s.err = fmt.Errorf("assign %v: %w", partitionsOf(e.Partitions), err)
			return s.err
		}
		if len(e.Partitions) > 0 {
			// A task processes input only once restored.
			if err := c.Pause(e.Partitions); err != nil {
				s.err = fmt.Errorf("pause %v: %w", partitionsOf(e.Partitions), err)
				return s.err
			}
			s.log.Info("partitions assigned", "partitions", partitionsOf(e.Partitions))
		}
		for _, tp := range e.Partitions {
			s.addTask(tp.Partition)
		}
	case kafka.RevokedPartitions:
		s.p.metrics.rebalances.Inc()
		// Another member may own them already, or will once this returns:
		// stop answering for them before anything else (the commit or
		// abort below can wait on the broker). This member's store holds
		// only its own last commit; a group that handed the partitions out
		// twice has another member counting past it (seen with kfake after
		// a broker cut: a member confirmed by this very revocation served
		// its older counts during the commit).
		for _, tp := range e.Partitions {
			if t, ok := s.tasks[tp.Partition]; ok {
				t.handingOver.Store(true)
			}
		}
		if c.AssignmentLost() {
			for _, tp := range e.Partitions {
				if t, ok := s.tasks[tp.Partition]; ok {
					t.active.Store(false)
				}
			}
			s.log.Warn("partitions lost: dropping their uncommitted work", "partitions", partitionsOf(e.Partitions))
			if !s.committer.eos {
				// Nothing fences this member's sends: purge them before they
				// land behind the new owner's, and start a new session (a new
				// producer) once the work is dropped. The batch in flight
				// fails on its purged sends and commits nothing.
				s.committer.purge("assignment lost")
				if s.err == nil {
					s.err = fmt.Errorf("partitions %v lost (the group session timed out): their unsent counts were purged", partitionsOf(e.Partitions))
				}
			}
			s.dropWork("assignment lost")
		} else if s.err != nil {
			// A failing or closing session commits nothing more.
			s.dropWork("session ending")
		} else {
			s.log.Debug("committing before revocation", "partitions", partitionsOf(e.Partitions))
			if err := s.commitRevoked(e.Partitions); err != nil {
				s.err = fmt.Errorf("commit before revocation: %w", err)
			} else {
				s.log.Info("partitions revoked", "partitions", partitionsOf(e.Partitions))
			}
		}
		for _, tp := range e.Partitions {
			s.removeTask(tp.Partition)
		}
		if err := c.IncrementalUnassign(e.Partitions); err != nil && s.err == nil {
			s.err = fmt.Errorf("unassign %v: %w", partitionsOf(e.Partitions), err)
		}
	}
	s.publishTasks()
	if s.p.cfg.OnAssignment != nil {
		owned := make([]int32, 0, len(s.tasks))
		for p := range s.tasks {
			owned = append(owned, p)
		}
		s.p.cfg.OnAssignment(owned)
	}
	return nil
}

// revokeCommitWait bounds how long a revocation tries to commit offsets
// the group refuses (a rebalance that began meanwhile).
const revokeCommitWait = 10 * time.Second

// commitRevoked commits everything counted before the group takes
// partitions away, so their next owner starts exactly where this member
// ended. In a cooperative rebalance the member commits in the generation
// it has just joined; should the group refuse the offsets all the same
// (another rebalance under way), it tries again until revokeCommitWait,
// then gives the partitions up with a warning: their next owner counts
// again from the offsets committed before (at_least_once).
func (s *session) commitRevoked(tps []kafka.TopicPartition) error {
	deadline := time.Now().Add(revokeCommitWait)
	for {
		if err := s.commitSync(s.batchCtx); err != nil {
			return err
		}
		var owing []int32
		for _, tp := range tps {
			if t, ok := s.tasks[tp.Partition]; ok && t.owed >= 0 {
				owing = append(owing, tp.Partition)
			}
		}
		if len(owing) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			s.log.Warn("giving up partitions whose input offsets the group refused: their next owner counts again from the last committed offsets",
				"partitions", owing, "tried_for", revokeCommitWait)
			return nil
		}
		s.p.beat()
		time.Sleep(100 * time.Millisecond)
	}
}

func (s *session) addTask(p int32) {
	delete(s.lingering, p)
	t := newTask(p, s.p.db.Partition(p))
	s.p.metrics.restored.WithLabelValues(strconv.Itoa(int(p))).Add(0)
	t.restore = s.p.startRestore(s.ctx, t.taskView)
	s.tasks[p] = t
}

// removeTask closes a task and keeps its state on disk for the cleanup
// delay, in case it comes back.
func (s *session) removeTask(p int32) {
	t, ok := s.tasks[p]
	if !ok {
		return
	}
	if t.restore != nil {
		t.restore.stop()
	}
	delete(s.tasks, p)
	s.lingering[p] = time.Now().Add(s.p.cfg.StateCleanupDelay)
	s.p.metrics.lag.DeleteLabelValues(s.input, strconv.Itoa(int(p)))
}

// checkRestores activates the tasks whose restore finished, and fails the
// session when a restore could not write the store.
func (s *session) checkRestores() {
	changed := false
	for _, t := range s.tasks {
		if t.restore == nil || !t.restore.finished() {
			continue
		}
		if err := t.restore.err; err != nil {
			s.err = fmt.Errorf("restore task %d: %w", t.partition, err)
			return
		}
		start, end := t.restore.start, t.restore.end
		if start >= 0 {
			// Exactly where the restored state ends (see restore).
			if err := s.seek(t.partition, kafka.Offset(start), nil); err != nil {
				if s.fetchNotStarted(t, err) {
					continue // the next turn tries again
				}
				s.err = fmt.Errorf("start task %d at offset %d: %w", t.partition, start, err)
				return
			}
		}
		t.changelogBase = end
		s.committer.delivered.ResetChangelog(t.partition)
		t.position = start
		t.restore = nil
		if err := s.consumer.Resume([]kafka.TopicPartition{{Topic: &s.input, Partition: t.partition}}); err != nil {
			s.err = fmt.Errorf("resume task %d: %w", t.partition, err)
			return
		}
		s.snap.Refresh() // the restore wrote the task's counts
		t.active.Store(true)
		t.committed = s.committedOffset(t.partition)
		// Where the task's counting starts against where its state ends:
		// the line to read first when a count comes out wrong.
		s.log.Info("task active", "task", t.partition, "input_offset", start, "committed", t.committed,
			"checkpoint", t.checkpoint.Load(), "changelog_end", end)
		changed = true
	}
	if changed {
		s.publishTasks()
	}
	s.updateState()
}

// startWait bounds how long a restored task waits for the consumer to
// start fetching its partition before the session gives up on it.
const startWait = 30 * time.Second

// fetchNotStarted reports whether a restored task's start failed only
// because the consumer has not started fetching the partition yet: it
// does once its own query of the committed offset is answered, which can
// come after the restore (the query waits behind an open transaction,
// behind another partition's query, or for the coordinator). A seek
// before that is refused (ERR__STATE); the task stays paused and tries
// again, instead of ending the session and rebalancing the whole group.
// Past startWait the session ends as for any other failure: librdkafka
// starts no fetch for a partition whose query failed until it is
// assigned again.
func (s *session) fetchNotStarted(t *task, err error) bool {
	var kerr kafka.Error
	if !errors.As(err, &kerr) || kerr.Code() != kafka.ErrState {
		return false
	}
	if t.startBlocked.IsZero() {
		t.startBlocked = time.Now()
		s.log.Info("task restored; waiting for the consumer to start fetching its input", "task", t.partition)
	}
	return time.Since(t.startBlocked) < startWait
}

// committedOffset asks the group for a partition's committed offset; -1
// when there is none or the broker does not answer in time.
func (s *session) committedOffset(p int32) int64 {
	tps, err := s.consumer.Committed([]kafka.TopicPartition{{Topic: &s.input, Partition: p}}, 5000)
	if err != nil || len(tps) != 1 || tps[0].Offset < 0 {
		return -1
	}
	return int64(tps[0].Offset)
}

// updateState is REBALANCING until the first assignment and while any task
// restores, ERROR while a restore keeps failing (with its reason), RUNNING
// otherwise.
func (s *session) updateState() {
	if st := s.p.State(); st == StatePendingShutdown || st == StateNotRunning {
		return
	}
	state := StateRunning
	if !s.assigned {
		state = StateRebalancing
	}
	for p, t := range s.tasks {
		if !t.active.Load() {
			state = StateRebalancing
		}
		if t.restore == nil {
			continue
		}
		if err := t.restore.failure(); err != nil {
			s.p.lastErr.Store(fmt.Sprintf("restore task %d: %v", p, err))
			s.p.setState(StateError)
			return
		}
	}
	s.p.setState(state)
}

// publishTasks swaps the readers' view of the task table.
func (s *session) publishTasks() {
	views := make(map[int32]*taskView, len(s.tasks))
	for p, t := range s.tasks {
		views[p] = t.taskView
	}
	s.p.tasks.Store(&views)
}

// housekeeping wipes state left by revoked tasks past the cleanup delay and
// refreshes the lag gauges.
func (s *session) housekeeping() {
	now := time.Now()
	for p, until := range s.lingering {
		if now.Before(until) {
			continue
		}
		delete(s.lingering, p)
		if err := s.p.db.Partition(p).Wipe(); err != nil {
			s.log.Warn("clean up state of revoked task", "task", p, "error", err)
			continue
		}
		s.log.Info("cleaned up state of revoked task", "task", p)
	}
	if now.Sub(s.lastLag) >= time.Second {
		s.lastLag = now
		s.updateLag()
	}
	if now.Sub(s.lastSpaceCheck) >= spaceCheckEvery {
		s.lastSpaceCheck = now
		// A full disk ends the session (ERROR, not ready, with the
		// reason) as soon as it is seen, not only when the next commit
		// fails to write: until then the member would look healthy.
		if err := s.p.db.CheckSpace(); err != nil && s.err == nil {
			s.err = fmt.Errorf("state store: %w", err)
		}
	}
}

// spaceCheckEvery is how often the loop checks the state dir's free space.
const spaceCheckEvery = 250 * time.Millisecond

// updateLag sets end minus committed per owned input partition, from the
// consumer's cached high watermark and the offsets this session committed
// (or found committed when the task became active).
func (s *session) updateLag() {
	for p, t := range s.tasks {
		low, high, err := s.consumer.GetWatermarkOffsets(s.input, p)
		if err != nil || high < 0 || !t.active.Load() {
			continue
		}
		committed := t.committed
		if committed < 0 {
			committed = max(low, 0) // nothing committed: consumption starts at the log start
		}
		s.p.metrics.lag.WithLabelValues(s.input, strconv.Itoa(int(p))).Set(float64(max(high-committed, 0)))
	}
}

// shutdown is step 5 of the state protocol: stop taking work, commit,
// close the clients within the shutdown timeout.
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
			t.restore.stop()
		}
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
// a rebalance lasts (seen for minutes with kfake: the member's session
// never ended, it held its task and the group never rebalanced). Past the
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

func partitionsOf(tps []kafka.TopicPartition) []int32 {
	out := make([]int32, len(tps))
	for i, tp := range tps {
		out[i] = tp.Partition
	}
	return out
}
