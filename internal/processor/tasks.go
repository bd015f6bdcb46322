package processor

import (
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/abacus-streams/abacus/internal/processor/restore"
	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
)

// The loop's task table: tasks come with an assignment and restore, become
// active, and go with a revocation; their state lingers on disk for the
// cleanup delay (package standby wipes it then, unless the task is back
// here, as a task or a standby).

// addTask starts a task for an assigned partition, restoring first. A
// standby of the partition here hands its store over to the restore
// (releaseStandby, on the restore's goroutine: the runner may be busy
// with the broker), which then reads only what the standby had not
// applied; marked active first, the partition is not taken back.
func (s *session) addTask(p int32) {
	s.p.setActive(p, true)
	t := newTask(p, s.p.db.Partition(p))
	var err error
	if t.windows, err = s.p.windowedTasks(t.store); err != nil && s.err == nil {
		s.err = fmt.Errorf("task %d: %w", p, err)
	}
	s.p.metrics.restored.WithLabelValues(strconv.Itoa(int(p)), restore.SourceChangelog).Add(0)
	// The partition's lag series exists from the assignment on (0 until
	// the task is restored and its committed offset read), so that an
	// alert on a missing series means a partition nobody owns
	// (TestMetricsLintAndLag).
	s.p.metrics.lag.WithLabelValues(s.input, strconv.Itoa(int(p))).Add(0)
	t.restore = restore.Start(s.ctx, s.p.restoreConfig(), restore.Task{
		Partition: p, Store: t.store, Checkpoint: &t.checkpoint, Done: &t.restoreDone, Total: &t.restoreTotal,
	})
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
		t.restore.Stop()
	}
	delete(s.tasks, p)
	s.p.setActive(p, false)
	if r := s.p.standby.Load(); r != nil {
		r.Linger(p, time.Now().Add(s.p.cfg.StateCleanupDelay))
	}
	s.p.metrics.lag.DeleteLabelValues(s.input, strconv.Itoa(int(p)))
}

// checkRestores activates the tasks whose restore finished, and fails the
// session when a restore could not write the store.
func (s *session) checkRestores() {
	changed := false
	for _, t := range s.tasks {
		if t.restore == nil || !t.restore.Finished() {
			continue
		}
		start, end, err := t.restore.Result()
		if err != nil {
			s.err = fmt.Errorf("restore task %d: %w", t.partition, err)
			return
		}
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
		if err := t.loadStreamTime(); err != nil {
			s.err = fmt.Errorf("start task %d: %w", t.partition, err)
			return
		}
		// The read position first: an active task answers reads of its
		// committed state with it, and the query of the committed offset
		// may take seconds (TestBoundedLookupsThroughATakeover saw an
		// answer without a position in that window).
		t.committed = s.committedOffset(t.partition)
		t.readUpTo.Store(max(t.committed, start))
		t.active.Store(true)
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
		if err := t.restore.Failure(); err != nil {
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

// housekeeping refreshes the lag gauges and checks the disk's free space.
func (s *session) housekeeping() {
	now := time.Now()
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
