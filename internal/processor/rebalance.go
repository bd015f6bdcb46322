package processor

import (
	"fmt"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
)

// rebalance is the consumer's rebalance callback (cooperative-sticky). It
// runs on the loop (handed over by the poller, or inside Close). A
// revocation commits what it must before it returns, so the next owner
// starts exactly where this one ended.
func (s *session) rebalance(c *kafka.Consumer, ev kafka.Event) error {
	// An assignment or a revocation the group asked for confirms the
	// membership; a lost assignment does not (its tasks go anyway).
	if _, revoked := ev.(kafka.RevokedPartitions); (!revoked || !c.AssignmentLost()) && s.membership.rebalanced() {
		s.membershipChanged("by", "rebalance")
	}
	if s.rebalanceStarted.IsZero() {
		s.rebalanceStarted = time.Now()
	}
	switch e := ev.(type) {
	case kafka.AssignedPartitions:
		defer func() {
			s.p.metrics.rebalanceSeconds.Observe(time.Since(s.rebalanceStarted).Seconds())
			s.rebalanceStarted = time.Time{}
		}()
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
		// twice (after a broker cut) has another member counting past it,
		// and this member's older counts must not be served during the
		// commit (TestTaskHandingOverAnswersNoLookup).
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

func partitionsOf(tps []kafka.TopicPartition) []int32 {
	out := make([]int32, len(tps))
	for i, tp := range tps {
		out[i] = tp.Partition
	}
	return out
}
