package subscribe

import (
	"cmp"
	"context"
	"encoding/binary"
	"errors"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/abacus-streams/abacus/internal/abacus"
)

// errClosed: the hub's loop has stopped.
var errClosed = errors.New("subscribe: hub closed")

// Hub fans the counts committed on this instance out to its SSE streams.
// Publish and EndPartition may be called from any goroutine and never
// block; Serve is called by HTTP handlers, any number at once.
type Hub struct {
	cfg     Config
	log     *slog.Logger
	group   *Group
	metrics *metrics // the group's
	dropLog rateLog

	in   inbox
	wake chan struct{} // cap 1: the inbox has work
	cmds chan func()   // work for the loop from stream handlers

	// published is the number of the last batch Publish queued or skipped.
	published atomic.Uint64
	// admitted counts this hub's streams counted against the group's
	// MaxSubscribers. While it is zero Publish skips the queue: a stream
	// admitted later reads the store, which already holds every update
	// published before.
	admitted atomic.Int64
	// fanned is the last batch the loop has handed to the streams.
	fanned atomic.Uint64

	life    sync.Mutex // guards started, stopped, and streams.Add
	started bool
	stopped bool
	streams sync.WaitGroup // Serve calls under way
	done    chan struct{}  // closed when the loop stops

	// Owned by the loop.
	idx     index
	endSeq  uint64            // EndPartition calls the loop has handled
	lastEnd map[int32]endMark // per partition, the last of them
}

// endMark is the loop's memory of a partition's last EndPartition.
type endMark struct {
	seq    uint64
	reason string
}

// New builds a hub. It registers the hub's metrics and starts nothing;
// Run starts the fan-out.
func New(cfg Config) *Hub {
	cfg = cfg.withDefaults()
	g := cfg.Group
	if g == nil {
		g = NewGroup(cfg)
	}
	return &Hub{
		cfg:     cfg,
		log:     cfg.Logger.With("component", "subscribe"),
		group:   g,
		metrics: g.metrics,
		in:      inbox{latest: map[string]queued{}},
		wake:    make(chan struct{}, 1),
		cmds:    make(chan func()),
		done:    make(chan struct{}),
		idx:     newIndex(),
		lastEnd: map[int32]endMark{},
	}
}

// Run fans updates out until ctx ends. Then it ends every stream at once
// (pending events are not written), waits for their handlers to return
// and returns nil. A hub runs once; later subscriptions get 503.
func (h *Hub) Run(ctx context.Context) error {
	h.life.Lock()
	if h.started {
		h.life.Unlock()
		return errors.New("subscribe: hub already run")
	}
	h.started = true
	h.life.Unlock()
	defer h.stop()

	var work []queued
	spare := map[string]queued{}
	for {
		select {
		case <-ctx.Done():
			return nil
		case f := <-h.cmds:
			f()
		case <-h.wake:
			latest, ends := h.in.take(spare)
			work = appendOrdered(work[:0], latest)
			// Cleared here, not under the inbox's lock.
			if len(latest) <= maxSpare {
				clear(latest)
				spare = latest
			} else {
				spare = map[string]queued{}
			}
			h.fanOut(work)
			for _, e := range ends {
				h.endPartition(e)
			}
			clear(work)
			if cap(work) > maxSpare {
				work = nil
			}
		}
	}
}

// maxSpare bounds the queue kept for reuse between turns of the loop.
const maxSpare = 1 << 16

// stop ends every stream and waits for their handlers.
func (h *Hub) stop() {
	h.life.Lock()
	h.stopped = true
	close(h.done)
	h.life.Unlock()
	h.in.close()
	for s := range h.idx.all {
		s.finish(endShutdown, nil)
	}
	h.idx = newIndex()
	h.streams.Wait()
}

// Publish hands a commit's updates to the hub. It never blocks and costs
// O(len(updates)); the fan-out happens on the hub's goroutine. An update
// of a key still queued replaces the queued one, so the queue holds at most
// one update per key and the last value of every key is always delivered.
//
// Publish must be called after the updates are readable through the
// Source of Serve, from one goroutine at a time, in commit order: the
// processor's committer calls it after each commit, as OnCommit.
func (h *Hub) Publish(updates []abacus.Update) {
	if len(updates) == 0 {
		return
	}
	h.publish(func(b uint64) (replaced int) {
		for _, u := range updates {
			if h.in.put(u, b) {
				replaced++
			}
		}
		return replaced
	})
}

// PublishWindows is Publish for a windowed store's hub (Config.Windows):
// a commit's windows of the store, each its new count or its retraction.
// The queue holds at most one update per window, (key, start, end), so a
// window's update is never dropped for another window's of the same key
// (TestWindowUpdatesCoalescePerWindow). The processor's committer calls
// it after each commit, as OnWindowCommit.
func (h *Hub) PublishWindows(updates []abacus.WindowUpdate) {
	if len(updates) == 0 {
		return
	}
	h.publish(func(b uint64) (replaced int) {
		for _, u := range updates {
			if h.in.add(windowQueued(u, b)) {
				replaced++
			}
		}
		return replaced
	})
}

// publish queues one batch: put queues its updates under the inbox's
// lock, and returns how many replaced one queued already.
func (h *Hub) publish(put func(batch uint64) (replaced int)) {
	h.in.mu.Lock()
	h.in.batch++
	b := h.in.batch
	wanted := !h.in.closed && h.admitted.Load() > 0
	replaced := 0
	if wanted {
		replaced = put(b)
	}
	h.published.Store(b)
	h.in.mu.Unlock()
	if wanted {
		h.signal()
	}
	if replaced > 0 {
		h.metrics.coalesced.Add(float64(replaced))
	}
}

// Serving reports whether any stream is open: while none is, Publish
// drops its updates, and a publisher may skip gathering them.
func (h *Hub) Serving() bool { return h.admitted.Load() > 0 }

// EndPartition ends, with a final "moved" event, every stream that follows
// a key of partition and every prefix stream (whose keys span partitions).
// Updates published before it are written first. It never blocks. Call it
// once partition's keys are no longer readable through the Source, so a
// stream that starts later fails its first read instead of following a
// partition that left.
func (h *Hub) EndPartition(partition int32, reason string) {
	h.in.mu.Lock()
	if !h.in.closed {
		h.in.ends = append(h.in.ends, ending{partition: partition, reason: reason})
	}
	h.in.mu.Unlock()
	h.signal()
}

func (h *Hub) signal() {
	select {
	case h.wake <- struct{}{}:
	default:
	}
}

// do runs f on the loop and waits for it.
func (h *Hub) do(ctx context.Context, f func()) error {
	ran := make(chan struct{})
	select {
	case h.cmds <- func() { f(); close(ran) }:
	case <-h.done:
		return errClosed
	case <-ctx.Done():
		return ctx.Err()
	}
	<-ran
	return nil
}

// fanOut offers each live update to the streams following its key.
func (h *Hub) fanOut(work []queued) {
	for i := range work {
		q := &work[i]
		for s := range h.idx.exact[q.Key] {
			h.deliver(s, q)
		}
		for _, n := range h.idx.lens {
			if n > len(q.Key) {
				break
			}
			for s := range h.idx.prefix[q.Key[:n]] {
				h.deliver(s, q)
			}
		}
		h.fanned.Store(q.batch)
	}
}

func (h *Hub) deliver(s *stream, q *queued) {
	switch s.offer(q) {
	case offerCoalesced:
		h.metrics.coalesced.Inc()
	case offerOverflow:
		h.idx.remove(s)
		if s.finish(endOverflow, nil) {
			h.metrics.dropped.WithLabelValues(DropOverflow).Inc()
			h.dropLog.log(h.log, "dropped a slow subscriber: too many pending keys", "limit", h.cfg.Buffer)
		}
	}
}

// endPartition runs EndPartition on the loop.
func (h *Hub) endPartition(e ending) {
	h.endSeq++
	h.lastEnd[e.partition] = endMark{seq: h.endSeq, reason: e.reason}
	final := appendMoved(nil, e.partition, e.reason)
	for s := range h.idx.byPartition[e.partition] {
		h.move(s, final)
	}
	for _, set := range h.idx.prefix {
		for s := range set {
			if !s.onePartition {
				h.move(s, final)
			}
		}
	}
}

func (h *Hub) move(s *stream, final []byte) {
	h.idx.remove(s)
	if s.finish(endMoved, final) {
		h.metrics.moved.Inc()
	}
}

// register adds s to the index, on the loop.
func (h *Hub) register(s *stream) {
	s.regEnds = h.endSeq
	h.idx.add(s)
}

// bind records the partition of a key stream, on the loop; a stream whose
// partition was ended since it registered is moved at once.
func (h *Hub) bind(s *stream, partition int32) {
	if _, ok := h.idx.all[s]; !ok {
		return
	}
	if m, ok := h.lastEnd[partition]; ok && m.seq > s.regEnds {
		h.move(s, appendMoved(nil, partition, m.reason))
		return
	}
	h.idx.bind(s, partition)
}

// unregister removes s, unless the loop has stopped (and forgotten it).
func (h *Hub) unregister(s *stream) {
	_ = h.do(context.Background(), func() { h.idx.remove(s) })
}

// ending is one EndPartition call waiting for the loop.
type ending struct {
	partition int32
	reason    string
}

// queued is an update waiting in the inbox or in a stream: a key's count,
// or, in a windowed store's hub, a window's (windowed).
type queued struct {
	abacus.Update
	batch uint64 // the Publish call that brought it, from 1
	order uint64 // its place among all updates published

	// A window's update: its bounds, and whether it is a retraction (a
	// session merged away; Value is then unused).
	windowed   bool
	deleted    bool
	start, end int64
	// window is what a window's update is queued under, in the inbox and
	// in a stream's pending set: the key and the bounds (windowSlot).
	window string
}

// windowQueued is the queued form of a window's update.
func windowQueued(u abacus.WindowUpdate, batch uint64) queued {
	return queued{
		Update: abacus.Update{Key: u.Key, Value: u.Value, Partition: u.Partition, Offset: u.Offset},
		batch:  batch, windowed: true, deleted: u.Deleted, start: u.Start, end: u.End,
		window: windowSlot(u.Key, u.Start, u.End),
	}
}

// slot is what q is queued under, replacing an update queued under the
// same: a count's key, a window's key and bounds.
func (q *queued) slot() string {
	if q.windowed {
		return q.window
	}
	return q.Key
}

// windowSlot names a window in a windowed store's queues: the key, then
// the start and end in 16 bytes. The tail's length is fixed, so no two
// windows share a name (only windows share a windowed hub's queues).
func windowSlot(key string, start, end int64) string {
	b := make([]byte, 0, len(key)+16)
	b = append(b, key...)
	b = binary.BigEndian.AppendUint64(b, uint64(start))
	return string(binary.BigEndian.AppendUint64(b, uint64(end)))
}

// appendOrdered appends the updates of m to buf in publish order.
func appendOrdered(buf []queued, m map[string]queued) []queued {
	n := len(buf)
	for _, q := range m {
		buf = append(buf, q)
	}
	sortByOrder(buf[n:])
	return buf
}

func sortByOrder(qs []queued) {
	slices.SortFunc(qs, func(a, b queued) int { return cmp.Compare(a.order, b.order) })
}

// inbox is where Publish and EndPartition leave work for the loop. It
// holds the latest update of each key, so it is bounded by the keys that
// changed since the loop last took it.
type inbox struct {
	mu     sync.Mutex
	closed bool
	batch  uint64 // Publish calls so far
	order  uint64 // updates queued so far
	latest map[string]queued
	ends   []ending
}

// put queues u, replacing the queued update of the same key; it reports
// whether it replaced one.
func (in *inbox) put(u abacus.Update, batch uint64) (replaced bool) {
	return in.add(queued{Update: u, batch: batch})
}

// add queues q, replacing the update queued under its slot; it reports
// whether it replaced one.
func (in *inbox) add(q queued) (replaced bool) {
	in.order++
	q.order = in.order
	k := q.slot()
	_, replaced = in.latest[k]
	in.latest[k] = q
	return replaced
}

// take hands the queued work to the loop, leaving the empty spare in its
// place. It is O(1), so Publish never waits on it for long.
func (in *inbox) take(spare map[string]queued) (map[string]queued, []ending) {
	in.mu.Lock()
	defer in.mu.Unlock()
	latest, ends := in.latest, in.ends
	in.latest, in.ends = spare, nil
	return latest, ends
}

func (in *inbox) close() {
	in.mu.Lock()
	defer in.mu.Unlock()
	in.closed = true
	in.latest = map[string]queued{}
	in.ends = nil
}
