package subscribe

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// expectIncreasing reads count events of key until value last, checking
// that values strictly increase and that ids never go back in the
// partition. It returns how many events it read.
func expectIncreasing(t *testing.T, c *sseConn, key string, after, last int64) int {
	t.Helper()
	prev, n := after, 0
	for prev != last {
		f := c.nextEvent(t)
		got := f.count(t)
		n++
		if got.Key != key || got.Partition != partitionOf(key) {
			t.Fatalf("event for %q/%d, want %q/%d", got.Key, got.Partition, key, partitionOf(key))
		}
		if got.Value <= prev {
			t.Fatalf("value %d after %d: not strictly increasing", got.Value, prev)
		}
		if f.ID != strconv.FormatInt(got.Value, 10) {
			t.Fatalf("key stream event %+v has id %q, want its value", got, f.ID)
		}
		prev = got.Value
	}
	return n
}

func parseID(t *testing.T, id string) (int32, int64) {
	t.Helper()
	ps, os, ok := strings.Cut(id, "-")
	p, err1 := strconv.ParseInt(ps, 10, 32)
	o, err2 := strconv.ParseInt(os, 10, 64)
	if !ok || err1 != nil || err2 != nil {
		t.Fatalf("id %q is not <partition>-<offset>", id)
	}
	return int32(p), o
}

// expectSnapshot reads the retry field and the current value of key, whose
// id is the value.
func expectSnapshot(t *testing.T, c *sseConn, key string, value int64) {
	t.Helper()
	f, ok := c.next(t)
	if !ok || f.Retry != "1000" {
		t.Fatalf("first frame %+v, want retry: 1000", f)
	}
	f = c.nextEvent(t)
	got := f.count(t)
	if f.ID != strconv.FormatInt(value, 10) || got != (countData{Key: key, Value: value, Partition: partitionOf(key)}) {
		t.Fatalf("snapshot %+v (id %q), want %s=%d with id %[4]d", got, f.ID, key, value)
	}
}

func TestKeySubscriberSeesCurrentValueThenEveryUpdate(t *testing.T) {
	th := newTestHub(t)
	const key, n = "page/home", 500
	th.store.commit(th.Hub, kv{key, 5})
	c := subscribe(t, th.url(keyQuery(key)), nil)
	expectSnapshot(t, c, key, 5)
	for v := int64(6); v <= n; v++ {
		th.store.commit(th.Hub, kv{key, v}, kv{"other", v})
	}
	expectIncreasing(t, c, key, 5, n)
}

func TestKeyNeverCountedStartsAtZero(t *testing.T) {
	th := newTestHub(t)
	c := subscribe(t, th.url(keyQuery("new")), nil)
	expectSnapshot(t, c, "new", 0)
	th.store.commit(th.Hub, kv{"new", 1})
	expectIncreasing(t, c, "new", 0, 1)
}

func TestSlowKeySubscriberEndsOnFinalValue(t *testing.T) {
	th := newTestHub(t, withSmallSendBuffers())
	const key, n = "slow", 5000
	c := subscribe(t, th.url(keyQuery(key)), nil)
	expectSnapshot(t, c, key, 0)
	// Stop reading while every value is published; the socket buffers fill
	// up and the stream's pending value is replaced, never queued.
	for v := int64(1); v <= n; v++ {
		th.store.commit(th.Hub, kv{key, v})
	}
	got := expectIncreasing(t, c, key, 0, n)
	if got >= n {
		t.Errorf("read %d events for %d updates: nothing was coalesced", got, n)
	}
	if metric(t, th.reg, "abacus_sse_updates_coalesced_total") == 0 {
		t.Error("abacus_sse_updates_coalesced_total is 0")
	}
	t.Logf("%d updates arrived as %d events", n, got)
}

func TestPrefixSubscriberGetsOnlyMatchingKeys(t *testing.T) {
	th := newTestHub(t)
	th.store.commit(th.Hub, kv{"a/1", 1}, kv{"a/2", 2}, kv{"b/1", 3}, kv{"ab", 4})
	slash := subscribe(t, th.url(prefixQuery("a/")), nil)
	a := subscribe(t, th.url(prefixQuery("a")), nil)
	exact := subscribe(t, th.url(keyQuery("a/1")), nil)

	expect := func(c *sseConn, want ...countData) {
		t.Helper()
		for _, w := range want {
			f := c.nextEvent(t)
			if got := f.count(t); got != w {
				t.Fatalf("event %+v, want %+v", got, w)
			}
		}
	}
	cd := func(k string, v int64) countData { return countData{k, v, partitionOf(k)} }
	expect(slash, cd("a/1", 1), cd("a/2", 2))
	expect(a, cd("a/1", 1), cd("a/2", 2), cd("ab", 4))
	expect(exact, cd("a/1", 1))

	th.store.commit(th.Hub, kv{"a/1", 10}, kv{"b/1", 11}, kv{"ab", 12}, kv{"a/3", 1}, kv{"a", 5})
	th.store.commit(th.Hub, kv{"a/2", 20}, kv{"b", 1})
	th.store.commit(th.Hub, kv{"a/zz", 1}) // a sentinel: nothing else comes before it
	expect(slash, cd("a/1", 10), cd("a/3", 1), cd("a/2", 20), cd("a/zz", 1))
	expect(a, cd("a/1", 10), cd("ab", 12), cd("a/3", 1), cd("a", 5), cd("a/2", 20), cd("a/zz", 1))
	expect(exact, cd("a/1", 10))
	th.store.commit(th.Hub, kv{"a/1", 11})
	expect(exact, cd("a/1", 11))
}

func TestPrefixSnapshotIsCapped(t *testing.T) {
	th := newTestHub(t, withConfig(func(c *Config) { c.SnapshotLimit = 2 }))
	th.store.commit(th.Hub, kv{"p1", 1}, kv{"p2", 2}, kv{"p3", 3})
	c := subscribe(t, th.url(prefixQuery("p")), nil)
	for _, k := range []string{"p1", "p2"} {
		if got := c.nextEvent(t).count(t); got.Key != k {
			t.Fatalf("snapshot key %q, want %q", got.Key, k)
		}
	}
	f, _ := c.next(t)
	if len(f.Comments) != 1 || f.Comments[0] != "snapshot truncated at 2 keys" {
		t.Fatalf("frame %+v, want the truncation comment", f)
	}
	th.store.commit(th.Hub, kv{"p3", 4})
	if got := c.nextEvent(t).count(t); got.Key != "p3" || got.Value != 4 {
		t.Fatalf("update %+v, want p3=4", got)
	}
}

func TestMaxSubscribers(t *testing.T) {
	th := newTestHub(t, withConfig(func(c *Config) { c.MaxSubscribers = 2 }))
	first := subscribe(t, th.url(keyQuery("k")), nil)
	subscribe(t, th.url(keyQuery("k")), nil)

	_, resp := dial(t, th.url(keyQuery("k")), nil)
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("third subscription: %s, Retry-After %q", resp.Status, resp.Header.Get("Retry-After"))
	}
	var e struct {
		Error struct{ Code, Message string } `json:"error"`
	}
	if err := json.Unmarshal(body, &e); err != nil || e.Error.Code != "too_many_subscribers" || e.Error.Message == "" {
		t.Fatalf("body %s: want a too_many_subscribers error (%v)", body, err)
	}
	if got := metric(t, th.reg, "abacus_sse_subscribers_rejected_total"); got != 1 {
		t.Errorf("rejected = %v, want 1", got)
	}
	if got := metric(t, th.reg, "abacus_sse_subscribers"); got != 2 {
		t.Errorf("subscribers = %v, want 2", got)
	}

	first.close()
	eventually(t, "a slot to free up", func() bool { return metric(t, th.reg, "abacus_sse_subscribers") == 1 })
	subscribe(t, th.url(keyQuery("k")), nil)
}

func TestEndPartitionSendsMovedAndEndsTheStream(t *testing.T) {
	th := newTestHub(t)
	moving, staying := keyIn(1, "m"), keyIn(2, "s")
	th.store.commit(th.Hub, kv{moving, 1}, kv{staying, 1})
	cm := subscribe(t, th.url(keyQuery(moving)), nil)
	cs := subscribe(t, th.url(keyQuery(staying)), nil)
	cp := subscribe(t, th.url(prefixQuery("")), nil)
	expectSnapshot(t, cm, moving, 1)
	expectSnapshot(t, cs, staying, 1)

	th.store.commit(th.Hub, kv{moving, 2})
	th.EndPartition(1, "revoked")

	expectIncreasing(t, cm, moving, 1, 2) // published before: written first
	for _, c := range []*sseConn{cm, cp} {
		var f frame
		for f = c.nextEvent(t); f.Event == EventCount; f = c.nextEvent(t) {
		}
		if f.Event != EventMoved || f.Data != `{"partition":1,"reason":"revoked"}` {
			t.Fatalf("last event %+v, want moved", f)
		}
		c.expectEnd(t)
	}
	th.store.commit(th.Hub, kv{staying, 2})
	expectIncreasing(t, cs, staying, 1, 2)
	if got := metric(t, th.reg, "abacus_sse_subscribers_moved_total"); got != 2 {
		t.Errorf("moved = %v, want 2", got)
	}
}

// A key stream's id is its value: a reconnection with Last-Event-ID is sent
// the current value only when it is news, and no update it has seen.
// A prefix stream of one partition is sent that partition's keys only, and
// ends when that partition leaves, not when another one does.
func TestOnePartitionPrefixStream(t *testing.T) {
	th := newTestHub(t)
	in1, in2 := keyIn(1, "p/"), keyIn(2, "p/")
	th.store.commit(th.Hub, kv{in1, 1}, kv{in2, 1})
	c := subscribe(t, th.url(prefixQuery("p/")+"&partition=1"), nil)
	if r, ok := c.next(t); !ok || r.Retry != "1000" {
		t.Fatalf("first frame %+v, want retry: 1000", r)
	}
	if got := c.nextEvent(t).count(t); got != (countData{Key: in1, Value: 1, Partition: 1}) {
		t.Fatalf("snapshot %+v, want %s=1 of partition 1 alone", got, in1)
	}
	th.store.commit(th.Hub, kv{in2, 2})
	th.store.commit(th.Hub, kv{in1, 2})
	if f := c.nextEvent(t); f.count(t) != (countData{Key: in1, Value: 2, Partition: 1}) || f.ID == "" {
		t.Fatalf("update %+v, want %s=2 with an id", f, in1)
	}
	th.EndPartition(2, "revoked")
	th.store.commit(th.Hub, kv{in1, 3})
	if got := c.nextEvent(t).count(t); got.Value != 3 {
		t.Fatalf("after partition 2 left: %+v, want %s=3", got, in1)
	}
	th.EndPartition(1, "revoked")
	if f := c.nextEvent(t); f.Event != EventMoved || f.Data != `{"partition":1,"reason":"revoked"}` {
		t.Fatalf("last event %+v, want moved", f)
	}
	c.expectEnd(t)

	for _, q := range []string{keyQuery("k") + "&partition=1", prefixQuery("p/") + "&partition=-1", prefixQuery("p/") + "&partition=x"} {
		resp, err := http.Get(th.url(q))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("%s: %d, want 400", q, resp.StatusCode)
		}
	}
}

func TestReconnectWithLastEventIDSendsOnlyNews(t *testing.T) {
	th := newTestHub(t)
	const key = "k"
	th.store.commit(th.Hub, kv{key, 1})
	c := subscribe(t, th.url(keyQuery(key)), nil)
	expectSnapshot(t, c, key, 1)
	th.store.commit(th.Hub, kv{key, 2})
	f := c.nextEvent(t)
	c.close()
	eventually(t, "the stream to close", func() bool { return metric(t, th.reg, "abacus_sse_subscribers") == 0 })

	// Nothing changed: no snapshot, the next update first.
	c = subscribe(t, th.url(keyQuery(key)), http.Header{"Last-Event-Id": {f.ID}})
	if r, ok := c.next(t); !ok || r.Retry != "1000" {
		t.Fatalf("first frame %+v, want retry: 1000", r)
	}
	th.store.commit(th.Hub, kv{key, 3})
	expectIncreasing(t, c, key, 2, 3)
	c.close()
	eventually(t, "the stream to close", func() bool { return metric(t, th.reg, "abacus_sse_subscribers") == 0 })

	// Missed updates: the current value, then what follows.
	th.store.commit(th.Hub, kv{key, 4}, kv{key + "x", 1})
	c = subscribe(t, th.url(keyQuery(key)), http.Header{"Last-Event-Id": {"3"}})
	expectSnapshot(t, c, key, 4)
	th.store.commit(th.Hub, kv{key, 5})
	expectIncreasing(t, c, key, 4, 5)
	c.close()

	// An id that is not a value (a prefix stream's, an older release's)
	// names no position: the current value comes as on a first connection.
	c = subscribe(t, th.url(keyQuery(key)), http.Header{"Last-Event-Id": {"2-17"}})
	expectSnapshot(t, c, key, 5)
}

func TestHeartbeat(t *testing.T) {
	th := newTestHub(t, withConfig(func(c *Config) { c.HeartbeatInterval = 10 * time.Millisecond }))
	c := subscribe(t, th.url(keyQuery("idle")), nil)
	for {
		f, ok := c.next(t)
		if !ok {
			t.Fatal("stream ended before a heartbeat")
		}
		if len(f.Comments) == 1 && f.Comments[0] == "ping" {
			return
		}
	}
}

func TestShutdownEndsStreamsPromptly(t *testing.T) {
	th := newTestHub(t, withConfig(func(c *Config) { c.WriteTimeout = time.Hour }))
	cs := make([]*sseConn, 10)
	for i := range cs {
		cs[i] = subscribe(t, th.url(keyQuery(fmt.Sprint(i))), nil)
		cs[i].nextEvent(t)
	}
	th.stop() // returns only once every handler has
	for _, c := range cs {
		c.expectEnd(t)
	}
	_, resp := dial(t, th.url(keyQuery("late")), nil)
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(string(body), "shutting_down") {
		t.Fatalf("subscription after shutdown: %s %s", resp.Status, body)
	}
	th.store.commit(th.Hub, kv{"0", 1}) // never blocks, goes nowhere
}

func TestOverflowDropsPrefixSubscriber(t *testing.T) {
	th := newTestHub(t, withSmallSendBuffers(), withConfig(func(c *Config) { c.Buffer = 8 }))
	c := subscribe(t, th.url(prefixQuery("")), nil)
	_ = c // never read past the headers
	for round := 0; metric(t, th.reg, "abacus_sse_subscribers_dropped_total", "reason", DropOverflow) == 0; round++ {
		if round > 100_000 {
			t.Fatal("the stalled prefix stream was never dropped")
		}
		var batch []kv
		for i := range 16 {
			batch = append(batch, kv{fmt.Sprintf("key-%04d", i), int64(round + 1)})
		}
		th.store.commit(th.Hub, batch...)
		th.settle(t)
	}
	eventually(t, "the dropped stream's handler to return", func() bool { return metric(t, th.reg, "abacus_sse_subscribers") == 0 })
}

// TestManySubscribersAndOneStalled: a client that never reads is dropped
// by the write timeout; a thousand that read end on every key's final
// value, and Publish is never held up.
func TestManySubscribersAndOneStalled(t *testing.T) {
	if testing.Short() {
		t.Skip("opens a thousand streams")
	}
	const subs, keys, final = 1000, 100, 1_000_000
	// The write timeout is short, yet long enough for a reader starved of
	// CPU for a moment (a thousand streams under -race on a few cores).
	th := newTestHub(t, withConfig(func(c *Config) { c.WriteTimeout = 2 * time.Second }))
	key := func(i int) string { return fmt.Sprintf("k%03d", i%keys) }

	// The stalled client follows a few big keys, so that its socket
	// buffers, however large the system makes them, fill in a few rounds.
	big := func(i int) string { return fmt.Sprintf("big/%02d/%s", i, strings.Repeat("x", 8000)) }
	const bigKeys = 64
	stalled := dialRaw(t, th.srv.Listener.Addr().String(), "/subscribe?prefix=big/")
	defer stalled.Close()

	last := make([]atomic.Int64, subs)
	conns := make([]*sseConn, subs)
	var wg sync.WaitGroup
	defer func() {
		for _, c := range conns {
			if c != nil {
				c.close()
			}
		}
		wg.Wait()
	}()
	for i := range subs {
		c := subscribeWith(t, plainClient, th.url(keyQuery(key(i))), nil)
		conns[i] = c
		wg.Add(1)
		go func() {
			defer wg.Done()
			for f := range c.frames {
				if f.Event == EventCount {
					var d countData
					if json.Unmarshal([]byte(f.Data), &d) == nil {
						last[i].Store(d.Value)
					}
				}
			}
		}()
	}
	eventually(t, "every stream to open", func() bool { return metric(t, th.reg, "abacus_sse_subscribers") == subs+1 })

	for round := int64(1); metric(t, th.reg, "abacus_sse_subscribers_dropped_total", "reason", DropWriteTimeout) == 0; round++ {
		if round > 1_000_000 {
			t.Fatal("the stalled stream was never dropped")
		}
		batch := make([]kv, 0, keys+bigKeys)
		for i := range keys {
			batch = append(batch, kv{key(i), round})
		}
		for i := range bigKeys {
			batch = append(batch, kv{big(i), round})
		}
		th.store.commit(th.Hub, batch...)
		th.settle(t)
	}
	batch := make([]kv, keys)
	for i := range batch {
		batch[i] = kv{key(i), final}
	}
	th.store.commit(th.Hub, batch...)
	deadline := time.Now().Add(waitFor)
	for {
		var behind []string
		for i := range last {
			if v := last[i].Load(); v != final {
				behind = append(behind, fmt.Sprintf("%d:%s=%d", i, key(i), v))
			}
		}
		if len(behind) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d readers never saw the final value (dropped %v, open %v): %v", len(behind),
				metric(t, th.reg, "abacus_sse_subscribers_dropped_total", "reason", DropWriteTimeout),
				metric(t, th.reg, "abacus_sse_subscribers"), behind[:min(len(behind), 20)])
		}
		time.Sleep(time.Millisecond)
	}
	if got := metric(t, th.reg, "abacus_sse_subscribers_dropped_total", "reason", DropWriteTimeout); got != 1 {
		t.Errorf("dropped for write timeout = %v, want only the stalled stream", got)
	}
	// Every reader is still open: the one stream that left is the stalled.
	if got := metric(t, th.reg, "abacus_sse_subscribers"); got != subs {
		t.Errorf("subscribers = %v, want %d", got, subs)
	}
}

// TestStreamOutlivesServerReadTimeout: an http.Server's ReadTimeout must
// not end a stream (it would cancel the request's context).
func TestStreamOutlivesServerReadTimeout(t *testing.T) {
	th := newTestHub(t, withConfig(func(c *Config) { c.HeartbeatInterval = 20 * time.Millisecond }))
	srv := httptest.NewUnstartedServer(th.Handler(th.store.source()))
	srv.Config.ReadTimeout = 100 * time.Millisecond
	srv.Start()
	t.Cleanup(srv.Close)
	c := subscribe(t, srv.URL+"?"+keyQuery("k"), nil)
	start := time.Now()
	for pings := 0; time.Since(start) < 5*srv.Config.ReadTimeout; {
		f, ok := c.next(t)
		if !ok {
			t.Fatalf("stream ended after %v, %d heartbeats", time.Since(start), pings)
		}
		if len(f.Comments) > 0 {
			pings++
		}
	}
}
