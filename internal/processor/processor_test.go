package processor

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/abacus-streams/abacus/internal/abacus"
	"github.com/abacus-streams/abacus/internal/config"
	"github.com/abacus-streams/abacus/internal/store"
	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
	"github.com/prometheus/client_golang/prometheus/testutil"
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

// A restore that keeps failing shows in the state (ERROR with the reason)
// while it retries, and a restore that cannot write the store fails the
// session, naming the full disk. (How many failed attempts make a restore
// failing: restore.TestFailureAfterFailingAfterAttempts.)
func TestRestoreFailuresReachTheState(t *testing.T) {
	p := newTestProcessor(t)
	s := &session{p: p, tasks: map[int32]*task{}, assigned: true}
	tk := newTask(4, nil)
	restoring := &fakeRestore{}
	tk.restore = restoring
	s.tasks[4] = tk
	s.publishTasks()

	s.checkRestores()
	if got := p.State(); got != StateRebalancing {
		t.Fatalf("state %s with a task restoring, want REBALANCING", got)
	}
	restoring.failure = errors.New("restore failed 3 times in a row, retrying: query changelog watermarks: Local: Timed out")
	s.checkRestores()
	if got, why := p.State(), p.LastError(); got != StateError || !strings.Contains(why, "restore task 4") || !strings.Contains(why, "Timed out") {
		t.Fatalf("state %s (%q) while the restore keeps failing, want ERROR naming the task and the error", got, why)
	}
	if p.Ready() {
		t.Error("ready while a restore keeps failing")
	}
	restoring.failure = nil // an attempt got through
	s.checkRestores()
	if got := p.State(); got != StateRebalancing {
		t.Fatalf("state %s once the restore stopped failing, want REBALANCING", got)
	}

	restoring.err = fmt.Errorf("restore partition 4: %w", &store.DiskFullError{Dir: "/data", Need: 40 << 20})
	restoring.finished = true
	s.checkRestores()
	if !errors.Is(s.err, syscall.ENOSPC) || !strings.Contains(s.err.Error(), "restore task 4: restore partition 4: no space left on device") {
		t.Fatalf("session error %v after a restore could not write the store, want it to end the session naming the full disk", s.err)
	}
	if tk.active.Load() {
		t.Error("a task whose restore failed became active")
	}
}

// fakeRestore is a restore whose outcome the test sets.
type fakeRestore struct {
	finished     bool
	err, failure error
}

func (f *fakeRestore) Finished() bool                        { return f.finished }
func (f *fakeRestore) Result() (start, end int64, err error) { return -1, -1, f.err }
func (f *fakeRestore) Failure() error                        { return f.failure }
func (f *fakeRestore) Stop()                                 {}

// Started without a store (it could not open on a full disk), Run waits in
// state ERROR with the reason, and opens the store once the disk has room.
func TestAwaitStoreOpensOnceTheDiskHasRoom(t *testing.T) {
	dir := t.TempDir()
	var attempts atomic.Int32
	var opened *store.DB
	var p *Processor
	var reasons []string // by the loop's goroutine, read after awaitStore returns
	cfg := Config{Config: config.Default(),
		OpenStore: func() (*store.DB, error) {
			if attempts.Add(1) == 1 {
				return nil, fmt.Errorf("open store at %s: %w", dir, &store.DiskFullError{Dir: dir, Need: 40 << 20})
			}
			db, err := store.Open(store.Config{Dir: dir})
			opened = db
			return db, err
		},
		OnStateChange: func(_, to State, _ []abacus.TaskStatus) {
			if to == StateError {
				reasons = append(reasons, p.LastError())
			}
		},
	}
	p, err := New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.closeStore)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := p.awaitStore(ctx); err != nil {
		t.Fatalf("awaitStore: %v", err)
	}
	if len(reasons) != 1 || !strings.Contains(reasons[0], "open state store: open store at") || !strings.Contains(reasons[0], "no space left on device") {
		t.Errorf("while the disk was full the state went to ERROR with reasons %q, want once, naming the full disk", reasons)
	}
	if p.db == nil || p.db != opened || attempts.Load() != 2 {
		t.Errorf("store not opened on the second attempt (attempts %d)", attempts.Load())
	}
}

// A record the consumer hands over again after it was counted is dropped
// (librdkafka can, around the pause of a rebalance); one past it counts.
func TestRedeliveredRecordIsNotCountedTwice(t *testing.T) {
	p := newTestProcessor(t)
	p.numPartitions.Store(1)
	s := &session{p: p, log: p.log, ctx: context.Background(), tasks: map[int32]*task{}, assigned: true,
		input: "in", snap: p.db.Snapshot()}
	tk := newTask(0, p.db.Partition(0))
	tk.active.Store(true)
	s.tasks[0] = tk
	topic := "in"
	record := func(offset int64) *kafka.Message {
		return &kafka.Message{TopicPartition: kafka.TopicPartition{Topic: &topic, Partition: 0, Offset: kafka.Offset(offset)}, Key: []byte("k")}
	}
	for _, off := range []int64{10, 11, 11, 10, 12} {
		if err := s.process(record(off)); err != nil {
			t.Fatal(err)
		}
	}
	if got := tk.dirty["k"]; got != 3 {
		t.Errorf("k counted %d for records 10, 11 and 12 delivered with 11 and 10 again, want 3", got)
	}
	if got := testutil.ToFloat64(p.metrics.redelivered); got != 2 {
		t.Errorf("abacus_records_redelivered_total = %v, want 2", got)
	}
	if tk.nextOffset != 13 || tk.rewindTo != 10 {
		t.Errorf("offset to commit %d from %d, want 13 from 10", tk.nextOffset, tk.rewindTo)
	}
}

// A member out of reach of the group coordinator for long enough that the
// group may have given its tasks away starts no commit: its changelog
// records would land among the new owner's. The counts wait; once the
// membership is confirmed they go in the next batch. Buffers at twice the
// cache's budget go regardless.
func TestUnconfirmedMemberStartsNoBatch(t *testing.T) {
	p := newTestProcessor(t)
	p.numPartitions.Store(1)
	batches := make(chan *commitBatch, 1)
	s := &session{p: p, log: p.log, ctx: context.Background(), batchCtx: context.Background(),
		tasks: map[int32]*task{}, assigned: true, input: "in", snap: p.db.Snapshot(), committer: &committer{batches: batches}}
	tk := newTask(0, p.db.Partition(0))
	tk.active.Store(true)
	s.tasks[0] = tk
	topic := "in"
	count := func(offset int64) {
		t.Helper()
		msg := &kafka.Message{TopicPartition: kafka.TopicPartition{Topic: &topic, Partition: 0, Offset: kafka.Offset(offset)}, Key: []byte("k")}
		if err := s.process(msg); err != nil {
			t.Fatal(err)
		}
	}
	commitDue := func() *commitBatch {
		t.Helper()
		s.lastCommit = time.Now().Add(-time.Hour)
		if err := s.commitIfDue(); err != nil {
			t.Fatal(err)
		}
		select {
		case b := <-batches:
			s.inflight = nil // as if committed
			return b
		default:
			return nil
		}
	}
	countsOf := func(b *commitBatch) map[string]int64 {
		if b == nil || len(b.tasks) != 1 {
			return nil
		}
		return b.tasks[0].counts
	}

	count(10)
	s.membership.unconfirmed = true
	if b := commitDue(); b != nil {
		t.Fatalf("unconfirmed: a batch started with counts %v, want none", countsOf(b))
	}
	count(11)
	s.membership.unconfirmed = false
	if got := countsOf(commitDue()); got["k"] != 2 {
		t.Errorf("confirmed: the batch holds %v, want k=2 (both records counted while it waited)", got)
	}

	count(12)
	s.membership.unconfirmed = true
	s.cacheBytes = 2 * p.cfg.CacheMaxBytes
	if got := countsOf(commitDue()); got["k"] != 3 {
		t.Errorf("unconfirmed with the buffers at twice the cache's budget: the batch holds %v, want k=3", got)
	}
}

// A task the group has revoked answers no lookup and drops out of scans
// while its member commits its last work: the group may have another
// member counting it already, past this store's last commit.
func TestTaskHandingOverAnswersNoLookup(t *testing.T) {
	p := newTestProcessor(t)
	p.numPartitions.Store(1)
	if err := p.db.Partition(0).Commit(store.Batch{Counts: map[string]int64{"k": 7}, Checkpoint: 3}); err != nil {
		t.Fatal(err)
	}
	v := &taskView{partition: 0, store: p.db.Partition(0)}
	v.active.Store(true)
	p.tasks.Store(&map[int32]*taskView{0: v})
	if n, _, found, err := p.Get(p.cfg.Store, []byte("k")); err != nil || !found || n != 7 {
		t.Fatalf("Get(k) of an active task = %d %v %v, want 7", n, found, err)
	}
	v.handingOver.Store(true)
	if n, _, _, err := p.Get(p.cfg.Store, []byte("k")); !errors.Is(err, abacus.ErrHandingOver) {
		t.Errorf("Get(k) while handing over = %d, %v; want ErrHandingOver", n, err)
	}
	items, covered, err := p.ScanLocal(p.cfg.Store, store.ScanOptions{})
	if err != nil || len(items) != 0 || len(covered) != 0 {
		t.Errorf("ScanLocal while handing over = %v covering %v (%v), want nothing", items, covered, err)
	}
}
