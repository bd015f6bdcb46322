package e2e

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/abacus-streams/abacus/internal/subscribe"
	"github.com/abacus-streams/abacus/internal/testkit"
)

// Live subscriptions to windowed stores: a key's windows streamed over
// SSE, their retractions included, from one member and through a member
// that follows the key's partition while its owner restarts.

// sseWindowsEnv is a session store with a gap of 3 s and a hopping store
// of 5 s windows every second.
const sseWindowsEnv = sessionStore + "=session,size=3s,grace=5s;" + hoppingStore + "=hopping,size=5s,advance=1s,grace=2s"

// sseWindowEvent is a windowed store's event: a window's count, or its
// retraction (Value nil).
type sseWindowEvent struct {
	ID         string
	Key        string `json:"key"`
	Start, End int64
	Value      *int64 `json:"value"`
}

func (e sseWindowEvent) String() string {
	v := "null"
	if e.Value != nil {
		v = fmt.Sprint(*e.Value)
	}
	return fmt.Sprintf("%s[%d,%d]=%s", e.Key, e.Start-windowBase, e.End-windowBase, v)
}

// windowEvents returns the window events of a stream so far, and fails
// the test on one that is not laid out as a window.
func (s *sseStream) windowEvents(t *testing.T) []sseWindowEvent {
	t.Helper()
	blocks, _, _ := s.snapshot()
	var out []sseWindowEvent
	for _, b := range blocks {
		if b.Event != subscribe.EventCount {
			continue
		}
		var e sseWindowEvent
		if err := json.Unmarshal([]byte(b.Data), &e); err != nil || !strings.Contains(b.Data, `"start":`) || !strings.Contains(b.Data, `"value":`) {
			t.Fatalf("%s: window event with data %q (%v)", s.url, b.Data, err)
		}
		e.ID = b.ID
		out = append(out, e)
	}
	return out
}

// heldWindows is what a client that keeps the latest value of each
// window, and drops a window on its retraction, holds after events:
// ascending by start, then end, as a lookup answers.
func heldWindows(events []sseWindowEvent) []windowJSON {
	held := map[[2]int64]int64{}
	for _, e := range events {
		if e.Value == nil {
			delete(held, [2]int64{e.Start, e.End})
		} else {
			held[[2]int64{e.Start, e.End}] = *e.Value
		}
	}
	out := []windowJSON{}
	for w, v := range held {
		out = append(out, windowJSON{Start: w[0], End: w[1], Value: v})
	}
	slices.SortFunc(out, func(a, b windowJSON) int {
		if a.Start != b.Start {
			return int(a.Start - b.Start)
		}
		return int(a.End - b.End)
	})
	return out
}

// waitHeldIsLookup waits until the windows a stream's client holds are
// the key's windows as in asks them, and returns them; a stream that ends
// first fails the test.
func waitHeldIsLookup(t *testing.T, within time.Duration, s *sseStream, in *testkit.Instance, store, key string, want func([]windowJSON) error) []windowJSON {
	t.Helper()
	var held []windowJSON
	testkit.Eventually(t, within, func() error {
		if _, done, err := s.snapshot(); done {
			t.Fatalf("%s ended: %v", s.url, err)
		}
		got, err := windowsOfKey(in, store, key, "")
		if err != nil {
			return err
		}
		if want != nil {
			if err := want(got.Windows); err != nil {
				return err
			}
		}
		held = heldWindows(s.windowEvents(t))
		if !slices.Equal(held, got.Windows) {
			return fmt.Errorf("%s: the client holds %v; the lookup answers %v", s.url, held, got.Windows)
		}
		return nil
	})
	return held
}

// checkWindowStream checks a windowed stream's framing: one retry field
// (one connection), window events of key alone, each with the id
// "<partition>-<offset>" of the key's partition, offsets never going back.
func checkWindowStream(t *testing.T, s *sseStream, key string, partition int32) {
	t.Helper()
	blocks, _, _ := s.snapshot()
	retries := 0
	for _, b := range blocks {
		if b.Retry != "" {
			retries++
		}
		if b.Event != "" && b.Event != subscribe.EventCount {
			t.Errorf("%s: event %q; want only count events", s.url, b.Event)
		}
	}
	if retries != 1 || blocks[0].Retry == "" {
		t.Errorf("%s: %d retry fields, the first block %+v; want one, first", s.url, retries, blocks[0])
	}
	last := int64(-1)
	for _, e := range s.windowEvents(t) {
		p, o, ok := subscribe.ParseEventID(e.ID)
		switch {
		case e.Key != key:
			t.Errorf("%s: an event of key %q", s.url, e.Key)
		case !ok || p != partition:
			t.Errorf("%s: event %v has id %q; want %d-<offset>", s.url, e, e.ID, partition)
		case o < last:
			t.Errorf("%s: event %v has id %q after offset %d", s.url, e, e.ID, last)
		default:
			last = o
		}
	}
}

// at is a record of key at ms past windowBase.
func at(key string, ms int64) testkit.Record {
	return testkit.Record{Key: []byte(key), Value: []byte("v"), Timestamp: time.UnixMilli(windowBase + ms)}
}

// A key's subscription to a session store and to a hopping store on one
// member, and a prefix's to the session store: the client, keeping the
// latest value of each window and dropping retracted ones, holds exactly
// the key's windows as a lookup answers them, before and after a record
// that bridges two sessions; the bridge comes as the two merged sessions'
// retractions, then the session they merged into.
func TestWindowSubscriptionStreamsAKeysWindows(t *testing.T) {
	b := testkit.StartBroker(t, 2)
	in := testkit.StartInstance(t, testkit.InstanceConfig{Name: "abacus-0", Brokers: b.Addr(), Env: steady(map[string]string{
		"ABACUS_WINDOWS": sseWindowsEnv, "ABACUS_COMMIT_INTERVAL": "100ms",
	})})
	in.WaitReady(time.Minute)
	const key = "alice"
	_, partition := sseOwnerOf(t, in, key)
	sessions := sseMustSubscribe(t, in.SubscribeURL(sessionStore, key, false), nil)
	hopping := sseMustSubscribe(t, in.SubscribeURL(hoppingStore, key, false), nil)
	prefixed := sseMustSubscribe(t, in.SubscribeURL(sessionStore, "al", true), nil) // alice's alone

	testkit.Produce(t, b.Addr(), input, "murmur2_random", []testkit.Record{at(key, 0), at(key, 5000), at("bob", 1000)})
	two := []windowJSON{{windowBase, windowBase, 1}, {windowBase + 5000, windowBase + 5000, 1}}
	waitHeldIsLookup(t, time.Minute, sessions, in, sessionStore, key, func(ws []windowJSON) error {
		if !slices.Equal(ws, two) {
			return fmt.Errorf("%s's sessions %v; want %v", key, ws, two)
		}
		return nil
	})
	before := len(sessions.windowEvents(t))

	// 2.5 s from both: it bridges them.
	testkit.Produce(t, b.Addr(), input, "murmur2_random", []testkit.Record{at(key, 2500)})
	merged := []windowJSON{{windowBase, windowBase + 5000, 3}}
	waitHeldIsLookup(t, time.Minute, sessions, in, sessionStore, key, func(ws []windowJSON) error {
		if !slices.Equal(ws, merged) {
			return fmt.Errorf("%s's sessions %v; want %v", key, ws, merged)
		}
		return nil
	})
	var bridge []string
	for _, e := range sessions.windowEvents(t)[before:] {
		bridge = append(bridge, e.String())
	}
	// The two retractions come in either order (one commit), before the
	// session they merged into.
	if len(bridge) == 3 && bridge[0] > bridge[1] {
		bridge[0], bridge[1] = bridge[1], bridge[0]
	}
	if want := []string{"alice[0,0]=null", "alice[5000,5000]=null", "alice[0,5000]=3"}; !slices.Equal(bridge, want) {
		t.Errorf("the bridging record's events %q; want %q", bridge, want)
	}
	held := waitHeldIsLookup(t, time.Minute, hopping, in, hoppingStore, key, func(ws []windowJSON) error {
		// Five windows each, starting 4.3 s before the first record to
		// 4.7 s after it; the record at 2.5 s, after stream time 5 s,
		// misses the one of them that closed.
		sum := int64(0)
		for _, w := range ws {
			sum += w.Value
		}
		if len(ws) != 10 || sum != 14 {
			return fmt.Errorf("hopping windows %v; want 10 holding 14 counts", ws)
		}
		return nil
	})
	waitHeldIsLookup(t, time.Minute, prefixed, in, sessionStore, key, nil)
	checkWindowStream(t, sessions, key, partition)
	checkWindowStream(t, hopping, key, partition)
	checkWindowStream(t, prefixed, key, partition)
	// Every event's data, the retractions' too, is openapi.yaml's WindowEvent.
	schema := loadOpenAPI(t).doc.Components.Schemas["WindowEvent"].Value
	for _, s := range []*sseStream{sessions, hopping} {
		blocks, _, _ := s.snapshot()
		for _, b := range blocks {
			var data any
			if b.Event == subscribe.EventCount && (json.Unmarshal([]byte(b.Data), &data) != nil || schema.VisitJSON(data) != nil) {
				t.Errorf("%s: event data %s does not match WindowEvent: %v", s.url, b.Data, schema.VisitJSON(data))
			}
		}
	}
	t.Logf("sessions: %d events; hopping: %d events for %d windows", len(sessions.windowEvents(t)), len(hopping.windowEvents(t)), len(held))
}

// A key's subscription to a session store and to a hopping store through
// a member that does not own the key, while the key's owner stops and
// starts again (SIGTERM, same disk) and records that grow and merge the
// key's sessions go on: each subscription is one stream that never ends,
// and its client ends up holding exactly the key's windows as a lookup
// answers them; the merges reached it as retractions.
func TestWindowSubscriptionFollowsItsKeyThroughARestart(t *testing.T) {
	b := testkit.StartBroker(t, 6)
	pods := testkit.StartMembers(t, b.Addr(), 3, map[string]string{
		"ABACUS_PARTITIONS":                  "6",
		"ABACUS_KAFKA_SESSION_TIMEOUT_MS":    "12000",
		"ABACUS_KAFKA_HEARTBEAT_INTERVAL_MS": "2000",
		"ABACUS_WINDOWS":                     sseWindowsEnv,
	})
	const key = "alice"
	owner, others, partition := sseOwner(t, pods, key)
	entry := others[0]
	t.Logf("%q is owned by %s; the subscriber asks %s", key, owner.Name, entry.Name)
	sessions := sseMustSubscribe(t, entry.SubscribeURL(sessionStore, key, false), nil)
	hopping := sseMustSubscribe(t, entry.SubscribeURL(hoppingStore, key, false), nil)

	// Group g is 10 s past group g-1: two sessions of the key 5 s apart
	// (opened), then a record between them that merges them (bridged);
	// and other keys.
	open := func(g int64) {
		testkit.Produce(t, b.Addr(), input, "murmur2_random", []testkit.Record{at(key, g*10_000), at("bob", g*10_000), at(key, g*10_000+5000)})
	}
	bridge := func(g int64) {
		testkit.Produce(t, b.Addr(), input, "murmur2_random", []testkit.Record{at("carol", g*10_000+1000), at(key, g*10_000+2500)})
	}
	const groups = 8
	sessionsAre := func(n int) func([]windowJSON) error {
		return func(ws []windowJSON) error {
			if len(ws) != n {
				return fmt.Errorf("%d sessions; want %d", len(ws), n)
			}
			return nil
		}
	}
	for g := range int64(3) {
		open(g)
		bridge(g)
	}
	// The client holds two sessions of group 3 when the owner stops; they
	// merge while no member owns the key's partition, and the next owner's
	// snapshot has the merged one only: the member the client asked sends
	// the two retractions itself.
	open(3)
	waitHeldIsLookup(t, time.Minute, sessions, entry, sessionStore, key, sessionsAre(5))
	owner.Stop(time.Minute)
	bridge(3)
	open(4)
	owner.Restart()
	bridge(4)
	owner.WaitReady(2 * time.Minute)
	for g := int64(5); g < groups; g++ {
		open(g)
		bridge(g)
	}
	final := func(ws []windowJSON) error {
		if len(ws) != groups || slices.ContainsFunc(ws, func(w windowJSON) bool { return w.Value != 3 }) {
			return fmt.Errorf("sessions %v; want %d of 3 records each", ws, groups)
		}
		return nil
	}
	sessionsHeld := waitHeldIsLookup(t, 2*time.Minute, sessions, entry, sessionStore, key, final)
	hoppingHeld := waitHeldIsLookup(t, 2*time.Minute, hopping, entry, hoppingStore, key, nil)
	// Another member's answer is the same.
	waitHeldIsLookup(t, time.Minute, hopping, others[1], hoppingStore, key, nil)
	checkWindowStream(t, sessions, key, partition)
	checkWindowStream(t, hopping, key, partition)
	retractions := 0
	for _, e := range sessions.windowEvents(t) {
		if e.Value == nil {
			retractions++
		}
	}
	if retractions == 0 {
		t.Error("no retraction reached the session store's subscriber")
	}
	now, _ := sseOwnerOf(t, entry, key)
	t.Logf("%d sessions (%d retractions), %d hopping windows held; %q owned by %s after the restart",
		len(sessionsHeld), retractions, len(hoppingHeld), key, now)
}
