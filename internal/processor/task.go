package processor

import (
	"fmt"
	"sync/atomic"
	"time"

	"github.com/abacus-streams/abacus/internal/abacus"
	"github.com/abacus-streams/abacus/internal/store"
)

// taskView is the part of a task that readers outside the loop may see.
type taskView struct {
	partition int32
	store     *store.Partition
	active    atomic.Bool // restored and processing
	// handingOver is set when the group revokes the task: it answers no
	// more lookups, since another member may count it already (a group
	// that gave it out twice) while this one commits its last work.
	handingOver  atomic.Bool
	checkpoint   atomic.Int64 // last committed changelog offset
	restoreDone  atomic.Int64
	restoreTotal atomic.Int64
	// readUpTo is the input offset below which every record's count is in
	// the store (-1: not known): the committed offset when the task became
	// active, then each batch's next offset once it is stored and
	// committed (committer.committed). Reads that wait for a position
	// (WaitPosition) compare with it.
	readUpTo atomic.Int64
}

func (v *taskView) status() abacus.TaskStatus {
	st := "restoring"
	if v.active.Load() {
		st = "active"
	}
	return abacus.TaskStatus{
		Partition: v.partition, State: st, Checkpoint: v.checkpoint.Load(),
		RestoreDone: v.restoreDone.Load(), RestoreTotal: v.restoreTotal.Load(),
	}
}

// restoring is a task's running restore, as the loop sees it
// (restore.Restorer).
type restoring interface {
	Finished() bool
	Result() (start, end int64, err error)
	Failure() error
	Stop()
}

// task is the unit of work for one input partition. Only the loop
// touches its fields; the restorer owns the store until it reports done,
// and the committer only reads a batch's maps once handed over.
type task struct {
	*taskView
	// dirty holds the counts changed since the last hand-off to the
	// committer (the write buffer); inflight the counts of the batch being
	// committed (read-only while it is); clean a bounded read cache of
	// durable counts, so a hot key is not read from Badger after every commit.
	dirty      map[string]int64
	inflight   map[string]int64
	clean      map[string]int64
	cleanBytes int64
	// nextOffset is the input offset to commit (last processed + 1), -1 if
	// nothing was processed since the last hand-off.
	nextOffset int64
	// rewindTo is the offset of the first record processed since the last
	// hand-off: where an aborted transaction sends the consumer back.
	rewindTo int64
	// committed is the input offset last committed, -1 if not known.
	committed int64
	// owed is an input offset whose counts are stored (Badger, changelog,
	// output) but whose commit the group refused while it rebalanced; -1
	// if none. The next batch commits it in the new generation, and a
	// revocation before giving the task up (commitRevoked).
	owed int64
	// position is the next input offset the task expects: one past the
	// last record it counted, or where it was last sought (-1: not known
	// yet). A record below it was counted already (see process).
	position int64
	// restore is the running restore, nil once restored.
	restore restoring
	// changelogBase is where the task's own changelog records begin: the
	// end of the changelog its restore reached (-1 until it is restored).
	changelogBase int64
	// windows are the task's parts of the windowed stores, in the order
	// of the configuration. streamTime is the largest record timestamp
	// the task has seen (epoch ms; store.NoStreamTime: none), committed
	// that of the last durable batch, and closedUpTo the stream time
	// whose closed windows the batches handed off emitted (windows.go).
	windows             []*windowedTask
	streamTime          int64
	committedStreamTime int64
	closedUpTo          int64
	// startBlocked is when the restored task first found the consumer not
	// fetching its partition yet (zero: not waiting); see fetchNotStarted.
	startBlocked time.Time
}

func newTask(p int32, sp *store.Partition) *task {
	t := &task{
		taskView:      &taskView{partition: p, store: sp},
		dirty:         map[string]int64{},
		clean:         map[string]int64{},
		nextOffset:    -1,
		committed:     -1,
		owed:          -1,
		position:      -1,
		changelogBase: -1,
		streamTime:    store.NoStreamTime, committedStreamTime: store.NoStreamTime, closedUpTo: store.NoStreamTime,
	}
	t.checkpoint.Store(store.NoCheckpoint)
	t.readUpTo.Store(-1)
	return t
}

// count adds one to key's count and returns the new count, and whether
// the key is new in the write buffer. The newest
// count is the write buffer's, then the batch being committed, then the
// read cache, then Badger.
func (t *task) count(key []byte, snap *store.Snapshot) (int64, bool, error) {
	if n, ok := t.dirty[string(key)]; ok { // no allocation for the lookup
		t.dirty[string(key)] = n + 1
		return n + 1, false, nil
	}
	k := string(key)
	n, ok := t.inflight[k]
	if !ok {
		n, ok = t.clean[k]
	}
	if !ok {
		var err error
		if n, _, err = t.store.GetIn(snap, key); err != nil {
			return 0, false, err
		}
	}
	t.dirty[k] = n + 1
	return n + 1, true, nil
}

// handOff moves the write buffer into a batch for the committer. A task
// with nothing new but an owed offset hands that over again.
func (t *task) handOff(snap *store.Snapshot) (taskBatch, error) {
	b := taskBatch{partition: t.partition, counts: t.dirty, nextOffset: t.nextOffset, rewindTo: t.rewindTo, changelogBase: t.changelogBase}
	if len(t.windows) > 0 {
		var err error
		if b.windowed, err = t.handOffWindows(snap); err != nil {
			return taskBatch{}, fmt.Errorf("task %d: %w", t.partition, err)
		}
		b.streamTime = t.streamTime
	}
	if b.nextOffset < 0 && t.owed >= 0 {
		b.nextOffset, b.rewindTo = t.owed, t.owed
	}
	if len(t.dirty) > 0 {
		t.inflight = t.dirty
		t.dirty = map[string]int64{}
	}
	t.nextOffset = -1
	return b, nil
}

// durable makes a batch's counts durable in the task's view: they join
// the read cache, which is emptied when it outgrows its budget. owed: the
// batch's offset was stored but not committed (the group rebalanced).
func (t *task) durable(b taskBatch, budget int64, owed bool) {
	switch {
	case b.nextOffset < 0:
	case owed:
		t.owed = b.nextOffset
	default:
		t.committed, t.owed = b.nextOffset, -1
	}
	for k, v := range t.inflight {
		if _, ok := t.clean[k]; !ok {
			t.cleanBytes += int64(len(k)) + cacheEntryOverhead
		}
		t.clean[k] = v
	}
	t.inflight = nil
	if len(t.windows) > 0 {
		t.windowsDurable(b.streamTime)
	}
	if t.cleanBytes > budget {
		clear(t.clean)
		t.cleanBytes = 0
	}
}

// reset drops everything not durable: nothing in it was committed.
func (t *task) reset() {
	clear(t.dirty)
	t.inflight = nil
	t.nextOffset = -1
	t.resetWindows()
}
