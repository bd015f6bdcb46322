package processor

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/abacus-streams/abacus/internal/abacus"
	"github.com/abacus-streams/abacus/internal/store"
)

// publish makes t the only task of p, as the loop publishes its tasks.
func publish(p *Processor, tv *taskView) {
	p.tasks.Store(&map[int32]*taskView{tv.partition: tv})
}

// A read after a position waits until the task's durable position passes
// it, waits through a restore, gives up with the position reached when
// its context ends, and fails at once for a task that is not here or is
// leaving.
func TestWaitPositionWaitsForTheDurablePosition(t *testing.T) {
	p := newTestProcessor(t)
	p.numPartitions.Store(4)
	tv := &taskView{partition: 0, store: p.db.Partition(0)}
	tv.readUpTo.Store(10)
	publish(p, tv)

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
	if pos, err := p.WaitPosition(ctx, 0, 5); !errors.Is(err, abacus.ErrNotYet) || pos != 10 {
		t.Fatalf("while restoring: %d, %v; want 10 and ErrNotYet", pos, err)
	}
	cancel()
	tv.active.Store(true)
	if pos, err := p.WaitPosition(context.Background(), 0, 9); err != nil || pos != 10 {
		t.Fatalf("position 10 past offset 9: %d, %v", pos, err)
	}
	ctx, cancel = context.WithTimeout(context.Background(), 30*time.Millisecond)
	if pos, err := p.WaitPosition(ctx, 0, 10); !errors.Is(err, abacus.ErrNotYet) || pos != 10 {
		t.Fatalf("position 10, offset 10: %d, %v; want 10 and ErrNotYet", pos, err)
	}
	cancel()
	go func() {
		time.Sleep(20 * time.Millisecond)
		tv.readUpTo.Store(12)
	}()
	if pos, err := p.WaitPosition(context.Background(), 0, 10); err != nil || pos != 12 {
		t.Fatalf("waited for offset 10: %d, %v; want 12", pos, err)
	}
	if _, err := p.WaitPosition(context.Background(), 1, 0); !errors.Is(err, abacus.ErrNotOwned) {
		t.Fatalf("partition not here: %v", err)
	}
	tv.handingOver.Store(true)
	if _, err := p.WaitPosition(context.Background(), 0, 0); !errors.Is(err, abacus.ErrHandingOver) {
		t.Fatalf("task leaving: %v", err)
	}
}

// A copy answers where the task cannot: a restoring task from the
// checkpoint its store holds, with the restore's remaining records as
// its lag, as long as that is within the bound; never a task still
// without a checkpoint.
func TestGetCopyFromARestoringTask(t *testing.T) {
	p := newTestProcessor(t)
	p.numPartitions.Store(1)
	tv := &taskView{partition: 0, store: p.db.Partition(0)}
	tv.restoreTotal.Store(50)
	tv.restoreDone.Store(20)
	publish(p, tv)
	if _, err := p.GetCopy(p.cfg.Store, []byte("k"), 100); !errors.Is(err, abacus.ErrRestoring) {
		t.Fatalf("no checkpoint yet: %v; want ErrRestoring", err)
	}
	if err := p.db.Partition(0).Commit(store.Batch{Counts: map[string]int64{"k": 7}, Checkpoint: 3}); err != nil {
		t.Fatal(err)
	}
	got, err := p.GetCopy(p.cfg.Store, []byte("k"), 100)
	if err != nil || got != (Copy{Value: 7, Partition: 0, Found: true, Lag: 30, Stale: true, Position: -1}) {
		t.Fatalf("restoring copy: %+v, %v", got, err)
	}
	var stale *abacus.StaleError
	if _, err := p.GetCopy(p.cfg.Store, []byte("k"), 29); !errors.As(err, &stale) || stale.Lag != 30 {
		t.Fatalf("lag 30 against max 29: %v", err)
	}
	tv.active.Store(true)
	tv.readUpTo.Store(12)
	got, err = p.GetCopy(p.cfg.Store, []byte("k"), 0)
	if err != nil || got != (Copy{Value: 7, Partition: 0, Found: true, Position: 12}) {
		t.Fatalf("active task: %+v, %v", got, err)
	}
}

// A strict read carries the position it reflects, read before the count:
// the task's durable input position; none while the task restores.
func TestGetAtReportsThePosition(t *testing.T) {
	p := newTestProcessor(t)
	p.numPartitions.Store(1)
	tv := &taskView{partition: 0, store: p.db.Partition(0)}
	tv.readUpTo.Store(-1)
	publish(p, tv)
	if _, _, _, pos, err := p.GetAt(p.cfg.Store, []byte("k")); !errors.Is(err, abacus.ErrRestoring) || pos != -1 {
		t.Fatalf("restoring: position %d, %v; want -1 and ErrRestoring", pos, err)
	}
	if err := p.db.Partition(0).Commit(store.Batch{Counts: map[string]int64{"k": 7}, Checkpoint: 3}); err != nil {
		t.Fatal(err)
	}
	tv.readUpTo.Store(42)
	tv.active.Store(true)
	if v, part, found, pos, err := p.GetAt(p.cfg.Store, []byte("k")); err != nil || v != 7 || part != 0 || !found || pos != 42 {
		t.Fatalf("active: %d %d %v position %d, %v; want 7 in partition 0 at position 42", v, part, found, pos, err)
	}
}
