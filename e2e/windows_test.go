package e2e

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/url"
	"slices"
	"sort"
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
// from windowBase, shuffled: one in eight moved back by up to 6 s, beyond
// the grace of every store for many of them. Then one record per key far
// ahead closes the windows of every partition.
func windowedWorkload(seed uint64, n, keys int) []testkit.Record {
	rng := rand.New(rand.NewPCG(seed, seed+1))
	var recs []testkit.Record
	for i := range n {
		ts := windowBase + int64(i)*20
		if rng.IntN(8) == 0 {
			ts -= rng.Int64N(6000)
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
// window's count (a retraction for a merged-away session), and a final
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
		for w := range r.retracted {
			if rec, ok := last[w]; !ok || rec.Value != nil {
				bad++
				t.Errorf("%s: merged-away session %v: last output record %+v (found %v); want a retraction (value null)", name, w, rec, ok)
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
