package api

import (
	"bytes"
	"cmp"
	"encoding/json"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/abacus-streams/abacus/internal/subscribe"
	"github.com/abacus-streams/abacus/internal/window"
	"github.com/labstack/echo/v4"
)

// WindowSubscriptions serves live streams of a windowed store's windows
// from this instance's own tasks.
type WindowSubscriptions interface {
	// ServeWindows is Subscriptions.Serve for the windowed store named
	// store: the windows of key (or of every key with the prefix; with a
	// partition of 0 or more, of that partition's keys only) owned here,
	// their current ones and then every update, until the client leaves
	// or the partition moves away.
	ServeWindows(w http.ResponseWriter, r *http.Request, store, key string, prefix bool, partition int32) error
}

// A windowed store's subscription is served as a count subscription is
// (docs/subscriptions.md): by the owner of each partition, and followed
// from owner to owner by the member the client asked, on one stream. Its
// events are windows, "<partition>-<offset>" their ids, and the values of
// a key do not only rise: a session merged into another is retracted
// (value null), so the follower cannot keep "the last value of each key"
// as a count stream's does. It keeps instead the windows it sent the
// client (windowRelay), and when the partition moves it turns the new
// owner's snapshot into the changes from what the client holds: the
// windows that changed, and a retraction of each window the snapshot no
// longer has (merged away, or expired, while the partition moved). A
// client of one stream therefore holds exactly the owner's windows
// through every move (e2e TestWindowSubscriptionFollowsItsKeyThroughARestart).
// A windowed store has no copies to stream from: max_lag is refused.

// subscribeWindows streams a windowed store's windows of a key, or of
// the keys with a prefix.
func (s *Server) subscribeWindows(c echo.Context, store string) error {
	sub, err := parseSubscription(c)
	if err != nil {
		return err
	}
	if sub.maxLag >= 0 {
		return fail(http.StatusBadRequest, "bad_parameter", "max_lag: windowed store %q is streamed from the owners of its partitions only, never from copies; subscribe without max_lag", store)
	}
	sub.store = store
	local, err := wantLocal(c)
	if err != nil {
		return err
	}
	switch {
	case local || forwarded(c):
		return s.serveLocal(c, sub)
	case sub.prefix:
		return s.fanIn(c, sub)
	}
	return s.follow(c, sub)
}

// windowFollower follows a windowed store's share of partition (a
// prefix's; a key's is looked up as the key's) onto out. The client's
// Last-Event-ID, "<partition>-<offset>", keeps from it the updates it had.
func (s *Server) windowFollower(c echo.Context, sub subscription, out *downstream, partition int32) *partFollower {
	r := &windowRelay{held: map[windowName]int64{}, nextPrune: minPrune}
	if ws, err := s.windowStore(sub.store); err == nil {
		r.spec = ws.Spec
	}
	r.after.partition, r.after.offset, r.after.set = subscribe.ParseEventID(c.Request().Header.Get("Last-Event-ID"))
	return &partFollower{s: s, c: c, sub: sub, partition: partition, out: out, win: r}
}

// windowName is a window of a key.
type windowName struct {
	key        string
	start, end int64
}

// windowRelay is what a member relaying a windowed store's stream (a
// key's, or a prefix's keys in one partition) knows of what it sent: the
// windows the client holds and their values. It is one partFollower's.
type windowRelay struct {
	spec window.Spec
	// after is the client's Last-Event-ID: the updates of its partition
	// at or below its offset are not passed on (the client had them).
	after struct {
		partition int32
		offset    int64
		set       bool
	}
	held map[windowName]int64

	// The stream from the current owner: while inSnapshot, its snapshot
	// is gathered, and passed on as changes at its SnapshotEnd comment.
	inSnapshot bool
	snapshot   []heldWindow
	truncated  bool

	// held is pruned of the windows expired by stream time when it
	// reaches nextPrune windows; maxEnd is the largest end seen, from
	// which a lower bound of the partition's stream time follows.
	maxEnd    int64
	nextPrune int
}

// minPrune is the least number of windows held before they are pruned.
const minPrune = 1024

// heldWindow is a window of a snapshot, and its event as it came.
type heldWindow struct {
	name  windowName
	value int64
	event []byte
}

// windowEvent reads a windowed store's event: its type, its id, and for a
// count event its window and value (nil for a retraction).
func windowEvent(block []byte) (event, id string, name windowName, value *int64) {
	var data []byte
	for line := range bytes.SplitSeq(block, []byte("\n")) {
		if v, ok := bytes.CutPrefix(line, []byte("event:")); ok {
			event = string(bytes.TrimSpace(v))
		} else if v, ok := bytes.CutPrefix(line, []byte("data:")); ok {
			data = bytes.TrimSpace(v)
		} else if v, ok := bytes.CutPrefix(line, []byte("id:")); ok {
			id = string(bytes.TrimSpace(v))
		}
	}
	if event == subscribe.EventCount {
		var d struct {
			Key        string `json:"key"`
			Start, End int64
			Value      *int64 `json:"value"`
		}
		_ = json.Unmarshal(data, &d)
		name, value = windowName{d.Key, d.Start, d.End}, d.Value
	}
	return event, id, name, value
}

// comment is the text of a comment block, and whether block is one.
func comment(block []byte) (string, bool) {
	c, ok := bytes.CutPrefix(block, []byte(":"))
	return string(bytes.TrimSpace(c)), ok
}

// relayWindows passes on one block of a windowed store's stream from the
// partition's owner; false when the client is gone.
func (f *partFollower) relayWindows(block []byte) bool {
	r := f.win
	if text, ok := comment(block); ok {
		switch {
		case strings.HasPrefix(text, subscribe.SnapshotTruncated):
			r.truncated = true
		case text == subscribe.SnapshotEnd || strings.HasPrefix(text, subscribe.SnapshotEnd+" "):
			if r.inSnapshot {
				r.inSnapshot = false
				return f.passSnapshot(strings.TrimSpace(strings.TrimPrefix(text, subscribe.SnapshotEnd)))
			}
		case !f.sub.prefix && strings.HasPrefix(text, "ping"):
			return f.write(block) // a key stream's heartbeat is the owner's
		}
		return true // the rest (and a prefix's heartbeats: fanIn sends one for all) is the relay's own
	}
	event, id, name, value := windowEvent(block)
	if event != subscribe.EventCount {
		return true // moved: the stream ends next, and this one goes on
	}
	if r.inSnapshot {
		if value != nil {
			r.snapshot = append(r.snapshot, heldWindow{name: name, value: *value, event: bytes.Clone(block)})
		}
		return true
	}
	if p, o, ok := subscribe.ParseEventID(id); ok && r.after.set && p == r.after.partition && o <= r.after.offset {
		return true // the client had it before it connected
	}
	if value == nil {
		delete(r.held, name)
	} else {
		r.hold(name, *value)
	}
	return f.write(block)
}

// passSnapshot passes on an owner's snapshot as the changes from what the
// client holds: first a retraction of each window the client holds that
// the snapshot has not (unless it was truncated: then what it left out is
// not known to be gone), then the windows the client does not hold with
// that value. The client holds nothing before the first snapshot, which
// therefore goes on whole. id is the snapshot's, the retractions'
// (TestWindowRelayTurnsTheNextOwnersSnapshotIntoChanges).
func (f *partFollower) passSnapshot(id string) bool {
	r := f.win
	now := make(map[windowName]int64, len(r.snapshot))
	for _, w := range r.snapshot {
		now[w.name] = w.value
	}
	var gone []windowName
	if !r.truncated {
		for name := range r.held {
			if _, ok := now[name]; !ok {
				gone = append(gone, name)
			}
		}
	}
	slices.SortFunc(gone, func(a, b windowName) int {
		return cmp.Or(strings.Compare(a.key, b.key), cmp.Compare(a.start, b.start), cmp.Compare(a.end, b.end))
	})
	var b []byte
	for _, name := range gone {
		delete(r.held, name)
		b = appendRetraction(b[:0], id, name)
		if !f.write(b) {
			return false
		}
	}
	for _, w := range r.snapshot {
		if v, ok := r.held[w.name]; ok && v == w.value {
			continue
		}
		r.hold(w.name, w.value)
		if !f.write(w.event) {
			return false
		}
	}
	r.snapshot, r.truncated = nil, false
	return true
}

// appendRetraction frames the retraction of a window, with id if any.
func appendRetraction(b []byte, id string, name windowName) []byte {
	if id != "" {
		b = append(append(append(b, "id: "...), id...), '\n')
	}
	key, _ := json.Marshal(name.key)
	b = append(b, "event: "+subscribe.EventCount+"\ndata: {\"key\":"...)
	b = append(b, key...)
	b = append(b, `,"start":`...)
	b = strconv.AppendInt(b, name.start, 10)
	b = append(b, `,"end":`...)
	b = strconv.AppendInt(b, name.end, 10)
	return append(b, ",\"value\":null}\n\n"...)
}

// hold notes that the client holds the window at value, and prunes the
// windows held when there are many: those surely expired, whose
// retraction a later move therefore need not send (the client drops
// expired windows itself, as it must without moves;
// TestWindowRelayForgetsExpiredWindows).
func (r *windowRelay) hold(name windowName, value int64) {
	r.held[name] = value
	r.maxEnd = max(r.maxEnd, name.end)
	if len(r.held) < r.nextPrune || r.spec.Retention <= 0 {
		return
	}
	// A window's end is at most one size past the record that made it
	// (a session's is its last record's time): stream time, the largest
	// record time, is at least this.
	streamTime := r.maxEnd
	if r.spec.Kind != window.Session {
		streamTime -= r.spec.Size.Milliseconds()
	}
	for n := range r.held {
		if r.spec.Expired(window.Window{Start: n.start, End: n.end}, streamTime) {
			delete(r.held, n)
		}
	}
	r.nextPrune = max(2*len(r.held), minPrune)
}

// write passes block on to the client; false when it is gone.
func (f *partFollower) write(block []byte) bool {
	if !f.out.write(block) {
		f.gone = true
		return false
	}
	return true
}
