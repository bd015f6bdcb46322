package e2e

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/url"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/abacus-streams/abacus/internal/testkit"
)

// The windowed stores the windows tests run: hopping 5s/1s with a grace of
// 2s (the stock-trades example), tumbling 5s emitting finals, and sessions
// with a gap of 3s, each with its own output topic.
const (
	hoppingStore  = "trades-5s"
	tumblingStore = "trades-final"
	sessionStore  = "visits"
	windowsEnv    = hoppingStore + "=hopping,size=5s,advance=1s,grace=2s;" +
		tumblingStore + "=tumbling,size=5s,grace=1s,emit=final;" +
		sessionStore + "=session,size=3s,grace=1s"
)

// windowBase is the event time the windows tests start at: an epoch
// millisecond aligned to no window size, so alignment to the epoch shows.
const windowBase = int64(1_765_000_000_300)

// refWindow is one window of a key in the reference.
type refWindow struct {
	key        string
	start, end int64
}

// refStore is a windowed store computed the obvious way, record by record
// in each partition's order, independently of abacus: time windows are
// every [k*advance, k*advance+size) holding the timestamp; a record is
// late when stream time (the largest timestamp of its partition so far,
// its own included) has reached end+grace of every one of them. Sessions
// join every session of the key within the gap (distance below it) and
// are late when any of them, or the new session alone, is closed (end +
// gap + grace reached).
type refStore struct {
	kind                    string
	size, advance, grace    int64
	counts                  map[refWindow]int64
	retracted               map[refWindow]bool // sessions merged away
	late                    int
	streamTime              map[int32]int64
	partitionOf             map[string]int32
	lateByPartitionAndStore map[int32]int
}

func newRefStore(kind string, size, advance, grace time.Duration) *refStore {
	return &refStore{kind: kind, size: size.Milliseconds(), advance: advance.Milliseconds(), grace: grace.Milliseconds(),
		counts: map[refWindow]int64{}, retracted: map[refWindow]bool{}, streamTime: map[int32]int64{}, partitionOf: map[string]int32{}}
}

func (r *refStore) add(partition int32, key string, ts int64) {
	st, ok := r.streamTime[partition]
	if !ok || ts > st {
		st = ts
	}
	r.streamTime[partition] = st
	r.partitionOf[key] = partition
	if r.kind == "session" {
		r.addSession(key, ts, st)
		return
	}
	var open []refWindow
	for start := ts - ts%r.advance; start > ts-r.size && start >= 0; start -= r.advance {
		if st < start+r.size+r.grace {
			open = append(open, refWindow{key, start, start + r.size})
		}
	}
	if len(open) == 0 {
		r.late++
		return
	}
	for _, w := range open {
		r.counts[w]++
	}
}

func (r *refStore) addSession(key string, ts, st int64) {
	gap := r.size
	var join []refWindow
	for w := range r.counts {
		if w.key != key {
			continue
		}
		d := int64(0)
		if ts < w.start {
			d = w.start - ts
		} else if ts > w.end {
			d = ts - w.end
		}
		if d < gap {
			join = append(join, w)
		}
	}
	closed := func(w refWindow) bool { return st >= w.end+gap+r.grace }
	if len(join) == 0 && closed(refWindow{key, ts, ts}) || slices.ContainsFunc(join, closed) {
		r.late++
		return
	}
	merged, n := refWindow{key, ts, ts}, int64(1)
	for _, w := range join {
		merged.start, merged.end = min(merged.start, w.start), max(merged.end, w.end)
		n += r.counts[w]
		delete(r.counts, w)
		r.retracted[w] = true
	}
	delete(r.retracted, merged)
	r.counts[merged] = n
}

// closed reports whether w is closed at the final stream time of its
// key's partition.
func (r *refStore) closed(w refWindow) bool {
	line := w.end + r.grace
	if r.kind == "session" {
		line += r.size
	}
	return r.streamTime[r.partitionOf[w.key]] >= line
}

// windowsOf is the reference's windows of key, ascending by start.
func (r *refStore) windowsOf(key string) []windowJSON {
	var out []windowJSON
	for w, n := range r.counts {
		if w.key == key {
			out = append(out, windowJSON{Start: w.start, End: w.end, Value: n})
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Start != out[j].Start {
			return out[i].Start < out[j].Start
		}
		return out[i].End < out[j].End
	})
	return out
}

type windowJSON struct {
	Start int64 `json:"start"`
	End   int64 `json:"end"`
	Value int64 `json:"value"`
}

type keyWindows struct {
	Key       string       `json:"key"`
	Partition int32        `json:"partition"`
	ServedBy  string       `json:"served_by"`
	Windows   []windowJSON `json:"windows"`
}

// outputRecord is a windowed store's output record; Value nil is a
// retraction.
type outputRecord struct {
	Key   string `json:"key"`
	Start int64  `json:"start"`
	End   int64  `json:"end"`
	Value *int64 `json:"value"`
}

// windowedWorkload is n records over keys, their event times 20 ms apart
// from windowBase, shuffled: one in eight moved back by up to 9 s, beyond
// the grace of every store for many of them. Then one record per key far
// ahead closes the windows of every partition.
func windowedWorkload(seed uint64, n, keys int) []testkit.Record {
	rng := rand.New(rand.NewPCG(seed, seed+1))
	var recs []testkit.Record
	for i := range n {
		ts := windowBase + int64(i)*20
		if rng.IntN(8) == 0 {
			ts -= rng.Int64N(9000)
		}
		key := fmt.Sprintf("sym-%02d", rng.IntN(keys))
		recs = append(recs, testkit.Record{Key: []byte(key), Value: []byte("t"), Timestamp: time.UnixMilli(ts)})
	}
	end := windowBase + int64(n)*20 + 60_000
	for k := range keys {
		recs = append(recs, testkit.Record{Key: []byte(fmt.Sprintf("sym-%02d", k)), Value: []byte("t"), Timestamp: time.UnixMilli(end)})
	}
	return recs
}

// windowReference computes the three stores from the input topic as the
// broker holds it: each partition's records in offset order.
func windowReference(t *testing.T, brokers string) map[string]*refStore {
	t.Helper()
	msgs := testkit.Messages(t, brokers, input)
	sort.Slice(msgs, func(i, j int) bool {
		a, b := msgs[i].TopicPartition, msgs[j].TopicPartition
		if a.Partition != b.Partition {
			return a.Partition < b.Partition
		}
		return a.Offset < b.Offset
	})
	ref := map[string]*refStore{
		hoppingStore:  newRefStore("hopping", 5*time.Second, time.Second, 2*time.Second),
		tumblingStore: newRefStore("tumbling", 5*time.Second, 5*time.Second, time.Second),
		sessionStore:  newRefStore("session", 3*time.Second, 0, time.Second),
	}
	for _, m := range msgs {
		for _, r := range ref {
			r.add(m.TopicPartition.Partition, string(m.Key), m.Timestamp.UnixMilli())
		}
	}
	return ref
}

// checkWindowLookups asks each instance in turn for every key's windows in
// every store and compares them with the reference.
func checkWindowLookups(instances []*testkit.Instance, ref map[string]*refStore, keys int) error {
	i := 0
	for name, r := range ref {
		for k := range keys {
			key := fmt.Sprintf("sym-%02d", k)
			in := instances[i%len(instances)]
			i++
			var got keyWindows
			code, body, err := in.GetJSON("/api/v1/stores/"+name+"/keys/"+url.PathEscape(key)+"/windows", &got)
			if err != nil || code != 200 {
				return fmt.Errorf("%s %s at %s: %d %s %v", name, key, in.Name, code, body, err)
			}
			want := r.windowsOf(key)
			if want == nil {
				want = []windowJSON{}
			}
			if got.Key != key || !slices.Equal(got.Windows, want) {
				return fmt.Errorf("%s %s at %s: windows %v; want %v", name, key, in.Name, got.Windows, want)
			}
		}
	}
	return nil
}

// checkWindowOutputs checks each store's output topic against the
// reference: the last record of every window of an updates store is the
// window's count (a retraction for a merged-away session that had a
// record), and a final
// store has exactly one record per closed window, with its count, and
// none for a window still open.
func checkWindowOutputs(t *testing.T, brokers string, ref map[string]*refStore) {
	t.Helper()
	for name, r := range ref {
		last := map[refWindow]outputRecord{}
		records := map[refWindow]int{}
		for _, m := range testkit.Messages(t, brokers, name+"-topic") {
			var rec outputRecord
			if err := json.Unmarshal(m.Value, &rec); err != nil {
				t.Fatalf("%s: output record %q: %v", name, m.Value, err)
			}
			if string(m.Key) != rec.Key || m.Timestamp.UnixMilli() != rec.End {
				t.Errorf("%s: output record keyed %q at %d holds %+v; want the key and the window end", name, m.Key, m.Timestamp.UnixMilli(), rec)
			}
			w := refWindow{rec.Key, rec.Start, rec.End}
			last[w] = rec
			records[w]++
		}
		final := name == tumblingStore
		bad := 0
		for w, n := range r.counts {
			rec, ok := last[w]
			switch {
			case final && !r.closed(w):
				if ok {
					bad++
					t.Errorf("%s: window %v still open has a final record %+v", name, w, rec)
				}
			case !ok || rec.Value == nil || *rec.Value != n:
				bad++
				if bad <= 5 {
					t.Errorf("%s: window %v: last output record %+v (found %v); want value %d", name, w, rec, ok, n)
				}
			case final && records[w] != 1:
				bad++
				t.Errorf("%s: window %v has %d final records; want exactly 1", name, w, records[w])
			}
		}
		// A session that grew or merged within one commit never had a
		// record of its own, and needs no retraction; one that had must
		// end with one.
		for w := range r.retracted {
			if rec, ok := last[w]; ok && rec.Value != nil {
				bad++
				t.Errorf("%s: merged-away session %v: last output record %+v; want a retraction (value null)", name, w, rec)
			}
		}
		for w := range last {
			if _, ok := r.counts[w]; !ok && !r.retracted[w] {
				bad++
				t.Errorf("%s: output record for a window the reference does not have: %v", name, w)
			}
		}
		t.Logf("%s: %d windows, %d retracted, %d late, output records %d", name, len(r.counts), len(r.retracted), r.late, len(records))
	}
}

// Several thousand records with explicit timestamps, out of order within
// and beyond the grace, through one instance with a hopping, a tumbling
// (emit final) and a session store: every window of every key equals the
// reference computed from the input, late records are not counted and are
// counted in abacus_records_late_total, and the output topics agree.
func TestWindowedStoresMatchAReference(t *testing.T) {
	for _, guarantee := range []string{"at_least_once", "exactly_once_v2"} {
		t.Run(guarantee, func(t *testing.T) {
			b := testkit.StartBroker(t, 4)
			const keys = 24
			recs := windowedWorkload(11, 4000, keys)
			in := testkit.StartInstance(t, testkit.InstanceConfig{Name: "abacus-0", Brokers: b.Addr(), Env: steady(map[string]string{
				"ABACUS_WINDOWS": windowsEnv, "ABACUS_PROCESSING_GUARANTEE": guarantee,
			})})
			in.WaitReady(time.Minute)
			testkit.Produce(t, b.Addr(), input, "murmur2_random", recs)
			ref := windowReference(t, b.Addr())
			testkit.Eventually(t, 2*time.Minute, func() error { return checkWindowLookups([]*testkit.Instance{in}, ref, keys) })
			for name, r := range ref {
				if r.late == 0 {
					t.Errorf("%s: the workload made no late record", name)
				}
				if got := testkit.MustMetric(t, in, "abacus_records_late_total", `store="`+name+`"`); got != float64(r.late) {
					t.Errorf("%s: abacus_records_late_total %v; want %d", name, got, r.late)
				}
			}
			if n := len(ref[sessionStore].retracted); n == 0 {
				t.Error("the workload merged no session")
			}
			checkWindowOutputs(t, b.Addr(), ref)
			dl := 0
			for _, m := range testkit.Messages(t, b.Addr(), dlq) {
				for _, h := range m.Headers {
					if h.Key == "abacus.error.reason" && string(h.Value) == "late" {
						dl++
					}
				}
			}
			var late int
			for _, r := range ref {
				late += r.late
			}
			if dl != late {
				t.Errorf("%d late records in the DLQ; want %d (one per store each is late for)", dl, late)
			}
		})
	}
}

// windowsOfKey asks in for key's windows in store.
func windowsOfKey(in *testkit.Instance, store, key, query string) (keyWindows, error) {
	var got keyWindows
	code, body, err := in.GetJSON("/api/v1/stores/"+store+"/keys/"+url.PathEscape(key)+"/windows"+query, &got)
	if err != nil || code != 200 {
		return got, fmt.Errorf("windows of %s in %s: %d %s %v", key, store, code, body, err)
	}
	return got, nil
}

// A record that bridges two sessions of a key leaves one merged session
// holding all three records, and the output retracts the two it merged
// (a record with value null for each) before the merged one's count.
func TestSessionMergeRetractsTheMergedSessions(t *testing.T) {
	b := testkit.StartBroker(t, 2)
	in := testkit.StartInstance(t, testkit.InstanceConfig{Name: "abacus-0", Brokers: b.Addr(), Env: steady(map[string]string{
		"ABACUS_WINDOWS": "visits=session,size=3s,grace=5s", "ABACUS_COMMIT_INTERVAL": "100ms",
	})})
	in.WaitReady(time.Minute)
	at := func(key string, ms int64) testkit.Record {
		return testkit.Record{Key: []byte(key), Value: []byte("v"), Timestamp: time.UnixMilli(windowBase + ms)}
	}
	testkit.Produce(t, b.Addr(), input, "murmur2_random", []testkit.Record{at("alice", 0), at("alice", 5000), at("bob", 1000)})
	two := []windowJSON{{windowBase, windowBase, 1}, {windowBase + 5000, windowBase + 5000, 1}}
	testkit.Eventually(t, time.Minute, func() error {
		got, err := windowsOfKey(in, "visits", "alice", "")
		if err == nil && !slices.Equal(got.Windows, two) {
			err = fmt.Errorf("alice's sessions %v; want %v", got.Windows, two)
		}
		return err
	})
	// 2.5 s from both: within the gap of each, it bridges them (the first
	// closes only at 0 + 3 s + 5 s, stream time being 5 s).
	testkit.Produce(t, b.Addr(), input, "murmur2_random", []testkit.Record{at("alice", 2500)})
	merged := []windowJSON{{windowBase, windowBase + 5000, 3}}
	testkit.Eventually(t, time.Minute, func() error {
		got, err := windowsOfKey(in, "visits", "alice", "")
		if err == nil && !slices.Equal(got.Windows, merged) {
			err = fmt.Errorf("alice's sessions %v; want %v", got.Windows, merged)
		}
		return err
	})
	var alice []string
	for _, m := range testkit.Messages(t, b.Addr(), "visits-topic") {
		if string(m.Key) == "alice" {
			alice = append(alice, string(m.Value))
		}
	}
	s := func(start, end int64, v string) string {
		return fmt.Sprintf(`{"key":"alice","start":%d,"end":%d,"value":%s}`, windowBase+start, windowBase+end, v)
	}
	// The first two sessions' records come in either order (one commit).
	want := []string{s(0, 0, "1"), s(5000, 5000, "1"), s(0, 0, "null"), s(5000, 5000, "null"), s(0, 5000, "3")}
	if len(alice) == 5 && alice[0] > alice[1] {
		alice[0], alice[1] = alice[1], alice[0]
	}
	if len(alice) == 5 && alice[2] > alice[3] {
		alice[2], alice[3] = alice[3], alice[2]
	}
	slices.Sort(want[:2])
	slices.Sort(want[2:4])
	if !slices.Equal(alice, want) {
		t.Errorf("alice's output records:\n%s\nwant:\n%s", strings.Join(alice, "\n"), strings.Join(want, "\n"))
	}
}

// Windows past the store's retention are not answered and are deleted
// from the store (abacus_windows_expired_total), while newer ones stay.
func TestWindowsPastTheirRetentionAreGone(t *testing.T) {
	b := testkit.StartBroker(t, 1)
	in := testkit.StartInstance(t, testkit.InstanceConfig{Name: "abacus-0", Brokers: b.Addr(), Env: steady(map[string]string{
		"ABACUS_WINDOWS": "minute=tumbling,size=1s,retention=10s", "ABACUS_COMMIT_INTERVAL": "100ms", "ABACUS_PARTITIONS": "1",
	})})
	in.WaitReady(time.Minute)
	base := windowBase - windowBase%1000
	var recs []testkit.Record
	for s := range int64(5) {
		recs = append(recs, testkit.Record{Key: []byte("k"), Value: []byte("v"), Timestamp: time.UnixMilli(base + s*1000)})
	}
	testkit.Produce(t, b.Addr(), input, "murmur2_random", recs)
	testkit.Eventually(t, time.Minute, func() error {
		got, err := windowsOfKey(in, "minute", "k", "")
		if err == nil && len(got.Windows) != 5 {
			err = fmt.Errorf("%d windows; want 5", len(got.Windows))
		}
		return err
	})
	// Stream time 12.5 s: the windows ending at or before 2.5 s are
	// expired, [0,1s) and [1s,2s); [2s,3s) on stays.
	testkit.Produce(t, b.Addr(), input, "murmur2_random", []testkit.Record{{Key: []byte("k2"), Value: []byte("v"), Timestamp: time.UnixMilli(base + 12_500)}})
	want := []windowJSON{{base + 2000, base + 3000, 1}, {base + 3000, base + 4000, 1}, {base + 4000, base + 5000, 1}}
	testkit.Eventually(t, time.Minute, func() error {
		got, err := windowsOfKey(in, "minute", "k", "")
		if err == nil && !slices.Equal(got.Windows, want) {
			err = fmt.Errorf("windows %v; want %v", got.Windows, want)
		}
		if err == nil {
			if n := testkit.MustMetric(t, in, "abacus_windows_expired_total", `store="minute"`); n != 2 {
				err = fmt.Errorf("abacus_windows_expired_total %v; want 2", n)
			}
		}
		return err
	})
	// From an explicit range reaching back past the retention too.
	got, err := windowsOfKey(in, "minute", "k", fmt.Sprintf("?from=%d&to=%d", base, base+100_000))
	if err != nil || !slices.Equal(got.Windows, want) {
		t.Errorf("windows in range: %v (%v); want %v", got.Windows, err, want)
	}
}

// storeChangelogRecords counts the records of the count store's changelog and
// of every windowed store's, read committed.
func storeChangelogRecords(t *testing.T, brokers string, stores ...string) int {
	t.Helper()
	n := len(testkit.Messages(t, brokers, changelog))
	for _, s := range stores {
		n += len(testkit.Messages(t, brokers, "counts-app-"+s+"-changelog"))
	}
	return n
}

// A restart on the same disk restores nothing it has (the checkpoints of
// every store are at their changelogs' ends after a graceful stop); a
// restart on an empty disk restores every changelog record of every
// store; both answer every window exactly.
func TestWindowsRestoreOnAnEmptyDisk(t *testing.T) {
	b := testkit.StartBroker(t, 4)
	const keys = 12
	env := steady(map[string]string{"ABACUS_WINDOWS": windowsEnv, "ABACUS_PROCESSING_GUARANTEE": "exactly_once_v2"})
	in := testkit.StartInstance(t, testkit.InstanceConfig{Name: "abacus-0", Brokers: b.Addr(), Env: env})
	in.WaitReady(time.Minute)
	testkit.Produce(t, b.Addr(), input, "murmur2_random", windowedWorkload(5, 2000, keys))
	ref := windowReference(t, b.Addr())
	instances := []*testkit.Instance{in}
	testkit.Eventually(t, 2*time.Minute, func() error { return checkWindowLookups(instances, ref, keys) })

	in.Stop(30 * time.Second)
	in.Restart()
	in.WaitReady(time.Minute)
	if err := checkWindowLookups(instances, ref, keys); err != nil {
		t.Errorf("after a restart on the same disk: %v", err)
	}
	if n := testkit.MustMetric(t, in, "abacus_restored_records_total", `source="changelog"`); n != 0 {
		t.Errorf("a restart on the same disk restored %v changelog records; want 0", n)
	}

	in.Stop(30 * time.Second)
	in.RestartWith(t.TempDir())
	in.WaitReady(time.Minute)
	if err := checkWindowLookups(instances, ref, keys); err != nil {
		t.Errorf("after a restart on an empty disk: %v", err)
	}
	want := storeChangelogRecords(t, b.Addr(), hoppingStore, tumblingStore, sessionStore)
	if n := testkit.MustMetric(t, in, "abacus_restored_records_total", `source="changelog"`); n != float64(want) {
		t.Errorf("a restart on an empty disk restored %v changelog records; want all %d", n, want)
	}
	// The restored stream time closes windows where the first life did:
	// nothing late is counted, and the finals already written stay the
	// only ones.
	checkWindowOutputs(t, b.Addr(), ref)
}

// kill -9 under exactly_once_v2 while timestamped input flows, then a
// restart: every window of every store is exact, and every final is
// written exactly once.
func TestWindowsExactAfterAKillExactlyOnce(t *testing.T) {
	b := testkit.StartBroker(t, 4)
	const keys = 16
	env := map[string]string{"ABACUS_WINDOWS": windowsEnv, "ABACUS_PROCESSING_GUARANTEE": "exactly_once_v2", "ABACUS_COMMIT_INTERVAL": "200ms"}
	in := testkit.StartInstance(t, testkit.InstanceConfig{Name: "abacus-0", Brokers: b.Addr(), Env: env})
	in.WaitReady(time.Minute)
	recs := windowedWorkload(21, 6000, keys)
	// The input goes in ten slices; the member is killed after the
	// fourth and restarted after the sixth.
	for i := range 10 {
		testkit.Produce(t, b.Addr(), input, "murmur2_random", recs[i*len(recs)/10:(i+1)*len(recs)/10])
		switch i {
		case 3:
			testkit.Eventually(t, time.Minute, func() error { return atLeastMetric(in, "abacus_records_processed_total", 1000) })
			in.Kill()
		case 5:
			in.Restart()
		}
	}
	in.WaitReady(2 * time.Minute)
	ref := windowReference(t, b.Addr())
	testkit.Eventually(t, 2*time.Minute, func() error { return checkWindowLookups([]*testkit.Instance{in}, ref, keys) })
	checkWindowOutputs(t, b.Addr(), ref)
}

// windowPage is a page of the windows scan.
type windowPage struct {
	Items []struct {
		Key   string `json:"key"`
		Start int64  `json:"start"`
		End   int64  `json:"end"`
		Value int64  `json:"value"`
	} `json:"items"`
	NextCursor string `json:"next_cursor"`
}

// Three members: window lookups asked of any member are exact, and the
// windows scan walks pages across the members with no window repeated
// and none missing.
func TestWindowsAcrossThreeMembers(t *testing.T) {
	b := testkit.StartBroker(t, 6)
	const keys = 20
	pods := testkit.StartMembers(t, b.Addr(), 3, steady(map[string]string{"ABACUS_WINDOWS": windowsEnv}))
	testkit.Produce(t, b.Addr(), input, "murmur2_random", windowedWorkload(31, 3000, keys))
	ref := windowReference(t, b.Addr())
	testkit.Eventually(t, 2*time.Minute, func() error {
		for i := range pods {
			// Each member asked for every key in turn.
			if err := checkWindowLookups(append(pods[i:], pods[:i]...), ref, keys); err != nil {
				return err
			}
		}
		return nil
	})
	for _, store := range []string{hoppingStore, sessionStore} {
		var want []string
		for k := range keys {
			key := fmt.Sprintf("sym-%02d", k)
			for _, w := range ref[store].windowsOf(key) {
				want = append(want, fmt.Sprintf("%s %d %d %d", key, w.Start, w.End, w.Value))
			}
		}
		sort.Strings(want)
		for _, limit := range []int{7, 100} {
			var got []string
			u := pods[1].URL + "/api/v1/stores/" + store + "/windows?limit=" + itoa(limit)
			for page := 0; ; page++ {
				resp, body := testkit.MustFetch(t, u, nil)
				var p windowPage
				if resp.StatusCode != 200 || json.Unmarshal(body, &p) != nil {
					t.Fatalf("%s page %d: %d %s", store, page, resp.StatusCode, body)
				}
				if len(p.Items) > limit {
					t.Fatalf("%s page %d: %d items; limit %d", store, page, len(p.Items), limit)
				}
				for _, it := range p.Items {
					got = append(got, fmt.Sprintf("%s %d %d %d", it.Key, it.Start, it.End, it.Value))
				}
				if p.NextCursor == "" {
					break
				}
				if page > len(want) {
					t.Fatalf("%s: more pages than windows", store)
				}
				u = pods[1].URL + "/api/v1/stores/" + store + "/windows?limit=" + itoa(limit) + "&cursor=" + url.QueryEscape(p.NextCursor)
			}
			// Keys are fixed-width, so the text order is the scan's order.
			if !slices.Equal(got, want) {
				t.Errorf("%s scan with limit %d: %d windows, want %d; first difference at %d", store, limit, len(got), len(want), firstDiff(got, want))
			}
		}
	}
}

func firstDiff(a, b []string) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}
