// Package standby keeps this member's standby tasks: warm copies of tasks
// that other members run, each tailing its task's changelog partition
// into this member's store with a checkpoint of its own, as a restore
// does but without end (docs/state.md, "Standby replicas"). When the
// group gives this member one of those tasks, its restore starts from the
// standby's checkpoint and reads only the delta.
//
// A Runner owns one goroutine and one consumer for every standby task of
// the member. It also owns the cleanup of task stores that are neither
// active nor standby here: a revoked task's or a dropped standby's store
// is wiped after the cleanup delay, unless it is a task or a standby
// again by then. Every write to a store that is not an active task's goes
// through that goroutine, so a standby never writes a store that a task's
// restore writes: Release hands a partition over synchronously.
package standby

import (
	"context"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/abacus-streams/abacus/internal/abacus"
	"github.com/abacus-streams/abacus/internal/config"
	"github.com/abacus-streams/abacus/internal/store"
	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
	"github.com/prometheus/client_golang/prometheus"
)

// Config is what a Runner needs.
type Config struct {
	config.Config
	DB *store.DB
	// Inspector is the member's consumer for offset queries (see
	// restore.Config.Inspector).
	Inspector func() (*kafka.Consumer, error)
	// Active reports whether a partition is a task of this member (active
	// or restoring): no standby runs there, and its store is not wiped.
	// It is called on the Runner's goroutine and must not block.
	Active func(p int32) bool
	// OnApplied, if set, is given the updates a standby made readable in
	// its store, each key's latest, in changelog order, after every
	// checkpoint, once committed; they are gathered only while Listening
	// (if set) says someone listens. OnDropped is told when a standby
	// stops (released, promoted, moved away). All are called on the
	// Runner's goroutine and must not block: a subscription hub's
	// Publish, Serving and EndPartition.
	OnApplied func([]abacus.Update)
	Listening func() bool
	OnDropped func(p int32)
	Metrics   Metrics
	Logger    *slog.Logger
}

// Metrics are the Runner's instruments.
type Metrics struct {
	Lag     *prometheus.GaugeVec   // {partition}: records behind the changelog's end
	Applied *prometheus.CounterVec // {partition}: changelog records applied
	Wipes   *prometheus.CounterVec // {reason}: stores wiped and started over
}

// Runner keeps the member's standby tasks.
type Runner struct {
	cfg    Config
	log    *slog.Logger
	topic  string
	cancel context.CancelFunc
	done   chan struct{}

	// want is the latest standby set asked for (Set); wake says it or a
	// command is waiting.
	want atomic.Pointer[[]int32]
	wake chan struct{}
	mu   sync.Mutex
	cmds []command

	status atomic.Pointer[[]abacus.TaskStatus]
	holds  atomic.Pointer[map[int32]bool]
}

// command is a request served on the Runner's goroutine.
type command struct {
	partition int32
	release   bool      // stop tailing the partition (it becomes a task here)
	linger    time.Time // else: wipe the partition's store at this time
	reply     chan struct{}
}

// Start starts the Runner's goroutine; it runs until ctx ends or Stop.
func Start(ctx context.Context, cfg Config) *Runner {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithCancel(ctx)
	r := &Runner{cfg: cfg, log: cfg.Logger.With("component", "standby"), topic: cfg.ChangelogTopic(),
		cancel: cancel, done: make(chan struct{}), wake: make(chan struct{}, 1)}
	r.status.Store(&[]abacus.TaskStatus{})
	r.holds.Store(&map[int32]bool{})
	go r.run(ctx)
	return r
}

// Set asks for exactly these standby tasks; it never blocks, and a later
// call replaces an earlier one not yet served. Partitions that are tasks
// here (Config.Active) are left out when served.
func (r *Runner) Set(partitions []int32) {
	ps := slices.Clone(partitions)
	r.want.Store(&ps)
	r.poke()
}

// Release stops the standby of partition p, writes its checkpoint, and
// cancels a pending wipe of its store; it returns once the Runner no
// longer writes p's store, so that a task's restore can take it over.
// The caller marks p active (Config.Active) first, so that a Set served
// meanwhile does not take p back.
func (r *Runner) Release(p int32) {
	reply := make(chan struct{})
	r.send(command{partition: p, release: true, reply: reply})
	select {
	case <-reply:
	case <-r.done:
	}
}

// Linger wipes partition p's store at the given time, unless p is a task
// or a standby here by then.
func (r *Runner) Linger(p int32, at time.Time) {
	r.send(command{partition: p, linger: at})
}

// Status describes the standby tasks, by partition.
func (r *Runner) Status() []abacus.TaskStatus { return *r.status.Load() }

// Holds reports whether partition p is a standby task here now.
func (r *Runner) Holds(p int32) bool { return (*r.holds.Load())[p] }

// Stop ends the Runner: every standby writes its checkpoint first.
func (r *Runner) Stop() {
	r.cancel()
	<-r.done
}

func (r *Runner) send(c command) {
	r.mu.Lock()
	r.cmds = append(r.cmds, c)
	r.mu.Unlock()
	r.poke()
}

func (r *Runner) poke() {
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

func (r *Runner) takeCommands() []command {
	r.mu.Lock()
	defer r.mu.Unlock()
	cmds := r.cmds
	r.cmds = nil
	return cmds
}
