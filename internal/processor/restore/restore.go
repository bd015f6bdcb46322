// Package restore brings a task's store up to the end of its changelog
// partition (docs/state.md, "Restore"). A Restorer runs on a goroutine
// of its own and owns the task's store partition until it has finished;
// the processor's loop polls Finished and then takes the result.
package restore

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/abacus-streams/abacus/internal/config"
	"github.com/abacus-streams/abacus/internal/kafkaconf"
	"github.com/abacus-streams/abacus/internal/store"
	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
	"github.com/prometheus/client_golang/prometheus"
)

// restoreChunkRecords bounds the changelog records a restore reads before
// it writes its chunk and checkpoint, also when a few hot keys never fill
// the chunk's bytes: progress is reported, and a crash keeps the work, at
// least this often.
const restoreChunkRecords = 100_000

// openTxnWait bounds how long a restore waits for a transaction open on
// its changelog partition to end (a producer's transaction times out well
// before: transaction.timeout.ms is 10 s); past it the restore fails and is
// retried, rather than end without the transaction's counts.
const openTxnWait = 2 * time.Minute

// Config is what a restore needs.
type Config struct {
	config.Config
	// Inspector is the instance's consumer for offset queries: connected
	// already, never in the group, never fetching.
	Inspector func() (*kafka.Consumer, error)
	// Seed, if set, fills a task store that has no checkpoint from a copy
	// that another member holds (a peer's snapshot of its standby or of
	// its own task) before the changelog restore goes on from the copy's
	// checkpoint. A Seed that fails leaves the store without a
	// checkpoint; the restore then wipes it and reads the changelog from
	// the start.
	Seed func(ctx context.Context, partition int32, st *store.Partition) (Seeded, error)
	// Acquire, if set, is called first on the restore's goroutine and
	// returns once nothing else writes the task's store: a standby of the
	// task on this member hands it over (standby.Runner.Release). The
	// loop that starts the restore never waits for it.
	Acquire func(partition int32)
	Metrics Metrics
	Logger  *slog.Logger
}

// Seeded is what a Seed brought into a task's store.
type Seeded struct {
	// Source names where the copy came from, for the log (a member's name).
	Source string
	// Records and Bytes are the keys written and the bytes received.
	Records, Bytes int64
	// Checkpoint is the copy's checkpoint: the changelog offset it is
	// complete up to.
	Checkpoint int64
}

// Sources of restored records: the restored metrics' source label.
const (
	SourceChangelog = "changelog"
	SourcePeer      = "peer"
)

// Metrics are the restore's instruments, shared by every task's restore.
type Metrics struct {
	Restored      *prometheus.CounterVec // {partition, source}: records applied
	RestoredBytes *prometheus.CounterVec // {partition, source}: bytes applied
	Remaining     *prometheus.GaugeVec   // {partition}: records still to apply
	Wipes         *prometheus.CounterVec // {reason}: stores wiped and restored from the start
}

// Task is the task a restore brings up to date. Checkpoint, Done and
// Total are published for readers on other goroutines: the store's
// checkpoint as the restore moves it, and the changelog records restored
// and to restore.
type Task struct {
	Partition               int32
	Store                   *store.Partition
	Checkpoint, Done, Total *atomic.Int64
}

// Restorer brings one task's store up to the end of its changelog
// partition. It owns the store partition until Finished.
type Restorer struct {
	cfg    Config
	task   Task
	log    *slog.Logger
	cancel context.CancelFunc
	done   chan struct{}
	// err is why the restore gave up (a store write failed), set before
	// done closes; nil when it finished or was cancelled.
	err error
	// failing is the error of the last attempt while the restore retries
	// (a *restoreFailure), nil after an attempt that did not fail.
	failing atomic.Pointer[restoreFailure]
	// start is, under exactly-once, the committed input offset the
	// restored state belongs to, where the task must start (-1: none, or
	// at least once); set before done closes.
	start int64
	// end is the changelog's end offset the restore reached: where the
	// task's own first changelog record must land if no one else writes
	// to the partition (see delivery.Tracker.ForeignChangelogRecords); set
	// before done closes.
	end int64
	// seeded says Seed was tried: once per restore, not on every retry.
	seeded bool
}

// restoreFailure is a restore that keeps failing.
type restoreFailure struct {
	attempts int
	err      error
}

// failingAfter is how many attempts in a row a restore may fail before the
// instance's state says so (ERROR with the reason) while it retries.
const failingAfter = 3

// storeWriteError marks a restore that failed writing the store (a full
// disk): retrying that alone would hide it; it fails the session, which
// waits for the disk in state ERROR.
type storeWriteError struct{ err error }

func (e *storeWriteError) Error() string { return e.err.Error() }
func (e *storeWriteError) Unwrap() error { return e.err }

func storeWrite(err error) error {
	if err == nil {
		return nil
	}
	return &storeWriteError{err}
}

// Start runs the restore of t in its own goroutine, retrying with
// backoff until it succeeds or ctx ends; a store write error ends it at
// once (Result's err). Stop ends it.
func Start(ctx context.Context, cfg Config, t Task) *Restorer {
	ctx, cancel := context.WithCancel(ctx)
	r := &Restorer{cfg: cfg, task: t, log: cfg.Logger.With("task", t.Partition), cancel: cancel, done: make(chan struct{}), start: -1}
	go r.run(ctx)
	return r
}

func (r *Restorer) run(ctx context.Context) {
	defer close(r.done)
	if r.cfg.Acquire != nil {
		r.cfg.Acquire(r.task.Partition)
	}
	backoff := 500 * time.Millisecond
	for attempt := 1; ; attempt++ {
		start, end, err := r.restore(ctx)
		if err == nil {
			r.start, r.end = start, end
		}
		if err == nil || ctx.Err() != nil {
			r.failing.Store(nil)
			return
		}
		var swe *storeWriteError
		if errors.As(err, &swe) {
			r.err = err
			return
		}
		r.failing.Store(&restoreFailure{attempts: attempt, err: err})
		r.log.Warn("restore failed; retrying", "error", err, "attempt", attempt, "retry_in", backoff)
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 10*time.Second)
	}
}

// Result is what a finished restore reached: under exactly-once the input
// offset the task starts at (-1: none, or at least once), the changelog's
// end offset, and why it gave up (a store write failed; nil when it
// finished or was cancelled). Call it once Finished.
func (r *Restorer) Result() (start, end int64, err error) { return r.start, r.end, r.err }

// Stop cancels the restore and waits for its goroutine.
func (r *Restorer) Stop() {
	r.cancel()
	<-r.done
}

// Failure is the error of a restore that failed failingAfter attempts in
// a row and retries, nil otherwise.
func (r *Restorer) Failure() error {
	if f := r.failing.Load(); f != nil && f.attempts >= failingAfter {
		return fmt.Errorf("restore failed %d times in a row, retrying: %w", f.attempts, f.err)
	}
	return nil
}

// Finished reports whether the restore goroutine has returned.
func (r *Restorer) Finished() bool {
	select {
	case <-r.done:
		return true
	default:
		return false
	}
}

// maxRestoreRounds bounds how often a restore goes on because the task's
// input offset moved meanwhile; then it fails, and is retried.
const maxRestoreRounds = 5

// restore runs the restore of docs/state.md: from the checkpoint (or from the
// start, after a wipe) up to the end of the changelog partition. Under
// exactly-once it returns the committed input offset the restored state
// belongs to, read stable before and after the changelog (-1: none): the
// end of the changelog is read only once that offset is stable (a previous
// owner's transaction may have committed it while its changelog records
// are still on their way), and if it moved by the end (another member
// committed the partition meanwhile: a zombie) the restore goes on to the
// new end. The task then starts exactly there, whatever offset the
// consumer fetched on its own at the assignment. It also returns the
// changelog's end offset it reached (Result).
func (r *Restorer) restore(ctx context.Context) (start, end int64, err error) {
	if err := r.seed(ctx); err != nil {
		return -1, -1, err
	}
	if r.cfg.ProcessingGuarantee != config.ExactlyOnceV2 {
		end, err := r.restoreChangelog(ctx)
		return -1, end, err
	}
	insp, err := r.cfg.Inspector()
	if err != nil {
		return -1, -1, err
	}
	before, err := r.waitStableOffset(ctx, insp)
	if err != nil {
		return -1, -1, err
	}
	for round := 1; ; round++ {
		end, err := r.restoreChangelog(ctx)
		if err != nil {
			return -1, -1, err
		}
		after, err := r.waitStableOffset(ctx, insp)
		if err != nil {
			return -1, -1, err
		}
		if after == before {
			// The task's own records are checked to start at end (see
			// foreignChangelogRecords): a marker written since (a previous
			// owner's transaction that ended as the restore read its last
			// record) must be restored past, not taken for another writer.
			logged, err := LogEnd(ctx, insp, r.cfg.ChangelogTopic(), r.task.Partition)
			if err != nil {
				return -1, -1, fmt.Errorf("query changelog end: %w", err)
			}
			if logged <= end {
				return after, end, nil
			}
			if round == maxRestoreRounds {
				return -1, -1, fmt.Errorf("changelog partition %d kept growing while the task restored (to %d, then %d)", r.task.Partition, end, logged)
			}
			r.log.Debug("the changelog grew while the task restored: restoring on to its end", "restored_to", end, "end", logged)
			continue
		}
		if round == maxRestoreRounds {
			return -1, -1, fmt.Errorf("input partition %d: its committed offset kept moving while the task restored (%d, then %d)", r.task.Partition, before, after)
		}
		r.log.Warn("another member committed the task's input while it restored: restoring on to the new end", "offset_before", before, "offset_after", after)
		before = after
	}
}

// seed fills a store without a checkpoint from a peer's copy (Config.Seed),
// once per restore. A copy that fails (cut off, corrupt, no peer holds
// one) is wiped and the changelog restore starts from the beginning; only
// a failure to wipe fails the restore.
func (r *Restorer) seed(ctx context.Context) error {
	if r.cfg.Seed == nil || r.seeded {
		return nil
	}
	r.seeded = true
	cp, err := r.task.Store.Checkpoint()
	if err != nil || cp != store.NoCheckpoint {
		return nil // the changelog restore reads it again, and fails if it must
	}
	began := time.Now()
	got, err := r.cfg.Seed(ctx, r.task.Partition, r.task.Store)
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		r.log.Warn("no copy of the task from a peer: restoring it from the changelog", "reason", err)
		return storeWrite(r.task.Store.Wipe())
	}
	label := strconv.Itoa(int(r.task.Partition))
	r.cfg.Metrics.Restored.WithLabelValues(label, SourcePeer).Add(float64(got.Records))
	r.cfg.Metrics.RestoredBytes.WithLabelValues(label, SourcePeer).Add(float64(got.Bytes))
	r.task.Checkpoint.Store(got.Checkpoint)
	r.log.Info("task seeded from a peer's copy; restoring the rest from the changelog", "source", got.Source,
		"records", got.Records, "bytes", got.Bytes, "checkpoint", got.Checkpoint, "took", time.Since(began).Round(time.Millisecond))
	return nil
}

// target is a store a changelog restores: the task's counts, or one of
// its windowed stores.
type target struct {
	topic      string
	checkpoint func() (int64, error)
	writer     func(keepMax bool) (*store.Restorer, error)
	// windowed is the windowed store restored, nil for the counts.
	windowed *store.WindowedStore
}

// targets are the task's stores, each with its changelog: the counts
// first, then the windowed stores in configuration order.
func (rs *Restorer) targets() ([]target, error) {
	st := rs.task.Store
	out := []target{{
		topic: rs.cfg.ChangelogTopic(), checkpoint: st.Checkpoint,
		writer: func(keepMax bool) (*store.Restorer, error) {
			if keepMax {
				return st.NewRestorerKeepingMax()
			}
			return st.NewRestorer(), nil
		},
	}}
	for _, spec := range rs.cfg.Windows {
		ws, err := st.Windowed(spec.Store)
		if err != nil {
			return nil, err
		}
		out = append(out, target{
			topic: rs.cfg.WindowChangelogTopic(spec.Store), checkpoint: ws.Checkpoint, windowed: ws,
			writer: func(keepMax bool) (*store.Restorer, error) {
				if keepMax {
					return ws.NewRestorerKeepingMax()
				}
				return ws.NewRestorer(), nil
			},
		})
	}
	return out, nil
}

// changelogRestore is one pass of a restore over a changelog partition of
// the task: from the checkpoint (or the start) to the end the changelog
// had when the pass began.
type changelogRestore struct {
	cfg   Config
	t     Task
	log   *slog.Logger
	topic string
	label string
	tgt   target
	w     *store.Restorer
	// streamTime is the largest stream time a windowed store's records
	// carried (store.StreamTimeHeader).
	streamTime int64
	// cp is the store's checkpoint when the pass began; low and high the
	// changelog's bounds then; last the offset of the last record read.
	cp, low, high, last int64
	pending             int           // records read since the last report
	pendingBytes        int64         // their keys' and values' bytes
	began               time.Time     // the assignment
	firstRecord         time.Duration // from the assignment to the first record
	openSince           time.Time     // first end of the log short of high
}

// restoreChangelog restores the task's stores from their changelogs, the
// counts first, and returns the end offset the counts' changelog
// reached. A windowed store whose checkpoint does not match its changelog
// wipes the task and fails the attempt: the next restores every store
// from the start.
func (rs *Restorer) restoreChangelog(ctx context.Context) (end int64, err error) {
	targets, err := rs.targets()
	if err != nil {
		return -1, storeWrite(err)
	}
	for i, tgt := range targets {
		e, err := rs.restoreTarget(ctx, tgt, i == 0)
		if err != nil {
			return -1, err
		}
		if i == 0 {
			end = e
		}
	}
	return end, nil
}

// restoreTarget reads one changelog partition of the task from the
// store's checkpoint (or the start) to its end into the store, and
// returns that end offset. first: the counts' pass, which starts the
// restore's progress over.
func (rs *Restorer) restoreTarget(ctx context.Context, tgt target, first bool) (end int64, err error) {
	r := &changelogRestore{cfg: rs.cfg, t: rs.task, log: rs.log, topic: tgt.topic, tgt: tgt, streamTime: store.NoStreamTime, label: strconv.Itoa(int(rs.task.Partition))}
	if tgt.windowed != nil {
		r.log = r.log.With("windowed_store", tgt.windowed.Name())
	}
	c, err := kafkaconf.NewConsumer(kafkaconf.Restore(r.cfg.Config), r.log, kafkaconf.RoleRestore)
	if err != nil {
		return -1, fmt.Errorf("create restore consumer: %w", err)
	}
	defer c.Close()
	if err := r.bounds(ctx); err != nil {
		return -1, err
	}
	start := max(r.cp+1, r.low)
	if first {
		r.t.Done.Store(0)
		r.t.Total.Store(max(r.high-start, 0))
		r.cfg.Metrics.Remaining.WithLabelValues(r.label).Set(float64(max(r.high-start, 0)))
	} else {
		r.t.Total.Add(max(r.high-start, 0))
	}
	if start >= r.high {
		return r.high, nil
	}
	r.log.Info("restoring task from changelog", "from", start, "to", r.high, "records_at_most", r.high-start)
	r.began = time.Now()
	if err := c.Assign([]kafka.TopicPartition{{Topic: &r.topic, Partition: r.t.Partition, Offset: kafka.Offset(start)}}); err != nil {
		return -1, fmt.Errorf("assign changelog partition: %w", err)
	}
	// Under exactly_once_v2 the changelog, read committed, is the truth.
	// Otherwise a changelog record can land after a newer one (sends of a
	// member that lost its partitions): counts only grow, keep the larger.
	if r.w, err = tgt.writer(r.cfg.ProcessingGuarantee != config.ExactlyOnceV2); err != nil {
		return -1, err
	}
	defer r.w.Cancel() // after a successful Flush there is nothing left to cancel
	r.last = r.cp
	return r.read(ctx, c)
}

// bounds reads the changelog's bounds and the store's checkpoint, and
// wipes the task when the two do not match.
func (r *changelogRestore) bounds(ctx context.Context) error {
	// The changelog's bounds come from the inspector: a client that is
	// connected already and never fetches (a request waits behind a
	// fetch the broker holds on the same connection), where a new
	// client's first query can take most of a second.
	insp, err := r.cfg.Inspector()
	if err != nil {
		return err
	}
	r.low, r.high, err = insp.QueryWatermarkOffsets(r.topic, r.t.Partition, 10000)
	if err == nil && r.cfg.ProcessingGuarantee == config.ExactlyOnceV2 {
		// Read committed, the high watermark above is the last stable
		// offset: a transaction still open (a previous owner's, committing
		// late) lies beyond it. The restore must reach past it (see
		// read), so it runs to the log's real end.
		r.high, err = LogEnd(ctx, insp, r.topic, r.t.Partition)
	}
	if err != nil {
		return fmt.Errorf("query changelog watermarks: %w", err)
	}
	if r.cp, err = r.tgt.checkpoint(); err != nil {
		return err
	}
	if r.cp != store.NoCheckpoint && (r.cp >= r.high || r.cp+1 < r.low) {
		reason := "checkpoint beyond changelog end"
		if r.cp+1 < r.low {
			reason = "checkpoint before changelog start"
		}
		r.log.Warn("local state does not match the changelog: wiping the task and restoring it from the start",
			"reason", reason, "checkpoint", r.cp, "changelog_low", r.low, "changelog_high", r.high)
		if err := r.t.Store.Wipe(); err != nil {
			return storeWrite(err)
		}
		r.cfg.Metrics.Wipes.WithLabelValues(reason).Inc()
		r.cp = store.NoCheckpoint
		if r.tgt.windowed != nil {
			// The wipe took the counts restored before this store: the
			// next attempt restores every store from the start.
			r.t.Checkpoint.Store(store.NoCheckpoint)
			return fmt.Errorf("windowed store %s wiped (%s): restoring the task again from the start", r.tgt.windowed.Name(), reason)
		}
	}
	if r.tgt.windowed == nil {
		r.t.Checkpoint.Store(r.cp)
	}
	return nil
}

// read polls the changelog into the store until the end found at the
// start, and returns the end offset reached.
func (r *changelogRestore) read(ctx context.Context, c *kafka.Consumer) (int64, error) {
	for ctx.Err() == nil {
		if !r.openSince.IsZero() && time.Since(r.openSince) > openTxnWait {
			return -1, fmt.Errorf("changelog partition %d stays stable short of offset %d: a transaction open for over %s", r.t.Partition, r.high, openTxnWait)
		}
		switch e := c.Poll(100).(type) {
		case *kafka.Message:
			if done, err := r.apply(e); err != nil || done {
				return r.high, err
			}
		case kafka.PartitionEOF:
			// Under read_committed the last offsets may be transaction
			// markers, never delivered as records: the end of the log says
			// it. But that end is the last stable offset: a transaction
			// still open (a previous owner's, cut off from the broker, whose
			// commit lands late) hides its records behind it. Stopping there
			// would leave its counts out while the input offsets it
			// committed (fetched stable, after it ends) skip its input:
			// counts lost. So only an end at or past the end offset read at
			// the start ends the restore; the transaction ends by then
			// (committed, its records delivered, or aborted).
			if int64(e.Offset) < r.high {
				if r.openSince.IsZero() {
					r.openSince = time.Now()
					r.log.Info("waiting for a transaction open on the changelog to end", "stable_to", int64(e.Offset), "end", r.high)
				}
				continue
			}
			return int64(e.Offset), r.finish()
		case kafka.Error:
			if e.IsFatal() {
				return -1, fmt.Errorf("restore consumer: %w", e)
			}
			r.log.Debug("restore consumer error", "error", e)
		}
	}
	// Cancelled: what was written stays, with the checkpoint it reached.
	return -1, errors.Join(ctx.Err(), storeWrite(r.w.Flush()))
}

// apply writes one changelog record to the store, with a checkpoint at
// every chunk; done once it reached the end found at the start (without
// waiting for the consumer to report the end of the log), then finished.
func (r *changelogRestore) apply(e *kafka.Message) (done bool, err error) {
	if r.firstRecord == 0 {
		r.firstRecord = time.Since(r.began)
	}
	if e.Value == nil {
		err = r.w.Delete(e.Key)
	} else if _, derr := store.DecodeCount(e.Value); derr != nil {
		r.log.Warn("skipping undecodable changelog record", "offset", int64(e.TopicPartition.Offset), "error", derr)
	} else {
		err = r.w.Put(e.Key, e.Value)
	}
	if err != nil {
		return false, storeWrite(err)
	}
	if r.tgt.windowed != nil {
		r.streamTime = max(r.streamTime, headerStreamTime(e))
	}
	r.last = int64(e.TopicPartition.Offset)
	r.pending++
	r.pendingBytes += int64(len(e.Key) + len(e.Value))
	if r.last >= r.high-1 {
		return true, r.finish()
	}
	if r.w.Full() || r.pending >= restoreChunkRecords {
		if err := r.w.Checkpoint(r.last); err != nil {
			return false, storeWrite(err)
		}
		if err := r.raiseStreamTime(); err != nil {
			return false, err
		}
		r.report()
	}
	return false, nil
}

// headerStreamTime is the stream time a windowed store's changelog record
// carries, store.NoStreamTime if none.
func headerStreamTime(e *kafka.Message) int64 {
	for _, h := range e.Headers {
		if h.Key == store.StreamTimeHeader {
			if t, err := strconv.ParseInt(string(h.Value), 10, 64); err == nil {
				return t
			}
		}
	}
	return store.NoStreamTime
}

// raiseStreamTime stores the stream time a windowed store's records
// carried so far: a task restored from the changelog alone closes its
// windows where their last owner did (e2e TestWindowsRestoreOnAnEmptyDisk).
func (r *changelogRestore) raiseStreamTime() error {
	if r.tgt.windowed == nil {
		return nil
	}
	return storeWrite(r.tgt.windowed.RaiseStreamTime(r.streamTime))
}

// report publishes the progress since the last report.
func (r *changelogRestore) report() {
	if r.tgt.windowed == nil {
		r.t.Checkpoint.Store(r.last)
	}
	r.t.Done.Add(int64(r.pending))
	r.cfg.Metrics.Restored.WithLabelValues(r.label, SourceChangelog).Add(float64(r.pending))
	r.cfg.Metrics.RestoredBytes.WithLabelValues(r.label, SourceChangelog).Add(float64(r.pendingBytes))
	r.cfg.Metrics.Remaining.WithLabelValues(r.label).Set(float64(max(r.high-1-r.last, 0)))
	r.pending, r.pendingBytes = 0, 0
}

// finish writes the last checkpoint and flushes the store.
func (r *changelogRestore) finish() error {
	if r.last != r.cp {
		if err := r.w.Checkpoint(r.last); err != nil {
			return storeWrite(err)
		}
	}
	if err := r.w.Flush(); err != nil {
		return storeWrite(err)
	}
	if err := r.raiseStreamTime(); err != nil {
		return err
	}
	r.report()
	r.cfg.Metrics.Remaining.WithLabelValues(r.label).Set(0)
	r.log.Info("task restored", "records", r.t.Done.Load(), "checkpoint", r.t.Checkpoint.Load(),
		"took", time.Since(r.began).Round(time.Millisecond), "first_record_after", r.firstRecord.Round(time.Millisecond))
	return nil
}

// LogEnd is the high watermark of a partition whatever the client's
// isolation level: under read_committed the consumer's watermark query
// answers the last stable offset instead.
func LogEnd(ctx context.Context, c *kafka.Consumer, topic string, partition int32) (int64, error) {
	admin, err := kafka.NewAdminClientFromConsumer(c)
	if err != nil {
		return 0, err
	}
	defer admin.Close()
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	tp := kafka.TopicPartition{Topic: &topic, Partition: partition}
	res, err := admin.ListOffsets(ctx, map[kafka.TopicPartition]kafka.OffsetSpec{tp: kafka.LatestOffsetSpec},
		kafka.SetAdminIsolationLevel(kafka.IsolationLevelReadUncommitted))
	if err != nil {
		return 0, err
	}
	for got, info := range res.ResultInfos {
		if got.Partition != partition {
			continue
		}
		if info.Error.Code() != kafka.ErrNoError {
			return 0, info.Error
		}
		return int64(info.Offset), nil
	}
	return 0, fmt.Errorf("no end offset of %s[%d] in the answer", topic, partition)
}

// waitStableOffset returns once the group's committed offset of an input
// partition is stable, i.e. no open transaction holds an offset for it
// (read_committed, librdkafka fetches committed offsets with KIP-447's
// require_stable and the broker answers UNSTABLE_OFFSET_COMMIT meanwhile).
// A transaction open for over openTxnWait fails the restore, which is
// retried.
func (r *Restorer) waitStableOffset(ctx context.Context, c *kafka.Consumer) (int64, error) {
	input, partition, log := r.cfg.InputTopic, r.task.Partition, r.log
	began := time.Now()
	logged := false
	for {
		tps, err := c.Committed([]kafka.TopicPartition{{Topic: &input, Partition: partition}}, 5000)
		if err == nil && len(tps) == 1 {
			err = tps[0].Error
		}
		if err == nil {
			if logged {
				log.Info("input offset stable: restoring", "waited", time.Since(began).Round(time.Millisecond))
			}
			return max(int64(tps[0].Offset), -1), nil
		}
		if time.Since(began) > openTxnWait {
			return -1, fmt.Errorf("input partition %d: committed offset not stable after %s: %w", partition, openTxnWait, err)
		}
		if !logged {
			log.Info("waiting for a transaction that commits the task's input offset", "reason", err)
			logged = true
		}
		select {
		case <-ctx.Done():
			return -1, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}
