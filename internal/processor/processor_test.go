package processor

import (
	"testing"
	"time"

	"github.com/abacus-streams/abacus/internal/config"
	"github.com/abacus-streams/abacus/internal/store"
)

func newTestProcessor(t *testing.T) *Processor {
	t.Helper()
	db, err := store.Open(store.Config{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	p, err := New(Config{Config: config.Default()}, db)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// Liveness fails only when the loop that should be turning has not turned
// within the bound; a stopped or not yet started processor is not stuck.
func TestAliveFollowsTheLoopHeartbeat(t *testing.T) {
	p := newTestProcessor(t)
	for _, tc := range []struct {
		state State
		age   time.Duration
		alive bool
	}{
		{StateRunning, time.Second, true},
		{StateRunning, time.Minute, false},
		{StateRebalancing, time.Minute, false},
		{StatePendingShutdown, 2 * time.Second, true},
		{StateCreated, time.Hour, true},
		{StateNotRunning, time.Hour, true},
	} {
		p.setState(tc.state)
		p.heartbeat.Store(time.Now().Add(-tc.age).UnixNano())
		if got := p.Alive(30 * time.Second); got != tc.alive {
			t.Errorf("%s, heartbeat %s old: Alive = %v, want %v", tc.state, tc.age, got, tc.alive)
		}
	}
}

// Readiness needs RUNNING and every task restored.
func TestReadyNeedsRunningAndRestoredTasks(t *testing.T) {
	p := newTestProcessor(t)
	v := &taskView{partition: 0}
	p.tasks.Store(&map[int32]*taskView{0: v})
	p.setState(StateRunning)
	if p.Ready() {
		t.Error("ready with a restoring task")
	}
	v.active.Store(true)
	if !p.Ready() {
		t.Error("not ready with every task active and RUNNING")
	}
	p.setState(StatePendingShutdown)
	if p.Ready() {
		t.Error("ready while shutting down")
	}
}
