package processor

import (
	"sync/atomic"

	"github.com/abacus-streams/abacus/internal/store"
)

// taskView is the part of a task that readers outside the loop may see.
type taskView struct {
	partition    int32
	store        *store.Partition
	active       atomic.Bool  // restored and processing
	checkpoint   atomic.Int64 // last committed changelog offset
	restoreDone  atomic.Int64
	restoreTotal atomic.Int64
}

func (v *taskView) status() TaskStatus {
	st := "restoring"
	if v.active.Load() {
		st = "active"
	}
	return TaskStatus{
		Partition: v.partition, State: st, Checkpoint: v.checkpoint.Load(),
		RestoreDone: v.restoreDone.Load(), RestoreTotal: v.restoreTotal.Load(),
	}
}

// task is the unit of work for one input partition. Only the session loop
// touches its fields; the restorer owns the store until it reports done.
type task struct {
	*taskView
	// dirty holds the counts changed since the last commit (the write
	// buffer); unsent the keys whose new count is not yet produced.
	dirty  map[string]int64
	unsent map[string]struct{}
	// nextOffset is the input offset to commit (last processed + 1), -1 if
	// nothing was processed since the last commit.
	nextOffset int64
	// rewindTo is the offset of the first record processed since the last
	// commit: where an aborted transaction sends the consumer back.
	rewindTo int64
	// committed is the input offset last committed, -1 if not known.
	committed int64
	// changelogEnd is the offset of the last changelog record delivered for
	// this task since the last commit, -1 if none.
	changelogEnd int64
	// restore is the running restorer, nil once restored.
	restore *restorer
}

func newTask(p int32, sp *store.Partition) *task {
	t := &task{
		taskView:     &taskView{partition: p, store: sp},
		dirty:        map[string]int64{},
		unsent:       map[string]struct{}{},
		nextOffset:   -1,
		changelogEnd: -1,
		committed:    -1,
	}
	t.checkpoint.Store(store.NoCheckpoint)
	return t
}

// count adds one to key's count and returns the new count.
func (t *task) count(key []byte) (int64, error) {
	if n, ok := t.dirty[string(key)]; ok {
		n++
		t.dirty[string(key)] = n
		return n, nil
	}
	n, _, err := t.store.Get(key)
	if err != nil {
		return 0, err
	}
	n++
	t.dirty[string(key)] = n
	return n, nil
}

// reset drops the write buffer: nothing in it was committed.
func (t *task) reset() {
	clear(t.dirty)
	clear(t.unsent)
	t.nextOffset = -1
	t.changelogEnd = -1
}
