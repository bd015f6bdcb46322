package subscribe

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/abacus-streams/abacus/internal/abacus"
)

// MaxQueryBytes bounds a key or a prefix.
const MaxQueryBytes = 4096

// rejectRetryAfter is the Retry-After, in seconds, of a refused subscription.
const rejectRetryAfter = "5"

// ErrBadQuery: the request does not say what to follow.
var ErrBadQuery = errors.New("bad subscription query")

// Query is what one stream follows.
type Query struct {
	// Key is the key followed, or the prefix when Prefix is true.
	Key    string
	Prefix bool
	// OnePartition narrows a prefix stream to the keys of Partition: the
	// stream is bound to that partition, ends when it leaves, and is
	// refused (Source's error) while the partition cannot be served here.
	OnePartition bool
	Partition    int32
}

// ParseQuery reads ?key=K (one key, not empty) or ?prefix=P (every key
// that starts with P; the empty prefix matches every key), the latter
// optionally with &partition=N. Its errors wrap ErrBadQuery.
func ParseQuery(v url.Values) (Query, error) {
	_, hasKey := v["key"]
	_, hasPrefix := v["prefix"]
	var q Query
	switch {
	case hasKey == hasPrefix:
		return q, fmt.Errorf("%w: give exactly one of key and prefix", ErrBadQuery)
	case hasKey:
		q.Key = v.Get("key")
		if q.Key == "" {
			return q, fmt.Errorf("%w: key must not be empty", ErrBadQuery)
		}
	default:
		q.Key, q.Prefix = v.Get("prefix"), true
	}
	if ps, ok := v["partition"]; ok {
		n, err := strconv.ParseInt(ps[0], 10, 32)
		switch {
		case !q.Prefix:
			return q, fmt.Errorf("%w: partition narrows a prefix subscription; a key's partition is the key's", ErrBadQuery)
		case err != nil || n < 0:
			return q, fmt.Errorf("%w: partition %q is not a partition number", ErrBadQuery, ps[0])
		}
		q.OnePartition, q.Partition = true, int32(n)
	}
	if len(q.Key) > MaxQueryBytes {
		return q, fmt.Errorf("%w: %d bytes; at most %d are allowed", ErrBadQuery, len(q.Key), MaxQueryBytes)
	}
	if !utf8.ValidString(q.Key) {
		return q, fmt.Errorf("%w: not valid UTF-8", ErrBadQuery)
	}
	return q, nil
}

// Current reads the committed count of key from this instance's store.
// partition must be set even when found is false; an error (not owned
// here, restoring) fails the subscription before anything is written.
// It is called from HTTP handlers, any number at once.
type Current func(key string) (value int64, partition int32, found bool, err error)

// CurrentPrefix calls fn with the committed count of every key with the
// prefix in this instance's stores, until fn returns false; with a
// partition of 0 or more, only that partition's keys, and an error (not
// owned here, restoring) when this instance cannot serve it.
type CurrentPrefix func(prefix string, partition int32, fn func(key string, value int64, partition int32) bool) error

// CurrentWindows calls fn with the current windows of key in this
// instance's stores of a windowed store (with prefix, of every key that
// starts with key; with a partition of 0 or more, only that partition's
// keys) until fn returns false, each with its Partition and, as Offset,
// the checkpoint of the store's changelog in that partition the windows
// hold every record of, read with them. It returns every partition it
// read with that checkpoint, those without windows too: for a key, the
// key's partition alone. An error (not owned here, restoring) fails the
// subscription before anything is written.
type CurrentWindows func(key string, prefix bool, partition int32, fn func(abacus.WindowUpdate) bool) (checkpoints map[int32]int64, err error)

// Source reads the current values a stream starts with. Current serves key
// subscriptions, CurrentPrefix prefix ones, Windows both of a windowed
// store's hub; each may be nil if that kind is not offered.
type Source struct {
	Current       Current
	CurrentPrefix CurrentPrefix
	Windows       CurrentWindows
}

// Handler serves ?key= and ?prefix= subscriptions from src. It answers a
// bad query (or a kind src does not offer) with 400 and a failed first
// read with 503 and Retry-After;
// callers that map read errors more finely use Serve.
func (h *Hub) Handler(src Source) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		q, err := ParseQuery(r.URL.Query())
		if err != nil {
			WriteError(w, http.StatusBadRequest, "bad_query", err.Error(), "")
			return
		}
		switch err := h.Serve(w, r, q, src); {
		case errors.Is(err, ErrBadQuery):
			WriteError(w, http.StatusBadRequest, "bad_query", err.Error(), "")
		case err != nil:
			WriteError(w, http.StatusServiceUnavailable, "unavailable", err.Error(), "1")
		}
	})
}

// Serve streams one subscription until the client leaves, the stream is
// dropped or moved, or the hub stops. It first sends the current value (of
// the key, or of up to SnapshotLimit keys with the prefix), then every
// later update in order. A key stream's reconnection with Last-Event-ID
// is sent only values above the one that id names.
//
// A windowed store's hub sends the current windows (of the key, or up to
// SnapshotLimit windows of the keys with the prefix), each partition's
// followed by a SnapshotEnd comment, then every later update of a
// window. A reconnection with Last-Event-ID "<partition>-<offset>" is
// sent the current windows again, then only the updates past that offset
// in that partition (TestWindowReconnectSkipsWhatTheClientHad).
//
// It refuses a subscription past MaxSubscribers, or once the hub stopped,
// with 503, a JSON error and Retry-After. It returns an error only when
// the first read from src failed, and then has written nothing: the
// caller answers (the error is src's, wrapped). Serve blocks until Run
// has started.
func (h *Hub) Serve(w http.ResponseWriter, r *http.Request, q Query, src Source) error {
	// Counted here first: Publish must queue from now on, for the read
	// of the current values to come.
	h.admitted.Add(1)
	if !h.group.admit() {
		h.admitted.Add(-1)
		h.metrics.rejected.Inc()
		WriteError(w, http.StatusServiceUnavailable, "too_many_subscribers",
			fmt.Sprintf("this instance serves at most %d subscriptions; retry later", h.group.max), rejectRetryAfter)
		return nil
	}
	h.metrics.subscribers.Inc()
	defer func() {
		h.group.leave()
		h.admitted.Add(-1)
		h.metrics.subscribers.Dec()
	}()
	if !h.enter() {
		writeShuttingDown(w)
		return nil
	}
	defer h.streams.Done()

	s := newStream(q, h.cfg.Buffer)
	switch {
	case h.cfg.Windows:
		s.windowed = true
		s.after.partition, s.after.offset, s.after.set = ParseEventID(r.Header.Get("Last-Event-ID"))
	case !q.Prefix:
		s.floor = abacus.KeyStreamPosition(r.Header.Get("Last-Event-ID"))
	}
	if err := h.do(r.Context(), func() { h.register(s) }); err != nil {
		if errors.Is(err, errClosed) {
			writeShuttingDown(w)
		}
		return nil // else the client left
	}
	defer h.unregister(s)
	var snap []queued
	var truncated bool
	var checkpoints map[int32]int64
	var err error
	if h.cfg.Windows {
		snap, truncated, checkpoints, err = h.windowSnapshot(r.Context(), s, q, src)
	} else {
		snap, truncated, err = h.snapshot(r.Context(), s, q, src)
	}
	if err != nil {
		return err
	}

	hdr := w.Header()
	hdr.Set("Content-Type", "text/event-stream")
	hdr.Set("Cache-Control", "no-cache")
	hdr.Set("X-Accel-Buffering", "no")
	// The connection ends with the stream. Kept alive, a stream that ended
	// (moved, or dropped with its last bytes still in the socket buffers)
	// would leave a client that stopped reading holding an idle connection
	// until the server's idle timeout. Clients reconnect with a new request
	// anyway: keep-alive would save them only a handshake.
	hdr.Set("Connection", "close")
	w.WriteHeader(http.StatusOK)
	out := newWriter(w, s, h.cfg.WriteTimeout)
	defer s.detach()
	err = out.begin(h.cfg.Retry, snap, truncated, h.cfg.SnapshotLimit, checkpoints)
	if err == nil {
		h.metrics.eventsSent.Add(float64(len(snap)))
		err = h.pump(r.Context(), s, out)
	}
	h.writeFailed(s, err)
	return nil
}

// enter counts a Serve call in, unless the hub stopped.
func (h *Hub) enter() bool {
	h.life.Lock()
	defer h.life.Unlock()
	if h.stopped {
		return false
	}
	h.streams.Add(1)
	return true
}

// snapshot reads the stream's current values and fences the pending
// updates they already reflect.
func (h *Hub) snapshot(ctx context.Context, s *stream, q Query, src Source) (snap []queued, truncated bool, err error) {
	before := h.published.Load()
	var keyPartition int32
	if q.Prefix {
		if src.CurrentPrefix == nil {
			return nil, false, fmt.Errorf("%w: prefix subscriptions are not offered", ErrBadQuery)
		}
		partition := int32(-1)
		if q.OnePartition {
			partition = q.Partition
		}
		err = src.CurrentPrefix(q.Key, partition, func(key string, value int64, partition int32) bool {
			if len(snap) == h.cfg.SnapshotLimit {
				truncated = true
				return false
			}
			snap = append(snap, queued{Update: abacus.Update{Key: key, Value: value, Partition: partition}})
			return true
		})
	} else {
		if src.Current == nil {
			return nil, false, fmt.Errorf("%w: key subscriptions are not offered", ErrBadQuery)
		}
		var u abacus.Update
		var found bool
		u.Key = q.Key
		u.Value, u.Partition, found, err = src.Current(q.Key)
		if err == nil && !found {
			u.Value = 0 // a key never counted has the count 0
		}
		snap, keyPartition = []queued{{Update: u}}, u.Partition
		if u.Value <= s.floor {
			snap = snap[:0] // the client has it: a reconnection sends only news
		}
	}
	if err != nil {
		return nil, false, fmt.Errorf("read current value of %q: %w", q.Key, err)
	}
	// Publish n returns before commit n+1 writes the store, so no batch past
	// until can be in what was just read.
	f := &fence{before: before, until: h.published.Load() + 1, floors: make(map[string]int64, len(snap))}
	for _, e := range snap {
		f.floors[e.Key] = e.Value
	}
	s.setFence(f)
	switch {
	case !q.Prefix:
		_ = h.do(ctx, func() { h.bind(s, keyPartition) }) // fails only if the stream is over
	case q.OnePartition:
		_ = h.do(ctx, func() { h.bind(s, q.Partition) })
	}
	return snap, truncated, nil
}

// windowSnapshot reads a windowed stream's current windows and fences
// the pending updates they already hold, by the checkpoints read with
// them. It returns them, whether the limit cut them, and the checkpoints.
func (h *Hub) windowSnapshot(ctx context.Context, s *stream, q Query, src Source) (snap []queued, truncated bool, checkpoints map[int32]int64, err error) {
	if src.Windows == nil {
		return nil, false, nil, fmt.Errorf("%w: windowed subscriptions are not offered", ErrBadQuery)
	}
	before := h.published.Load()
	partition := int32(-1)
	if q.OnePartition {
		partition = q.Partition
	}
	checkpoints, err = src.Windows(q.Key, q.Prefix, partition, func(w abacus.WindowUpdate) bool {
		if len(snap) == h.cfg.SnapshotLimit {
			truncated = true
			return false
		}
		snap = append(snap, windowQueued(w, 0))
		return true
	})
	if err != nil {
		return nil, false, nil, fmt.Errorf("read current windows of %q: %w", q.Key, err)
	}
	// As in snapshot; the checkpoints alone decide, the batches only say
	// when the fence is passed.
	s.setFence(&fence{before: before, until: h.published.Load() + 1, checkpoints: checkpoints})
	switch {
	case !q.Prefix:
		for p := range checkpoints { // the key's partition alone
			_ = h.do(ctx, func() { h.bind(s, p) })
		}
	case q.OnePartition:
		_ = h.do(ctx, func() { h.bind(s, q.Partition) })
	}
	return snap, truncated, checkpoints, nil
}

// pump writes the stream's updates as they come, and heartbeats, until it
// ends.
func (h *Hub) pump(ctx context.Context, s *stream, out *writer) error {
	tick := time.NewTicker(h.cfg.HeartbeatInterval)
	defer tick.Stop()
	var buf []queued
	for {
		var end endReason
		var final []byte
		buf, end, final = s.drain(buf[:0])
		if end.killed() {
			return nil
		}
		if len(buf) > 0 {
			if err := out.updates(buf); err != nil {
				return err
			}
			h.metrics.eventsSent.Add(float64(len(buf)))
			clear(buf)
		}
		if end == endMoved {
			if err := out.write(final); err != nil {
				return err
			}
			h.metrics.eventsSent.Inc()
			return nil
		}
		select {
		case <-s.wake:
		case <-tick.C:
			if err := out.write([]byte(heartbeat)); err != nil {
				return err
			}
		case <-ctx.Done():
			return nil
		}
	}
}

// writeFailed counts a stream whose write timed out as dropped; other
// write errors mean the client left.
func (h *Hub) writeFailed(s *stream, err error) {
	if err == nil || s.ended().killed() {
		return
	}
	if errors.Is(err, os.ErrDeadlineExceeded) {
		h.metrics.dropped.WithLabelValues(DropWriteTimeout).Inc()
		h.dropLog.log(h.log, "dropped a slow subscriber: write timed out", "timeout", h.cfg.WriteTimeout)
	}
}

func writeShuttingDown(w http.ResponseWriter) {
	WriteError(w, http.StatusServiceUnavailable, "shutting_down", "this instance is shutting down; retry on another", "1")
}

// WriteError answers {"error":{"code":...,"message":...}} with status, and
// Retry-After when retryAfter is not empty.
func WriteError(w http.ResponseWriter, status int, code, message, retryAfter string) {
	body, _ := json.Marshal(map[string]map[string]string{"error": {"code": code, "message": message}})
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)+1))
	if retryAfter != "" {
		w.Header().Set("Retry-After", retryAfter)
	}
	w.WriteHeader(status)
	_, _ = w.Write(append(body, '\n'))
}
