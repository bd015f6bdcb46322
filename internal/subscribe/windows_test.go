package subscribe

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/abacus-streams/abacus/internal/abacus"
	"github.com/prometheus/client_golang/prometheus"
)

// win names a window of a key in the tests' windowed store.
type win struct {
	key        string
	start, end int64
}

// memWindows is a windowed store behind a hub in tests: commit writes it,
// moving the partitions' checkpoints, and then publishes, as the
// processor's committer does.
type memWindows struct {
	mu          sync.Mutex
	windows     map[win]int64
	checkpoints [testPartitions]int64
}

func newMemWindows() *memWindows {
	m := &memWindows{windows: map[win]int64{}}
	for p := range m.checkpoints {
		m.checkpoints[p] = -1
	}
	return m
}

// wput is a window's new count, wdel its retraction, for commit.
type wchange struct {
	w       win
	v       int64
	deleted bool
}

func wput(key string, start, end, v int64) wchange { return wchange{w: win{key, start, end}, v: v} }
func wdel(key string, start, end int64) wchange {
	return wchange{w: win{key, start, end}, deleted: true}
}

// commit stores the changes as one batch, each partition's at the next
// offset of its changelog, and publishes them.
func (m *memWindows) commit(h *Hub, changes ...wchange) []abacus.WindowUpdate {
	m.mu.Lock()
	moved := map[int32]bool{}
	for _, c := range changes {
		if p := partitionOf(c.w.key); !moved[p] {
			moved[p] = true
			m.checkpoints[p]++
		}
	}
	ups := make([]abacus.WindowUpdate, 0, len(changes))
	for _, c := range changes {
		p := partitionOf(c.w.key)
		if c.deleted {
			delete(m.windows, c.w)
		} else {
			m.windows[c.w] = c.v
		}
		ups = append(ups, abacus.WindowUpdate{Key: c.w.key, Start: c.w.start, End: c.w.end, Value: c.v, Deleted: c.deleted, Partition: p, Offset: m.checkpoints[p]})
	}
	m.mu.Unlock()
	h.PublishWindows(ups)
	return ups
}

func (m *memWindows) source() Source {
	return Source{Windows: func(key string, prefix bool, partition int32, fn func(abacus.WindowUpdate) bool) (map[int32]int64, error) {
		m.mu.Lock()
		cps := map[int32]int64{}
		switch {
		case !prefix:
			cps[partitionOf(key)] = m.checkpoints[partitionOf(key)]
		case partition >= 0:
			cps[partition] = m.checkpoints[partition]
		default:
			for p, cp := range m.checkpoints {
				cps[int32(p)] = cp
			}
		}
		var got []abacus.WindowUpdate
		for w, v := range m.windows {
			cp, read := cps[partitionOf(w.key)]
			if read && (w.key == key || prefix && strings.HasPrefix(w.key, key)) {
				got = append(got, abacus.WindowUpdate{Key: w.key, Start: w.start, End: w.end, Value: v, Partition: partitionOf(w.key), Offset: cp})
			}
		}
		m.mu.Unlock()
		slices.SortFunc(got, func(a, b abacus.WindowUpdate) int {
			return strings.Compare(fmt.Sprintf("%s/%020d/%020d", a.Key, a.Start, a.End), fmt.Sprintf("%s/%020d/%020d", b.Key, b.Start, b.End))
		})
		for _, u := range got {
			if !fn(u) {
				break
			}
		}
		return cps, nil
	}}
}

// windowHub is a running windowed store's hub with its store and server.
type windowHub struct {
	*testHub
	windows *memWindows
	srv     *httptest.Server
}

func newWindowHub(t testing.TB, opts ...hubOption) *windowHub {
	t.Helper()
	th := newTestHub(t, append([]hubOption{withConfig(func(c *Config) { c.Windows = true })}, opts...)...)
	wh := &windowHub{testHub: th, windows: newMemWindows()}
	wh.srv = httptest.NewServer(th.Handler(wh.windows.source()))
	t.Cleanup(wh.srv.Close)
	return wh
}

func (wh *windowHub) url(q string) string { return wh.srv.URL + "?" + q }

// windowEvent is a windowed stream's event, its id, and its value; a
// retraction has none.
type windowEvent struct {
	id  string
	w   win
	v   int64
	del bool
}

func (e windowEvent) String() string {
	if e.del {
		return fmt.Sprintf("%s %s[%d,%d]=null", e.id, e.w.key, e.w.start, e.w.end)
	}
	return fmt.Sprintf("%s %s[%d,%d]=%d", e.id, e.w.key, e.w.start, e.w.end, e.v)
}

// window reads a windowed store's event, checking its layout.
func (f frame) window(t testing.TB) windowEvent {
	t.Helper()
	if f.Event != EventCount {
		t.Fatalf("frame %+v is not a count event", f)
	}
	var d struct {
		Key        string `json:"key"`
		Start, End int64
		Value      *int64 `json:"value"`
	}
	if err := json.Unmarshal([]byte(f.Data), &d); err != nil {
		t.Fatalf("window data %q: %v", f.Data, err)
	}
	e := windowEvent{id: f.ID, w: win{d.Key, d.Start, d.End}, del: d.Value == nil}
	value := "null"
	if d.Value != nil {
		e.v = *d.Value
		value = fmt.Sprint(e.v)
	}
	if want := fmt.Sprintf(`{"key":%s,"start":%d,"end":%d,"value":%s}`, mustJSON(d.Key), d.Start, d.End, value); f.Data != want {
		t.Fatalf("window data %q is not laid out as %q", f.Data, want)
	}
	return e
}

// expectWindowSnapshot reads the retry field, then the snapshot's events
// up to the SnapshotEnd comments of the partitions given, and returns the
// events.
func expectWindowSnapshot(t *testing.T, c *sseConn, ends ...string) []windowEvent {
	t.Helper()
	if f, ok := c.next(t); !ok || f.Retry != "1000" {
		t.Fatalf("first frame %+v, want retry: 1000", f)
	}
	var got []windowEvent
	var comments []string
	for len(comments) < len(ends) {
		f, ok := c.next(t)
		switch {
		case !ok:
			t.Fatalf("stream ended in its snapshot")
		case f.Event != "":
			if len(comments) > 0 {
				t.Fatalf("event %+v after the snapshot's end", f)
			}
			got = append(got, f.window(t))
		default:
			comments = append(comments, f.Comments...)
		}
	}
	if !slices.Equal(comments, ends) {
		t.Fatalf("snapshot ended with %q; want %q", comments, ends)
	}
	return got
}

func eventStrings(es []windowEvent) []string {
	out := make([]string, len(es))
	for i, e := range es {
		out[i] = e.String()
	}
	return out
}

func TestWindowEventFraming(t *testing.T) {
	q := windowQueued(abacus.WindowUpdate{Key: `a"b`, Start: 1000, End: 6000, Value: 4, Partition: 3, Offset: 17}, 1)
	if got, want := string(appendWindow(nil, &q)), "id: 3-17\nevent: count\ndata: {\"key\":\"a\\\"b\",\"start\":1000,\"end\":6000,\"value\":4}\n\n"; got != want {
		t.Errorf("window event %q, want %q", got, want)
	}
	q = windowQueued(abacus.WindowUpdate{Key: "k", Start: 5, End: 9, Deleted: true, Partition: 0, Offset: 2}, 1)
	if got, want := string(appendWindow(nil, &q)), "id: 0-2\nevent: count\ndata: {\"key\":\"k\",\"start\":5,\"end\":9,\"value\":null}\n\n"; got != want {
		t.Errorf("retraction %q, want %q", got, want)
	}
	if got := string(appendSnapshotEnd(nil, 2, 40)); got != ": snapshot end 2-40\n\n" {
		t.Errorf("snapshot end %q", got)
	}
	if got := string(appendSnapshotEnd(nil, 2, -1)); got != ": snapshot end\n\n" {
		t.Errorf("snapshot end without a checkpoint %q", got)
	}
	for id, want := range map[string]string{"3-17": "3 17", "0-0": "0 0", "17": "", "3--1": "", "-1-2": "", "+3-4": "", "3-": "", "": "", "a-1": ""} {
		p, o, ok := ParseEventID(id)
		got := ""
		if ok {
			got = fmt.Sprint(p, " ", o)
		}
		if got != want {
			t.Errorf("ParseEventID(%q) = %q; want %q", id, got, want)
		}
	}
	if windowSlot("a", 1, 2) == windowSlot("a", 2, 1) || windowSlot("a\x00", 0, 1) == windowSlot("a", 0, 1) {
		t.Error("two windows share a slot")
	}
}

// The inbox and a stream keep one update per window, the latest, in
// publish order: an update of one window of a key never replaces
// another window's.
func TestWindowUpdatesCoalescePerWindow(t *testing.T) {
	in := inbox{latest: map[string]queued{}}
	for i, u := range []abacus.WindowUpdate{
		{Key: "k", Start: 0, End: 5, Value: 1}, {Key: "k", Start: 1, End: 6, Value: 1},
		{Key: "k", Start: 0, End: 5, Value: 2}, {Key: "k", Start: 2, End: 7, Value: 1},
		{Key: "k", Start: 1, End: 6, Deleted: true},
	} {
		in.add(windowQueued(u, uint64(i+1)))
	}
	latest, _ := in.take(map[string]queued{})
	var got []string
	for _, q := range appendOrdered(nil, latest) {
		got = append(got, windowEvent{w: win{q.Key, q.start, q.end}, v: q.Value, del: q.deleted}.String())
	}
	if want := []string{" k[0,5]=2", " k[2,7]=1", " k[1,6]=null"}; !slices.Equal(got, want) {
		t.Errorf("queued %q; want %q", got, want)
	}

	// A key stream read slowly: every batch moves five windows of the key;
	// the stream ends on each window's last value, in fewer events.
	wh := newWindowHub(t, withSmallSendBuffers())
	const key, n = "slow", 2000
	c := subscribe(t, wh.url(keyQuery(key)), nil)
	expectWindowSnapshot(t, c, SnapshotEnd)
	for v := int64(1); v <= n; v++ {
		var changes []wchange
		for s := range int64(5) {
			changes = append(changes, wput(key, s*1000, s*1000+5000, v))
		}
		wh.windows.commit(wh.Hub, changes...)
	}
	last := map[win]int64{}
	events := 0
	for done := 0; done < 5; {
		e := c.nextEvent(t).window(t)
		events++
		if prev, ok := last[e.w]; ok && e.v <= prev {
			t.Fatalf("%v after %d: a window's value went back", e, prev)
		}
		last[e.w] = e.v
		if e.v == n {
			done++
		}
	}
	if events >= 5*n {
		t.Errorf("%d events for %d updates: nothing was coalesced", events, 5*n)
	}
	if metric(t, wh.reg, "abacus_sse_updates_coalesced_total") == 0 {
		t.Error("abacus_sse_updates_coalesced_total is 0")
	}
	t.Logf("%d updates arrived as %d events", 5*n, events)
}

// A session merged into another reaches the stream as a retraction, with
// the id of the batch that merged it, and the merged session after it.
func TestWindowRetractionReachesTheStream(t *testing.T) {
	wh := newWindowHub(t)
	const key = "alice"
	p := partitionOf(key)
	wh.windows.commit(wh.Hub, wput(key, 0, 0, 1), wput(key, 5000, 5000, 1), wput(keyIn(p, "other"), 0, 0, 9))
	c := subscribe(t, wh.url(keyQuery(key)), nil)
	id := EventID(p, 0)
	snap := expectWindowSnapshot(t, c, SnapshotEnd+" "+id)
	if got, want := eventStrings(snap), []string{id + " alice[0,0]=1", id + " alice[5000,5000]=1"}; !slices.Equal(got, want) {
		t.Fatalf("snapshot %q; want %q", got, want)
	}
	wh.windows.commit(wh.Hub, wdel(key, 0, 0), wdel(key, 5000, 5000), wput(key, 0, 5000, 3))
	id = EventID(p, 1)
	var got []string
	for range 3 {
		got = append(got, c.nextEvent(t).window(t).String())
	}
	if want := []string{id + " alice[0,0]=null", id + " alice[5000,5000]=null", id + " alice[0,5000]=3"}; !slices.Equal(got, want) {
		t.Fatalf("events %q; want %q", got, want)
	}

	// The stream is bound to the key's partition: it moves with it.
	wh.EndPartition(p, "revoked")
	if f := c.nextEvent(t); f.Event != EventMoved {
		t.Fatalf("event %+v; want moved", f)
	}
	c.expectEnd(t)
}

// A reconnection with Last-Event-ID gets the current windows again, then
// only the updates of that id's partition past its offset, and every
// update of the other partitions.
func TestWindowReconnectSkipsWhatTheClientHad(t *testing.T) {
	wh := newWindowHub(t)
	a, b := keyIn(1, "p/a"), keyIn(2, "p/b")
	wh.windows.commit(wh.Hub, wput(a, 0, 10, 1), wput(b, 0, 10, 1))
	q := prefixQuery("p/")
	c := subscribe(t, wh.url(q), nil)
	snap := expectWindowSnapshot(t, c, SnapshotEnd, SnapshotEnd+" "+EventID(1, 0), SnapshotEnd+" "+EventID(2, 0), SnapshotEnd)
	if len(snap) != 2 {
		t.Fatalf("snapshot %v; want both windows", snap)
	}
	wh.windows.commit(wh.Hub, wput(a, 0, 10, 2))
	last := c.nextEvent(t).window(t)
	if last.id != EventID(1, 1) {
		t.Fatalf("update %v; want the id 1-1", last)
	}
	c.close()
	eventually(t, "the stream to close", func() bool { return metric(t, wh.reg, "abacus_sse_subscribers") == 0 })

	// The client names an offset past partition 1's checkpoint (as a
	// client of a member further ahead would): partition 1's updates up
	// to it are skipped, partition 2's are not, whatever their offsets.
	c = subscribe(t, wh.url(q), http.Header{"Last-Event-Id": {EventID(1, 3)}})
	snap = expectWindowSnapshot(t, c, SnapshotEnd, SnapshotEnd+" "+EventID(1, 1), SnapshotEnd+" "+EventID(2, 0), SnapshotEnd)
	if got, want := eventStrings(snap), []string{"1-1 " + a + "[0,10]=2", "2-0 " + b + "[0,10]=1"}; !slices.Equal(got, want) {
		t.Fatalf("snapshot after a reconnection %q; want the current windows again, %q", got, want)
	}
	wh.windows.commit(wh.Hub, wput(a, 0, 10, 3))                     // 1-2
	wh.windows.commit(wh.Hub, wput(a, 0, 10, 4), wput(b, 0, 10, 2))  // 1-3, 2-1
	wh.windows.commit(wh.Hub, wput(a, 0, 10, 5), wput(a, 10, 20, 1)) // 1-4
	var got []string
	for range 3 {
		got = append(got, c.nextEvent(t).window(t).String())
	}
	if want := []string{"2-1 " + b + "[0,10]=2", "1-4 " + a + "[0,10]=5", "1-4 " + a + "[10,20]=1"}; !slices.Equal(got, want) {
		t.Fatalf("updates %q; want %q", got, want)
	}
}

// Updates published while a stream reads its current windows are in what
// it read, by the checkpoint read with them, and are not sent again; a
// window updated later is.
func TestWindowSnapshotFence(t *testing.T) {
	wh := newWindowHub(t)
	const key = "raced"
	wh.windows.commit(wh.Hub, wput(key, 0, 10, 1))
	src := wh.windows.source()
	read := src.Windows
	src.Windows = func(k string, prefix bool, partition int32, fn func(abacus.WindowUpdate) bool) (map[int32]int64, error) {
		wh.windows.commit(wh.Hub, wput(k, 0, 10, 2), wput(k, 10, 20, 1)) // after the stream registered,
		wh.windows.commit(wh.Hub, wdel(k, 10, 20))                       // before the read
		return read(k, prefix, partition, fn)
	}
	srv := httptest.NewServer(wh.Handler(src))
	t.Cleanup(srv.Close)
	c := subscribe(t, srv.URL+"?"+keyQuery(key), nil)
	p := partitionOf(key)
	snap := expectWindowSnapshot(t, c, SnapshotEnd+" "+EventID(p, 2))
	if got, want := eventStrings(snap), []string{EventID(p, 2) + " raced[0,10]=2"}; !slices.Equal(got, want) {
		t.Fatalf("snapshot %q; want %q", got, want)
	}
	wh.windows.commit(wh.Hub, wput(key, 0, 10, 3))
	if got := c.nextEvent(t).window(t).String(); got != EventID(p, 3)+" raced[0,10]=3" {
		t.Fatalf("first update %s; want %s 3: updates in the snapshot were sent again", got, EventID(p, 3))
	}
}

// Hubs of one group count their streams against one MaxSubscribers and
// report in one set of metrics; a count hub never sees windows.
func TestGroupSharesMaxSubscribers(t *testing.T) {
	reg := prometheus.NewRegistry()
	g := NewGroup(Config{MaxSubscribers: 2, Registerer: reg})
	counts := newTestHub(t, withConfig(func(c *Config) { c.Group = g }))
	windows := newTestHub(t, withConfig(func(c *Config) { c.Group, c.Windows = g, true }))
	ws := newMemWindows()
	wsrv := httptest.NewServer(windows.Handler(ws.source()))
	t.Cleanup(wsrv.Close)

	cc := subscribe(t, counts.url(keyQuery("k")), nil)
	wc := subscribe(t, wsrv.URL+"?"+keyQuery("k"), nil)
	expectSnapshot(t, cc, "k", 0)
	expectWindowSnapshot(t, wc, SnapshotEnd)
	for _, u := range []string{counts.url(keyQuery("k")), wsrv.URL + "?" + keyQuery("k")} {
		_, resp := dial(t, u, nil)
		if resp.StatusCode != http.StatusServiceUnavailable {
			t.Fatalf("a third stream in a group of 2: %s", resp.Status)
		}
	}
	if got := metric(t, reg, "abacus_sse_subscribers_rejected_total"); got != 2 {
		t.Errorf("rejected = %v, want 2", got)
	}
	if got := metric(t, reg, "abacus_sse_subscribers"); got != 2 {
		t.Errorf("subscribers = %v, want 2", got)
	}
	ws.commit(windows.Hub, wput("k", 0, 10, 7))
	counts.store.commit(counts.Hub, kv{"k", 1})
	if got := wc.nextEvent(t).window(t); got.v != 7 {
		t.Fatalf("window stream got %v; want k[0,10]=7", got)
	}
	if got := cc.nextEvent(t).count(t); got.Value != 1 {
		t.Fatalf("count stream got %+v; want k=1", got)
	}
}
