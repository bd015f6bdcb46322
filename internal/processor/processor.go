package processor

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/abacus-streams/abacus/internal/abacus"
	"github.com/abacus-streams/abacus/internal/config"
	"github.com/abacus-streams/abacus/internal/partitioner"
	"github.com/abacus-streams/abacus/internal/processor/restore"
	"github.com/abacus-streams/abacus/internal/processor/standby"
	"github.com/abacus-streams/abacus/internal/processor/topics"
	"github.com/abacus-streams/abacus/internal/store"
	"github.com/prometheus/client_golang/prometheus"
)

// State is the lifecycle state of the instance, named as Kafka Streams names it.
type State string

// The states of KafkaStreams.State.
const (
	StateCreated         State = "CREATED"
	StateRebalancing     State = "REBALANCING"
	StateRunning         State = "RUNNING"
	StatePendingShutdown State = "PENDING_SHUTDOWN"
	StateNotRunning      State = "NOT_RUNNING"
	StateError           State = "ERROR"
)

// AllStates lists every state, for gauges and documents.
var AllStates = []State{StateCreated, StateRebalancing, StateRunning, StatePendingShutdown, StateNotRunning, StateError}

// Config is what the processor needs of the instance configuration.
type Config struct {
	config.Config
	// Logger and Registerer default to a discarding logger and a registry
	// of its own.
	Logger     *slog.Logger
	Registerer prometheus.Registerer
	// OnCommit, if set, is called by the committer goroutine with every
	// count made durable by a commit, one batch at a time and in order; it
	// must not block (SSE fan-out queues the work).
	OnCommit func(updates []abacus.Update)
	// OnWindowCommit, if set, is called likewise with every window of a
	// windowed store made durable by a commit, store by store.
	OnWindowCommit func(store string, updates []abacus.WindowUpdate)
	// OnStandbyApplied, OnStandbyListening and OnStandbyDropped, if set,
	// are told what a standby made readable in its store while someone
	// listens, and when a standby stops (standby.Config's OnApplied,
	// Listening and OnDropped): live streams of copies.
	OnStandbyApplied   func(updates []abacus.Update)
	OnStandbyListening func() bool
	OnStandbyDropped   func(partition int32)
	// OnAssignment, if set, is called by the loop after every
	// change of this member's tasks; it must not block.
	OnAssignment func(partitions []int32)
	// OnStateChange, if set, is called on every state transition; it must
	// not block.
	OnStateChange func(from, to State, tasks []abacus.TaskStatus)
	// Seed, if set, fills a task store that has no checkpoint from a
	// peer's copy before its changelog restore (restore.Config.Seed).
	Seed func(ctx context.Context, partition int32, st *store.Partition) (restore.Seeded, error)
	// OpenStore opens the state store when New was given none because it
	// could not be opened at start (a full disk): Run then opens it itself,
	// retrying in state ERROR with the reason, and closes it when it ends.
	OpenStore func() (*store.DB, error)
}

// Processor runs the counting pipeline of one instance.
type Processor struct {
	cfg Config
	log *slog.Logger
	// db is set before the first session starts (by New, or by Run once
	// it could open the store) and never changes after; openDB is the
	// same for the gauges, which read it from other goroutines.
	db      *store.DB
	openDB  atomic.Pointer[store.DB]
	part    partitioner.Func
	metrics *metrics

	numPartitions atomic.Int32
	state         atomic.Value // State
	heartbeat     atomic.Int64 // unix nanos of the loop's last turn
	tasks         atomic.Pointer[map[int32]*taskView]
	lastErr       atomic.Value // string
	unconfirmed   atomic.Bool  // see membershipWatch
	rejoin        chan string  // Rejoin's requests to the session loop

	// Standby tasks (standbys.go): active holds the partitions that are
	// tasks here; standbyWant the placement's last word.
	activeMu    sync.Mutex
	active      map[int32]bool
	standby     atomic.Pointer[standby.Runner]
	standbyWant atomic.Pointer[[]int32]

	// windowed are the windowed stores (windows.go), in configuration
	// order.
	windowed []*windowedStore

	mismatchOnce sync.Once
	insp         inspector
}

// New builds a processor over an open store database, or over none when
// cfg.OpenStore is to open it in Run. It has no side effects.
func New(cfg Config, db *store.DB) (*Processor, error) {
	if db == nil && cfg.OpenStore == nil {
		return nil, errors.New("processor: no store and no way to open one")
	}
	part, err := partitioner.Named(cfg.Partitioner)
	if err != nil {
		return nil, err
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Registerer == nil {
		cfg.Registerer = prometheus.NewRegistry()
	}
	p := &Processor{cfg: cfg, log: cfg.Logger.With("component", "processor"), db: db, part: part, rejoin: make(chan string, 1), active: map[int32]bool{}}
	p.openDB.Store(db)
	p.metrics = newMetrics(cfg.Registerer)
	p.metrics.lastCommit.SetToCurrentTime()
	for _, state := range []string{"active", "restoring", "standby"} {
		cfg.Registerer.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "abacus_tasks", Help: "Tasks of this member by state: active, restoring (becoming active), standby (warm copies of other members' tasks).",
			ConstLabels: prometheus.Labels{"state": state},
		}, func() float64 { return float64(p.tasksIn(state)) }))
	}
	for _, spec := range cfg.Windows {
		spec = spec.WithDefaults()
		p.windowed = append(p.windowed, &windowedStore{spec: spec, changelog: cfg.WindowChangelogTopic(spec.Store), output: spec.OutputTopic})
		p.metrics.late.WithLabelValues(spec.Store).Add(0)
	}
	cfg.Registerer.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "abacus_store_disk_bytes", Help: "Bytes the state store takes on disk (LSM tree and value log)."},
			func() float64 {
				if db := p.openDB.Load(); db != nil {
					lsm, vlog := db.Size()
					return float64(lsm + vlog)
				}
				return 0
			}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "abacus_store_keys_estimate", Help: "Keys in the state store's on-disk tables (an estimate: all versions, not the memtables)."},
			func() float64 {
				if db := p.openDB.Load(); db != nil {
					return float64(db.KeysEstimate())
				}
				return 0
			}),
	)
	p.setState(StateCreated)
	empty := map[int32]*taskView{}
	p.tasks.Store(&empty)
	p.heartbeat.Store(time.Now().UnixNano())
	return p, nil
}

// Rejoin asks the session to leave the consumer group and join it again,
// which makes the group rebalance: the cure for partitions that no member
// owns in a Stable group (package discovery's orphan watch). reason labels
// abacus_group_rejoins_total. It never blocks; requests coalesce, and one
// made between sessions is served by the next.
func (p *Processor) Rejoin(reason string) {
	select {
	case p.rejoin <- reason:
	default:
	}
}

// State is the current lifecycle state.
func (p *Processor) State() State { return p.state.Load().(State) }

func (p *Processor) setState(s State) {
	old, _ := p.state.Load().(State)
	if old == s {
		return
	}
	p.state.Store(s)
	if p.cfg.OnStateChange != nil && old != "" {
		p.cfg.OnStateChange(old, s, p.Tasks())
	}
	for _, st := range AllStates {
		v := 0.0
		if st == s {
			v = 1
		}
		p.metrics.state.WithLabelValues(string(st)).Set(v)
	}
	p.log.Info("state changed", "state", string(s))
}

// LastError is the reason of the current ERROR state, empty otherwise.
func (p *Processor) LastError() string {
	if p.State() != StateError {
		return ""
	}
	s, _ := p.lastErr.Load().(string)
	return s
}

// Ready reports whether the instance is RUNNING with every task restored.
func (p *Processor) Ready() bool {
	if p.State() != StateRunning {
		return false
	}
	for _, t := range *p.tasks.Load() {
		if !t.active.Load() {
			return false
		}
	}
	return true
}

// Alive reports whether the session loop has turned within bound; the loop
// turns at least every poll timeout even when idle or the broker is away.
func (p *Processor) Alive(bound time.Duration) bool {
	s := p.State()
	if s == StateNotRunning || s == StateCreated || s == StateError {
		return true // no loop expected to turn (ERROR retries on its own); liveness is the process's
	}
	return time.Since(time.Unix(0, p.heartbeat.Load())) < bound
}

// NumPartitions is the input topic's partition count, 0 before Run found it.
func (p *Processor) NumPartitions() int32 { return p.numPartitions.Load() }

// PartitionOf is the partition of key under the configured partitioner.
func (p *Processor) PartitionOf(key []byte) (int32, error) {
	n := p.numPartitions.Load()
	if n == 0 {
		return 0, abacus.ErrRestoring
	}
	return p.part(key, n), nil
}

// StoreName is the one store this processor keeps.
func (p *Processor) StoreName() string { return p.cfg.Store }

// Get returns the committed count of key from this instance's store.
// It fails with one of abacus's errors when it cannot answer.
func (p *Processor) Get(storeName string, key []byte) (value int64, partition int32, found bool, err error) {
	value, partition, found, _, err = p.GetAt(storeName, key)
	return value, partition, found, err
}

// GetAt is Get with the position the answer reflects: the input offset
// of the key's partition below which every record is counted in it (-1
// when not known yet). It is read before the count, so the count holds
// at least those records.
func (p *Processor) GetAt(storeName string, key []byte) (value int64, partition int32, found bool, position int64, err error) {
	if storeName != p.cfg.Store {
		return 0, 0, false, -1, abacus.ErrUnknownStore
	}
	if partition, err = p.PartitionOf(key); err != nil {
		return 0, 0, false, -1, err
	}
	t, err := p.answering(partition)
	if err != nil {
		return 0, partition, false, -1, err
	}
	position = t.readUpTo.Load()
	value, found, err = t.store.Get(key)
	return value, partition, found, position, err
}

// tasksIn counts this member's tasks in state: active, restoring or
// standby.
func (p *Processor) tasksIn(state string) int {
	if state == "standby" {
		if r := p.standby.Load(); r != nil {
			return len(r.Status())
		}
		return 0
	}
	n := 0
	for _, t := range *p.tasks.Load() {
		if t.status().State == state {
			n++
		}
	}
	return n
}

// answering is the task of partition here if it answers reads of its
// committed state, or one of abacus's errors saying why it does not.
func (p *Processor) answering(partition int32) (*taskView, error) {
	t, ok := (*p.tasks.Load())[partition]
	switch {
	case !ok:
		return nil, abacus.ErrNotOwned
	case !t.active.Load():
		return nil, abacus.ErrRestoring
	case t.handingOver.Load():
		return nil, abacus.ErrHandingOver
	case p.unconfirmed.Load():
		return nil, abacus.ErrUnconfirmed
	}
	return t, nil
}

// WaitPosition waits until the task of input partition here has every
// record below offset+1 counted and durable (stored and committed): a
// read after it includes the record at offset. It returns the position
// reached, the input offset below which every record is durable. It
// waits through a restore; when ctx ends first it returns the position
// with abacus.ErrNotYet; it fails at once with abacus.ErrNotOwned when the
// partition is not a task here, and with abacus.ErrHandingOver when the
// task is leaving.
func (p *Processor) WaitPosition(ctx context.Context, partition int32, offset int64) (int64, error) {
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		t, ok := (*p.tasks.Load())[partition]
		switch {
		case !ok:
			return -1, abacus.ErrNotOwned
		case t.handingOver.Load():
			return -1, abacus.ErrHandingOver
		}
		// A task that restores waits on: its position comes once active.
		if pos := t.readUpTo.Load(); t.active.Load() && !p.unconfirmed.Load() && pos > offset {
			return pos, nil
		}
		select {
		case <-ctx.Done():
			return t.readUpTo.Load(), abacus.ErrNotYet
		case <-tick.C:
		}
	}
}

// Copy is an answer from any copy of a key's task on this member.
type Copy struct {
	Value     int64
	Partition int32
	Found     bool
	// Lag is the changelog records the copy had not applied when it last
	// looked; Stale says the copy is not the task's committed state here
	// (a standby, a restoring task, a task being handed over or whose
	// membership is unconfirmed).
	Lag   int64
	Stale bool
	// Position is GetAt's, when the task's committed state answered (not
	// Stale); -1 otherwise.
	Position int64
}

// GetCopy answers key from the task here when it can answer (Get), and
// otherwise from any other copy of the task here that lags at most maxLag
// changelog records behind the changelog's end it last saw: a standby, or
// the store of a task that restores (from its checkpoint), is being
// handed over or whose membership is unconfirmed. It fails with
// abacus.ErrNotOwned when there is no copy here, and with an
// *abacus.StaleError when the copy here lags more.
func (p *Processor) GetCopy(storeName string, key []byte, maxLag int64) (Copy, error) {
	value, partition, found, position, err := p.GetAt(storeName, key)
	if err == nil {
		return Copy{Value: value, Partition: partition, Found: found, Position: position}, nil
	}
	if errors.Is(err, abacus.ErrUnknownStore) || p.numPartitions.Load() == 0 {
		return Copy{Position: -1}, err // no store, or no partition yet
	}
	lag, slice, ok := p.copyOf(partition)
	if !ok {
		return Copy{Partition: partition, Position: -1}, err
	}
	if lag > maxLag {
		return Copy{Partition: partition, Lag: lag, Stale: true, Position: -1}, &abacus.StaleError{Lag: lag}
	}
	value, found, err = slice.Get(key)
	return Copy{Value: value, Partition: partition, Found: found, Lag: lag, Stale: true, Position: -1}, err
}

// copyOf finds a copy of partition's store here other than an active
// task that answers, and its lag.
func (p *Processor) copyOf(partition int32) (lag int64, slice *store.Partition, ok bool) {
	if t, ok := (*p.tasks.Load())[partition]; ok {
		if t.active.Load() {
			return 0, t.store, true // handing over or unconfirmed: what this member committed
		}
		// The store's own checkpoint: a standby's, handed over, is there
		// before the restore reads it.
		if cp, err := t.store.Checkpoint(); err != nil || cp < 0 {
			return 0, nil, false // restoring from nothing, or being seeded
		}
		return max(t.restoreTotal.Load()-t.restoreDone.Load(), 0), t.store, true
	}
	r := p.standby.Load()
	if r == nil {
		return 0, nil, false
	}
	for _, st := range r.Status() {
		if st.Partition == partition && st.Lag != nil && st.Checkpoint >= 0 {
			return *st.Lag, p.db.Partition(partition), true
		}
	}
	return 0, nil, false
}

// Tasks describes this instance's tasks, by partition.
func (p *Processor) Tasks() []abacus.TaskStatus {
	views := *p.tasks.Load()
	out := make([]abacus.TaskStatus, 0, len(views))
	for _, id := range slices.Sorted(maps.Keys(views)) {
		out = append(out, views[id].status())
	}
	return out
}

// StandbyTasks describes this instance's standby tasks, by partition.
func (p *Processor) StandbyTasks() []abacus.TaskStatus {
	if r := p.standby.Load(); r != nil {
		return r.Status()
	}
	return []abacus.TaskStatus{}
}

// Run consumes and counts until ctx is cancelled, then shuts down
// gracefully within the configured timeout. A session that fails is
// restarted with backoff; Run returns an error only for a failure that a
// restart cannot mend (bad configuration, on_error=fail).
func (p *Processor) Run(ctx context.Context) error {
	n, err := topics.Ensure(ctx, p.cfg.Config, p.log)
	if err != nil {
		p.setState(StateError)
		p.lastErr.Store(err.Error())
		return err
	}
	p.numPartitions.Store(n)
	// Created now, so that it is connected when the first restore asks it.
	if _, err := p.inspectorClient(); err != nil {
		p.setState(StateError)
		p.lastErr.Store(err.Error())
		return err
	}
	defer p.closeInspector()
	if p.db == nil {
		defer p.closeStore()
	}
	defer p.stopStandby()
	backoff := time.Second
	for {
		if err := p.awaitStore(ctx); err != nil {
			if ctx.Err() != nil {
				p.setState(StateNotRunning)
				return nil
			}
			p.lastErr.Store(err.Error())
			p.setState(StateError)
			return err
		}
		p.startStandby(ctx)
		began := time.Now()
		err := p.runSession(ctx)
		if time.Since(began) > time.Minute {
			backoff = time.Second // a healthy session earns a quick restart
		}
		if ctx.Err() != nil {
			p.setState(StateNotRunning)
			return nil
		}
		var fatal *fatalError
		if errors.As(err, &fatal) {
			p.setState(StateError)
			p.lastErr.Store(err.Error())
			return err
		}
		p.lastErr.Store(err.Error())
		p.metrics.sessionRestarts.Inc()
		p.log.Error("session failed; restarting", "error", err, "backoff", backoff)
		// ERROR until the next session starts: not ready, with the reason.
		p.setState(StateError)
		select {
		case <-ctx.Done():
			p.setState(StateNotRunning)
			return nil
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 30*time.Second)
	}
}

// storeWait is how often Run asks again whether the store can be opened
// or written while the disk is full: a statfs, cheap enough to notice
// returning space within a second.
const storeWait = time.Second

// awaitStore returns once the store is open and its disk has room for a
// session's writes; meanwhile the state is ERROR, with the full disk as
// the reason, and no session runs (it would only fail at its first commit
// or restore). It fails for an open error other than a full disk, and when
// ctx ends.
func (p *Processor) awaitStore(ctx context.Context) error {
	var since time.Time
	var nextLog time.Time
	for {
		err := p.storeWritable()
		if err == nil {
			if !since.IsZero() {
				p.log.Info("the state store's disk has room again", "waited", time.Since(since).Round(time.Millisecond))
			}
			return nil
		}
		if !store.IsDiskFull(err) {
			return err
		}
		if since.IsZero() {
			since = time.Now()
		}
		if now := time.Now(); now.After(nextLog) {
			p.log.Error("state store cannot write: waiting for disk space before starting a session", "error", err, "waited", now.Sub(since).Round(time.Second))
			nextLog = now.Add(time.Minute)
		}
		p.lastErr.Store(err.Error())
		p.setState(StateError)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(storeWait):
		}
	}
}

// storeWritable opens the store if it is not open yet, then checks that
// its disk has room.
func (p *Processor) storeWritable() error {
	if p.db == nil {
		db, err := p.cfg.OpenStore()
		if err != nil {
			return fmt.Errorf("open state store: %w", err)
		}
		p.db = db
		p.openDB.Store(db)
	}
	if err := p.db.CheckSpace(); err != nil {
		return fmt.Errorf("state store: %w", err)
	}
	return nil
}

// closeStore closes a store Run opened.
func (p *Processor) closeStore() {
	if p.db == nil {
		return
	}
	p.openDB.Store(nil)
	if err := p.db.Close(); err != nil {
		p.log.Error("close state store", "error", err)
	}
}

// fatalError ends Run instead of restarting the session.
type fatalError struct{ err error }

func (e *fatalError) Error() string { return e.err.Error() }
func (e *fatalError) Unwrap() error { return e.err }

func fatalf(format string, a ...any) error { return &fatalError{fmt.Errorf(format, a...)} }

// beat records that the session loop is alive (also while it waits on the
// broker, which is not being stuck).
func (p *Processor) beat() { p.heartbeat.Store(time.Now().UnixNano()) }

func (p *Processor) setUnconfirmed(v bool) {
	p.unconfirmed.Store(v)
	if v {
		p.metrics.unconfirmed.Set(1)
	} else {
		p.metrics.unconfirmed.Set(0)
	}
}
