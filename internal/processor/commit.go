package processor

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
)

// A commit (docs/state.md, "Commit") is shared by two goroutines. The
// loop hands the write buffers of every task over as one batch to the
// committer (handOff) and goes on counting into fresh buffers; the
// committer runs the commit function of the session's guarantee
// (commitAtLeastOnce, commitExactlyOnce) and closes the batch's done with
// its outcome; the loop applies the outcome to the tasks (finish). One
// batch is in flight at a time, in order. With the record cache off every
// count was sent as it was counted, so the loop waits for each batch
// instead.

// taskBatch is one task's part of a batch.
type taskBatch struct {
	partition  int32
	counts     map[string]int64
	nextOffset int64 // -1: no input processed since the previous batch
	rewindTo   int64
	// changelogBase is where the task's own changelog records begin
	// (-1: not checked): see foreignChangelogRecords.
	changelogBase int64
	// windowed are the task's windowed stores' writes and finals, and
	// streamTime the task's stream time as of the batch.
	windowed   []windowedBatch
	streamTime int64
}

// commitBatch is the work of one commit, handed from the loop to the
// committer; the committer sets outcome, then closes done.
type commitBatch struct {
	ctx   context.Context
	tasks []taskBatch
	// dlq holds dead letters to send with the batch (record cache on:
	// only the committer produces then, so it is the one to open
	// transactions).
	dlq      []*kafka.Message
	oldestTS time.Time
	done     chan struct{}
	outcome  batchOutcome
}

// batchOutcome is what the committer reports of a batch.
type batchOutcome struct {
	// err: nothing of the batch is stored, and the session ends.
	err error
	// aborted: the transaction was aborted (exactly_once_v2); the loop
	// rewinds the tasks and redoes the records.
	aborted bool
	// owed: the batch is stored but the group refused its input offsets
	// while it rebalanced (at_least_once); the tasks owe them.
	owed bool
}

// handOff starts a commit of everything counted since the previous one, if
// anything was. The caller must have no batch in flight.
func (s *session) handOff(ctx context.Context) {
	if s.err != nil {
		// The session is failing: the buffers may hold counts of a batch
		// that failed, and must not commit (see run).
		return
	}
	s.lastCommit = time.Now()
	b := &commitBatch{ctx: ctx, oldestTS: s.oldestTS, dlq: s.pendingDLQ, done: make(chan struct{})}
	for _, t := range s.tasks {
		if t.nextOffset >= 0 || len(t.dirty) > 0 || t.owed >= 0 {
			tb, err := t.handOff(s.snap)
			if err != nil {
				s.err = err
				for _, t := range s.tasks {
					t.reset()
				}
				return
			}
			b.tasks = append(b.tasks, tb)
		}
	}
	if len(b.tasks) == 0 && len(b.dlq) == 0 {
		return
	}
	s.pendingDLQ, s.cacheBytes, s.oldestTS = nil, 0, time.Time{}
	s.inflight = b
	if s.log.Enabled(ctx, slog.LevelDebug) {
		s.log.Debug("batch handed off", "batch", s.committer.describe(b))
	}
	s.committer.batches <- b
}

// checkInflight handles a finished batch, if one is.
func (s *session) checkInflight() error {
	if s.inflight == nil {
		return nil
	}
	select {
	case <-s.inflight.done:
		return s.finish()
	default:
		return nil
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

// finish applies a finished batch's outcome to the tasks.
func (s *session) finish() error {
	b := s.inflight
	s.inflight = nil
	out := b.outcome
	if out.err != nil {
		s.log.Info("batch failed: nothing of it is stored", "batch", s.committer.describe(b), "error", out.err)
		return out.err
	}
	if out.aborted {
		s.log.Info("batch aborted: rewinding", "batch", s.committer.describe(b))
		s.rewind(b)
		return nil
	}
	// The batch's counts are in Badger now, and may leave the read cache.
	s.snap.Refresh()
	// Every task owing offsets was in the batch (handOff), so the tasks
	// owe offsets now exactly when this batch's were refused.
	s.owing = out.owed
	// The read caches of all tasks share the record cache's budget.
	budget := s.p.cfg.CacheMaxBytes / int64(max(1, len(s.tasks)))
	for _, tb := range b.tasks {
		if t, ok := s.tasks[tb.partition]; ok {
			t.durable(tb, budget, out.owed)
		}
	}
	return nil
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
	if err := s.checkInflight(); err != nil {
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
