package standby

import (
	"cmp"
	"context"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"time"

	"github.com/abacus-streams/abacus/internal/abacus"
	"github.com/abacus-streams/abacus/internal/config"
	"github.com/abacus-streams/abacus/internal/kafkaconf"
	"github.com/abacus-streams/abacus/internal/processor/restore"
	"github.com/abacus-streams/abacus/internal/store"
	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
)

// checkpointEvery is how often a standby that applied records writes its
// checkpoint, and how often lag and status are published: a restart on
// the same disk replays at most this much.
const checkpointEvery = time.Second

// retryAfter is how long a standby that could not start or write waits
// before it tries again.
const retryAfter = 5 * time.Second

// loop is the Runner goroutine's state.
type loop struct {
	r         *Runner
	ctx       context.Context
	consumer  *kafka.Consumer
	tails     map[int32]*tail
	wantSeen  *[]int32
	lingering map[int32]time.Time // stores to wipe, and when
	// listening: OnApplied is set and someone listens, as of the last
	// poll; only then are applied updates gathered.
	listening bool
	retryAt   map[int32]time.Time // standbys that failed to start or write
	lastTick  time.Time
}

// tail is one standby task.
type tail struct {
	p     int32
	label string
	st    *store.Partition
	w     *store.Restorer
	// last is the offset of the last record applied (the checkpoint it
	// started from before any), cp the checkpoint written, eof the end of
	// the log the consumer last reported (-1: none yet), high the end
	// read when the standby started.
	last, cp, eof, high int64
	applied             int // records since the last tick
	// pending is what was applied since the checkpoint, each key's
	// latest, for Config.OnApplied.
	pending map[string]abacus.Update
	// windowed tail the task's windowed stores' changelogs, beside the
	// counts' (windowed.go).
	windowed []*windowTail
}

func (r *Runner) run(ctx context.Context) {
	defer close(r.done)
	l := &loop{r: r, ctx: ctx, tails: map[int32]*tail{}, lingering: map[int32]time.Time{}, retryAt: map[int32]time.Time{}}
	defer l.close()
	idle := time.NewTicker(100 * time.Millisecond)
	defer idle.Stop()
	for ctx.Err() == nil {
		cmds := r.takeCommands()
		for _, c := range cmds {
			l.serve(c)
		}
		// A partition that stopped being a task here may be wanted as a
		// standby: every command is a reason to look again.
		if w := r.want.Load(); w != l.wantSeen || len(cmds) > 0 || l.retryDue() {
			l.wantSeen = w
			l.reconcile()
		}
		if len(l.tails) > 0 {
			l.poll()
		} else {
			select {
			case <-ctx.Done():
			case <-r.wake:
			case <-idle.C:
			}
		}
		if time.Since(l.lastTick) >= checkpointEvery {
			l.tick()
		}
	}
}

// serve runs one command.
func (l *loop) serve(c command) {
	if c.release {
		if _, ok := l.tails[c.partition]; ok {
			l.drop(c.partition, false)
			l.r.log.Info("standby task handed over to the task", "task", c.partition)
		}
		delete(l.lingering, c.partition)
		delete(l.retryAt, c.partition)
		l.publish()
		close(c.reply)
		return
	}
	if _, held := l.tails[c.partition]; !held && !l.r.cfg.Active(c.partition) {
		l.lingering[c.partition] = c.linger
	}
}

// wanted is the standby set asked for, without this member's tasks.
func (l *loop) wanted() map[int32]bool {
	want := map[int32]bool{}
	if l.wantSeen != nil {
		for _, p := range *l.wantSeen {
			if !l.r.cfg.Active(p) {
				want[p] = true
			}
		}
	}
	return want
}

func (l *loop) retryDue() bool {
	now := time.Now()
	for _, at := range l.retryAt {
		if !now.Before(at) {
			return true
		}
	}
	return false
}

// reconcile starts and drops standbys to match the set asked for.
func (l *loop) reconcile() {
	want := l.wanted()
	for _, p := range slices.Sorted(maps.Keys(l.tails)) {
		if !want[p] {
			l.drop(p, !l.r.cfg.Active(p))
			l.r.log.Info("standby task dropped", "task", p)
		}
	}
	now := time.Now()
	for _, p := range slices.Sorted(maps.Keys(want)) {
		if _, ok := l.tails[p]; ok || now.Before(l.retryAt[p]) {
			continue
		}
		if err := l.add(p); err != nil {
			l.r.log.Warn("start standby task; retrying", "task", p, "error", err, "retry_in", retryAfter)
			l.retryAt[p] = now.Add(retryAfter)
			continue
		}
		delete(l.retryAt, p)
	}
	for p := range l.retryAt {
		if !want[p] {
			delete(l.retryAt, p)
		}
	}
	l.publish()
}

// add starts the standby of partition p from its store's checkpoint; a
// checkpoint that does not match the changelog is wiped first, as a
// restore does.
func (l *loop) add(p int32) error {
	cfg := l.r.cfg
	if l.consumer == nil {
		c, err := kafkaconf.NewConsumer(kafkaconf.Standby(cfg.Config), l.r.log, kafkaconf.RoleStandby)
		if err != nil {
			return fmt.Errorf("create standby consumer: %w", err)
		}
		l.consumer = c
	}
	insp, err := cfg.Inspector()
	if err != nil {
		return err
	}
	low, high, err := insp.QueryWatermarkOffsets(l.r.topic, p, 5000)
	if err == nil && cfg.ProcessingGuarantee == config.ExactlyOnceV2 {
		high, err = restore.LogEnd(l.ctx, insp, l.r.topic, p) // past an open transaction
	}
	if err != nil {
		return fmt.Errorf("query changelog watermarks: %w", err)
	}
	st := cfg.DB.Partition(p)
	cp, err := st.Checkpoint()
	if err != nil {
		return err
	}
	if cp != store.NoCheckpoint && (cp >= high || cp+1 < low) {
		reason := "checkpoint beyond changelog end"
		if cp+1 < low {
			reason = "checkpoint before changelog start"
		}
		l.r.log.Warn("standby's local state does not match the changelog: wiping it and starting from the start",
			"task", p, "reason", reason, "checkpoint", cp, "changelog_low", low, "changelog_high", high)
		if err := st.Wipe(); err != nil {
			return fmt.Errorf("wipe standby store: %w", err)
		}
		cfg.Metrics.Wipes.WithLabelValues(reason).Inc()
		cp = store.NoCheckpoint
	}
	windowed, wiped, err := l.windowTails(insp, st, cp == store.NoCheckpoint)
	if err != nil {
		return err
	}
	if wiped {
		cp = store.NoCheckpoint
	}
	var w *store.Restorer
	if cfg.ProcessingGuarantee == config.ExactlyOnceV2 {
		w = st.NewRestorer()
	} else if w, err = st.NewRestorerKeepingMax(); err != nil { // see restore: counts only grow
		return err
	}
	start := max(cp+1, low)
	assign := []kafka.TopicPartition{{Topic: &l.r.topic, Partition: p, Offset: kafka.Offset(start)}}
	for _, wt := range windowed {
		assign = append(assign, kafka.TopicPartition{Topic: &wt.topic, Partition: p, Offset: kafka.Offset(wt.start)})
	}
	if err := l.consumer.IncrementalAssign(assign); err != nil {
		w.Cancel()
		for _, wt := range windowed {
			wt.w.Cancel()
		}
		return fmt.Errorf("assign changelog partition: %w", err)
	}
	l.tails[p] = &tail{p: p, label: strconv.Itoa(int(p)), st: st, w: w, last: cp, cp: cp, eof: -1, high: high, pending: map[string]abacus.Update{}, windowed: windowed}
	delete(l.lingering, p)
	l.r.log.Info("standby task started", "task", p, "checkpoint", cp, "changelog_end", high, "records_behind_at_most", max(high-start, 0))
	return nil
}

// drop stops the standby of p after writing its checkpoint; linger has
// its store wiped after the cleanup delay.
func (l *loop) drop(p int32, linger bool) {
	t := l.tails[p]
	if err := l.checkpoint(t); err == nil {
		if err := t.w.Flush(); err != nil {
			l.r.log.Warn("flush standby store", "task", p, "error", err)
		}
	}
	t.w.Cancel()
	l.dropWindowed(t)
	l.count(t)
	if err := l.consumer.IncrementalUnassign(t.assigned(l.r.topic)); err != nil {
		l.r.log.Warn("unassign standby changelog partition", "task", p, "error", err)
	}
	delete(l.tails, p)
	l.r.cfg.Metrics.Lag.DeleteLabelValues(t.label)
	if l.r.cfg.OnDropped != nil {
		l.r.cfg.OnDropped(p)
	}
	if linger {
		l.lingering[p] = time.Now().Add(l.r.cfg.StateCleanupDelay)
	}
}

// poll applies what the consumer has, for up to 50 ms.
func (l *loop) poll() {
	cfg := l.r.cfg
	l.listening = cfg.OnApplied != nil && (cfg.Listening == nil || cfg.Listening())
	switch e := l.consumer.Poll(50).(type) {
	case *kafka.Message:
		t := l.tails[e.TopicPartition.Partition]
		if t != nil && *e.TopicPartition.Topic != l.r.topic {
			if err := l.applyWindowed(t, e); err != nil {
				l.failed(t, err)
			}
			return
		}
		if t == nil || int64(e.TopicPartition.Offset) <= t.last {
			return // dropped meanwhile, or fetched again
		}
		if err := l.apply(t, e); err != nil {
			l.failed(t, err)
		}
	case kafka.PartitionEOF:
		if t := l.tails[e.Partition]; t != nil && e.Topic != nil && *e.Topic == l.r.topic {
			t.eof = int64(e.Offset)
		}
	case kafka.Error:
		if e.IsFatal() {
			l.r.log.Error("standby consumer failed; starting it again", "error", e)
			l.restartConsumer()
			return
		}
		l.r.log.Debug("standby consumer error", "error", e)
	}
}

// apply writes one changelog record to the standby's store.
func (l *loop) apply(t *tail, e *kafka.Message) error {
	var err error
	if e.Value == nil {
		err = t.w.Delete(e.Key)
	} else if n, derr := store.DecodeCount(e.Value); derr != nil {
		l.r.log.Warn("skipping undecodable changelog record", "task", t.p, "offset", int64(e.TopicPartition.Offset), "error", derr)
	} else {
		err = t.w.Put(e.Key, e.Value)
		if l.listening {
			k := string(e.Key)
			// Under at_least_once the store keeps the larger of two
			// values (counts only grow), and so does what is published.
			n = max(n, t.pending[k].Value)
			t.pending[k] = abacus.Update{Key: k, Value: n, Partition: t.p, Offset: int64(e.TopicPartition.Offset)}
		}
	}
	if err != nil {
		return err
	}
	t.last = int64(e.TopicPartition.Offset)
	t.applied++
	if t.w.Full() {
		return l.checkpoint(t)
	}
	return nil
}

// checkpoint writes what the standby applied and its checkpoint.
func (l *loop) checkpoint(t *tail) error {
	if err := l.checkpointWindowed(t); err != nil {
		return err
	}
	if t.last == t.cp {
		return nil
	}
	if err := t.w.Checkpoint(t.last); err != nil {
		return err
	}
	t.cp = t.last
	if len(t.pending) > 0 {
		// Published once readable: a stream that reads the store after
		// an update was published must find it there (Hub.Publish).
		if err := t.w.WaitCommitted(); err != nil {
			return err
		}
		updates := slices.SortedFunc(maps.Values(t.pending), func(a, b abacus.Update) int { return cmp.Compare(a.Offset, b.Offset) })
		clear(t.pending)
		l.r.cfg.OnApplied(updates)
	}
	return nil
}

// failed stops a standby whose store could not be written (a full disk);
// it starts again from its checkpoint later.
func (l *loop) failed(t *tail, err error) {
	l.r.log.Error("standby task could not write its store; retrying", "task", t.p, "error", err, "retry_in", retryAfter)
	t.last = t.cp // nothing past the checkpoint is written
	clear(t.pending)
	t.w.Cancel()
	for _, wt := range t.windowed {
		wt.w.Cancel()
	}
	if uerr := l.consumer.IncrementalUnassign(t.assigned(l.r.topic)); uerr != nil {
		l.r.log.Warn("unassign standby changelog partition", "task", t.p, "error", uerr)
	}
	delete(l.tails, t.p)
	l.retryAt[t.p] = time.Now().Add(retryAfter)
}

// restartConsumer closes the consumer after a fatal error; every standby
// starts again from its checkpoint on a new one.
func (l *loop) restartConsumer() {
	for _, p := range slices.Sorted(maps.Keys(l.tails)) {
		l.drop(p, false)
		l.retryAt[p] = time.Now().Add(retryAfter)
	}
	l.consumer.Close()
	l.consumer = nil
}

// tick writes checkpoints, wipes the stores whose cleanup delay is over,
// and publishes lag and status.
func (l *loop) tick() {
	l.lastTick = time.Now()
	for _, t := range l.tails {
		if err := l.checkpoint(t); err != nil {
			l.failed(t, err)
			continue
		}
		l.count(t)
	}
	for p, at := range l.lingering {
		if l.lastTick.Before(at) {
			continue
		}
		delete(l.lingering, p)
		if _, held := l.tails[p]; held || l.r.cfg.Active(p) {
			continue
		}
		if err := l.r.cfg.DB.Partition(p).Wipe(); err != nil {
			l.r.log.Warn("clean up state of a task that is no longer here", "task", p, "error", err)
			continue
		}
		l.r.log.Info("cleaned up state of a task that is no longer here", "task", p)
	}
	l.publish()
}

// count adds the records applied since the last count to the metric.
func (l *loop) count(t *tail) {
	if t.applied > 0 {
		l.r.cfg.Metrics.Applied.WithLabelValues(t.label).Add(float64(t.applied))
		t.applied = 0
	}
}

// lag is the changelog records the standby has not applied yet.
func (l *loop) lag(t *tail) int64 {
	high := t.high
	if _, hi, err := l.consumer.GetWatermarkOffsets(l.r.topic, t.p); err == nil && hi >= 0 {
		high = hi
	}
	return max(high-max(t.last+1, t.eof), 0)
}

// publish makes the standbys' status, lag and set visible to readers.
func (l *loop) publish() {
	status := make([]abacus.TaskStatus, 0, len(l.tails))
	holds := make(map[int32]bool, len(l.tails))
	for _, p := range slices.Sorted(maps.Keys(l.tails)) {
		t := l.tails[p]
		lag := l.lag(t)
		l.r.cfg.Metrics.Lag.WithLabelValues(t.label).Set(float64(lag))
		status = append(status, abacus.TaskStatus{Partition: p, State: "standby", Checkpoint: t.cp, Lag: &lag})
		holds[p] = true
	}
	l.r.status.Store(&status)
	l.r.holds.Store(&holds)
}

// close writes every standby's checkpoint and closes the consumer.
func (l *loop) close() {
	for _, p := range slices.Sorted(maps.Keys(l.tails)) {
		l.drop(p, false)
	}
	l.publish()
	if l.consumer != nil {
		l.consumer.Close()
	}
}
