package processor

import (
	"fmt"
	"math"
	"slices"

	"github.com/abacus-streams/abacus/internal/store"
	"github.com/abacus-streams/abacus/internal/window"
	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
)

// The loop's windowed counting (docs/windows.md): each record also counts
// in the windows its timestamp places it in, one windowed store at a time,
// into write buffers that commit with the task's counts under the same
// checkpoint protocol. A task keeps one stream time, the largest timestamp
// it has seen, for all its windowed stores.

// windowedStore is a windowed store as the processor runs it: its spec
// (defaults filled, valid) and the topics it writes.
type windowedStore struct {
	spec      window.Spec
	changelog string
	output    string
}

// winKey names one window of a key in a task's buffers.
type winKey struct {
	key        string
	start, end int64
}

func (k winKey) window() store.Window {
	return store.Window{Key: []byte(k.key), Start: k.start, End: k.end}
}

// windowBuffer is one layer of a windowed store's writes not yet durable:
// the new counts, and the sessions merged away (deleted; a window put
// again after its delete is in counts only).
type windowBuffer struct {
	counts  map[winKey]int64
	deleted map[winKey]struct{}
	// fresh marks the sessions in counts that exist in no layer below
	// (the batch in flight, the store): one removed again (a session that
	// grew or merged within the buffer) leaves no tombstone, so a session
	// that grows with every record keeps one entry here, not one per
	// record (BenchmarkWindows' session run).
	fresh map[winKey]struct{}
	// byKey lists, for a session store, the windows of each key in counts
	// or deleted, so that a record finds the key's sessions in the
	// buffers without a walk over all of them.
	byKey map[string][]winKey
}

func newWindowBuffer() *windowBuffer {
	return &windowBuffer{counts: map[winKey]int64{}, deleted: map[winKey]struct{}{}, fresh: map[winKey]struct{}{}, byKey: map[string][]winKey{}}
}

func (b *windowBuffer) empty() bool { return len(b.counts) == 0 && len(b.deleted) == 0 }

func (b *windowBuffer) has(k winKey) bool {
	_, had := b.counts[k]
	_, del := b.deleted[k]
	return had || del
}

// put sets window k's count; a session's byKey entry is kept, and fresh
// says the window exists in no layer below.
func (b *windowBuffer) put(k winKey, n int64, session, fresh bool) {
	if session && !b.has(k) {
		b.byKey[k.key] = append(b.byKey[k.key], k)
		if fresh {
			b.fresh[k] = struct{}{}
		}
	}
	delete(b.deleted, k)
	b.counts[k] = n
}

// remove deletes session k: a tombstone unless it is fresh.
func (b *windowBuffer) remove(k winKey) {
	if _, ok := b.fresh[k]; ok {
		delete(b.fresh, k)
		delete(b.counts, k)
		b.byKey[k.key] = slices.DeleteFunc(b.byKey[k.key], func(o winKey) bool { return o == k })
		if len(b.byKey[k.key]) == 0 {
			delete(b.byKey, k.key)
		}
		return
	}
	if !b.has(k) {
		b.byKey[k.key] = append(b.byKey[k.key], k)
	}
	delete(b.counts, k)
	b.deleted[k] = struct{}{}
}

// windowedTask is one windowed store's part of a task.
type windowedTask struct {
	*windowedStore
	store *store.WindowedStore
	// dirty takes the writes since the last hand-off; inflight holds those
	// of the batch being committed (nil when none is).
	dirty, inflight *windowBuffer
	// stored caches, per key, the sessions the store held as of the loop's
	// snapshot within a span of time, so that a key's records read the
	// store once a batch rather than once each; emptied whenever the
	// snapshot may change (windowsDurable, resetWindows).
	stored map[string]storedSessions
}

// storedSessions are a key's sessions in the store that start at or
// before to and end at or after from.
type storedSessions struct {
	from, to int64
	sessions []store.WindowCount
}

// windowedTasks opens the windowed stores of a task's store partition.
func (p *Processor) windowedTasks(sp *store.Partition) ([]*windowedTask, error) {
	out := make([]*windowedTask, 0, len(p.windowed))
	for _, ws := range p.windowed {
		s, err := sp.Windowed(ws.spec.Store)
		if err != nil {
			return nil, err
		}
		out = append(out, &windowedTask{windowedStore: ws, store: s, dirty: newWindowBuffer()})
	}
	return out, nil
}

// current is the count of window k below the write buffer: the batch in
// flight's, then the store's as of snap (0 for none).
func (w *windowedTask) current(k winKey, snap *store.Snapshot) (int64, error) {
	if w.inflight != nil {
		if n, ok := w.inflight.counts[k]; ok {
			return n, nil
		}
		if _, ok := w.inflight.deleted[k]; ok {
			return 0, nil
		}
	}
	n, _, err := w.store.GetWindowIn(snap, k.window())
	return n, err
}

// add counts one record in time window k.
func (w *windowedTask) add(k winKey, snap *store.Snapshot) error {
	if n, ok := w.dirty.counts[k]; ok {
		w.dirty.counts[k] = n + 1
		return nil
	}
	n, err := w.current(k, snap)
	if err != nil {
		return err
	}
	w.dirty.put(k, n+1, false, false)
	return nil
}

// sessionsOf returns key's sessions that a record at ts may join, with
// their counts: the store's as of snap, under the batch in flight's
// writes, under the write buffer's; below marks those in the store or the
// batch in flight.
func (w *windowedTask) sessionsOf(key string, ts int64, snap *store.Snapshot) (sessions map[window.Window]int64, below map[window.Window]bool, err error) {
	from, to := w.spec.SessionRange(ts)
	near := func(k winKey) bool { return k.end >= from && k.start <= to }
	cached, ok := w.stored[key]
	if !ok || from < cached.from || to > cached.to {
		// Load ahead: stream time mostly rises, and the next records of
		// the key ask for a little later.
		ahead := addSat(to, 4*w.spec.Size.Milliseconds())
		got, err := w.store.SessionsIn(snap, []byte(key), from, ahead)
		if err != nil {
			return nil, nil, err
		}
		cached = storedSessions{from: from, to: ahead, sessions: got}
		if w.stored == nil {
			w.stored = map[string]storedSessions{}
		}
		w.stored[key] = cached
	}
	sessions = map[window.Window]int64{}
	below = map[window.Window]bool{}
	for _, wc := range cached.sessions {
		if wc.End >= from && wc.Start <= to {
			win := window.Window{Start: wc.Start, End: wc.End}
			sessions[win], below[win] = wc.Count, true
		}
	}
	for _, layer := range []*windowBuffer{w.inflight, w.dirty} {
		if layer == nil {
			continue
		}
		for _, k := range layer.byKey[key] {
			if !near(k) {
				continue
			}
			win := window.Window{Start: k.start, End: k.end}
			if n, ok := layer.counts[k]; ok {
				sessions[win] = n
				if layer == w.inflight {
					below[win] = true
				}
			} else {
				delete(sessions, win)
				delete(below, win)
			}
		}
	}
	return sessions, below, nil
}

// addSat is a + b, held at the largest int64 instead of wrapping.
func addSat(a, b int64) int64 {
	if b > 0 && a > math.MaxInt64-b {
		return math.MaxInt64
	}
	return a + b
}

// addSession counts one record at ts in key's sessions; late reports a
// record that would touch a closed session, which counts nowhere.
func (w *windowedTask) addSession(key string, ts, streamTime int64, snap *store.Snapshot) (late bool, err error) {
	sessions, below, err := w.sessionsOf(key, ts, snap)
	if err != nil {
		return false, err
	}
	existing := make([]window.Window, 0, len(sessions))
	for s := range sessions {
		existing = append(existing, s)
	}
	merged, removed, late, err := w.spec.AssignSession(existing, ts, streamTime)
	if err != nil || late {
		return late, err
	}
	n := int64(1)
	for _, r := range removed {
		n += sessions[r]
		if r != merged {
			w.dirty.remove(winKey{key, r.Start, r.End})
		}
	}
	w.dirty.put(winKey{key, merged.Start, merged.End}, n, true, !below[merged])
	return false, nil
}

// windowEntryOverhead approximates the bytes a window in a write buffer
// costs beyond its key's bytes (map entry, bounds, count).
const windowEntryOverhead = 96

// countWindows counts a record in the windows of every windowed store of
// the task, and moves the task's stream time. A record late for a store
// (every window it belongs to there is closed) is counted in
// abacus_records_late_total and, with on_error=dlq, dead-lettered with
// reason late, once per store it is late for.
func (s *session) countWindows(t *task, m *kafka.Message) error {
	ts := int64(-1)
	if !m.Timestamp.IsZero() {
		ts = m.Timestamp.UnixMilli()
	}
	streamTime := max(t.streamTime, ts)
	key := string(m.Key)
	entries := func() (n int) {
		for _, w := range t.windows {
			n += len(w.dirty.counts) + len(w.dirty.deleted)
		}
		return n
	}
	before := entries()
	for _, w := range t.windows {
		late := ts < 0
		if !late && w.spec.Kind == window.Session {
			var err error
			if late, err = w.addSession(key, ts, streamTime, s.snap); err != nil {
				return fmt.Errorf("count in windowed store %s: %w", w.spec.Store, err)
			}
		} else if !late {
			open, isLate, err := w.spec.Assign(ts, streamTime)
			if err != nil {
				return fmt.Errorf("count in windowed store %s: %w", w.spec.Store, err)
			}
			late = isLate
			for _, win := range open {
				if err := w.add(winKey{key, win.Start, win.End}, s.snap); err != nil {
					return fmt.Errorf("count in windowed store %s: %w", w.spec.Store, err)
				}
			}
		}
		if late {
			s.p.metrics.late.WithLabelValues(w.spec.Store).Inc()
			if err := s.lateRecord(m, w.spec.Store, ts); err != nil {
				return err
			}
		}
	}
	t.streamTime = streamTime
	// The window buffers share the record cache's budget: a commit comes
	// early when they grow (commitIfDue), and the loop waits for one in
	// flight at twice the budget, as for counts.
	if added := entries() - before; added > 0 && s.p.cfg.CacheMaxBytes > 0 {
		s.cacheBytes += int64(added) * (int64(len(key)) + windowEntryOverhead)
	}
	return nil
}

// windowedBatch is one windowed store's part of a task's batch.
type windowedBatch struct {
	*windowedStore
	writes *windowBuffer
	// finals are the windows this batch closes, with their counts (emit
	// final): every window whose close time lies in (the stream time of
	// the batch before, streamTime].
	finals     map[winKey]int64
	streamTime int64
}

// closeLine is the end at or below which a window is closed at stream
// time st: a time window closes at End + grace, a session at End + gap +
// grace (window.Spec.CloseTime).
func closeLine(spec window.Spec, st int64) int64 {
	line := st - spec.Grace.Milliseconds()
	if spec.Kind == window.Session {
		line -= spec.Size.Milliseconds()
	}
	return line
}

// handOffWindows moves the task's windowed write buffers into its batch,
// with the finals of the windows the batch's stream time closes.
func (t *task) handOffWindows(snap *store.Snapshot) ([]windowedBatch, error) {
	var out []windowedBatch
	for _, w := range t.windows {
		wb := windowedBatch{windowedStore: w.windowedStore, writes: w.dirty, streamTime: t.streamTime}
		if w.spec.Emit == window.EmitFinal && t.streamTime > t.closedUpTo {
			finals, err := w.closing(closeLine(w.spec, t.closedUpTo), closeLine(w.spec, t.streamTime), snap)
			if err != nil {
				return nil, err
			}
			wb.finals = finals
		}
		if wb.writes.empty() && len(wb.finals) == 0 {
			continue
		}
		out = append(out, wb)
		if !w.dirty.empty() {
			w.inflight = w.dirty
			w.dirty = newWindowBuffer()
		}
	}
	t.closedUpTo = max(t.closedUpTo, t.streamTime)
	return out, nil
}

// closing returns the windows whose end lies in (after, upTo] with their
// counts: the store's as of snap under the batch in flight's writes under
// the write buffer's.
func (w *windowedTask) closing(after, upTo int64, snap *store.Snapshot) (map[winKey]int64, error) {
	out := map[winKey]int64{}
	err := w.store.WindowsEndingIn(snap, after, upTo, func(wc store.WindowCount) bool {
		out[winKey{string(wc.Key), wc.Start, wc.End}] = wc.Count
		return true
	})
	if err != nil {
		return nil, err
	}
	for _, layer := range []*windowBuffer{w.inflight, w.dirty} {
		if layer == nil {
			continue
		}
		for k, n := range layer.counts {
			if k.end > after && k.end <= upTo {
				out[k] = n
			}
		}
		for k := range layer.deleted {
			delete(out, k)
		}
	}
	return out, nil
}

// windowsDurable ends the batch in flight of the task's windowed stores:
// its writes are in the store now.
func (t *task) windowsDurable(streamTime int64) {
	for _, w := range t.windows {
		w.inflight = nil
		clear(w.stored)
	}
	t.committedStreamTime = max(t.committedStreamTime, streamTime)
}

// resetWindows drops the windowed writes not durable, and the stream time
// they moved.
func (t *task) resetWindows() {
	for _, w := range t.windows {
		w.dirty, w.inflight = newWindowBuffer(), nil
		clear(w.stored)
	}
	t.streamTime, t.closedUpTo = t.committedStreamTime, t.committedStreamTime
}

// loadStreamTime sets a restored task's stream time from its windowed
// stores: the latest any of them committed or restored.
func (t *task) loadStreamTime() error {
	st := store.NoStreamTime
	for _, w := range t.windows {
		v, err := w.store.StreamTime()
		if err != nil {
			return err
		}
		st = max(st, v)
	}
	t.streamTime, t.closedUpTo, t.committedStreamTime = st, st, st
	return nil
}
