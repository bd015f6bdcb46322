package window

import (
	"fmt"
	"maps"
	"math/bits"
	"math/rand/v2"
	"reflect"
	"sort"
	"testing"
	"time"
)

// The reference tests feed a few thousand records, out of order, through
// a task built only from this package's API (the "machine") and compare
// what it counts, publishes and deletes with a reference computed from
// the record list by other means.

// record is one input record, in arrival order.
type record struct {
	key string
	ts  int64
}

// keyed names one window of one key.
type keyed struct {
	key string
	w   Window
}

// emitted is a final value and the arrival after which it was published.
type emitted struct {
	value int64
	at    int
}

// shape says how a stream of records is out of order.
type shape struct {
	n     int
	step  int64 // event time moves forward by up to step a record
	jump  int64 // event time sometimes jumps ahead by up to jump
	near  int64 // 25% of records are up to near behind
	far   int64 // 15% are up to far behind
	keys  int   // keys, each half as frequent as the one before
	start int64 // event time of the first record
}

// arrivals generates records in arrival order: event time moves forward
// by up to a step a record, jumps ahead once in 50 records, a share of
// records carry a timestamp behind it, and a third are rounded down to a
// multiple of 500ms, to fall on window boundaries.
func arrivals(r *rand.Rand, s shape) []record {
	recs := make([]record, s.n)
	now := s.start
	for i := range recs {
		now += r.Int64N(s.step)
		if r.IntN(50) == 0 {
			now += r.Int64N(s.jump)
		}
		var delay int64
		switch p := r.IntN(100); {
		case p < 25:
			delay = r.Int64N(s.near)
		case p < 40:
			delay = r.Int64N(s.far)
		}
		ts := max(0, now-delay)
		if r.IntN(3) == 0 {
			ts -= ts % 500 // on window boundaries often
		}
		k := bits.TrailingZeros(uint(r.IntN(1<<s.keys)) | 1<<(s.keys-1))
		recs[i] = record{key: fmt.Sprintf("k%d", k), ts: ts}
	}
	return recs
}

// prefixMax is the stream time after each arrival, by its definition:
// the largest timestamp seen so far.
func prefixMax(recs []record) []int64 {
	st := make([]int64, len(recs))
	m := int64(-1)
	for i, r := range recs {
		m = max(m, r.ts)
		st[i] = m
	}
	return st
}

// timeMachine is one task of a tumbling or hopping store.
type timeMachine struct {
	t          *testing.T
	spec       Spec
	streamTime int64
	store      map[keyed]int64   // the windows kept, with their counts
	updates    map[keyed]int64   // emit updates: the last value published
	finals     map[keyed]emitted // emit final
	expired    map[keyed]int     // the arrival after which a window was deleted
}

func newTimeMachine(t *testing.T, spec Spec) *timeMachine {
	return &timeMachine{t: t, spec: spec, streamTime: -1, store: map[keyed]int64{},
		updates: map[keyed]int64{}, finals: map[keyed]emitted{}, expired: map[keyed]int{}}
}

func (m *timeMachine) process(i int, r record) (open []Window, late bool) {
	m.t.Helper()
	m.streamTime = max(m.streamTime, r.ts)
	open, late, err := m.spec.Assign(r.ts, m.streamTime)
	if err != nil {
		m.t.Fatal(err)
	}
	for _, w := range open {
		k := keyed{r.key, w}
		if _, ok := m.expired[k]; ok {
			m.t.Fatalf("arrival %d %+v: counted into expired window %v", i, r, w)
		}
		if _, ok := m.finals[k]; ok {
			m.t.Fatalf("arrival %d %+v: counted into window %v after its final value", i, r, w)
		}
		m.store[k]++
		m.updates[k] = m.store[k]
	}
	// Finals first: at the shortest retention a window may close and
	// expire at the same stream time.
	for k, v := range m.store {
		if _, done := m.finals[k]; !done && m.spec.ClosedBy(k.w, m.streamTime) {
			m.finals[k] = emitted{v, i}
		}
	}
	for k := range m.store {
		if m.spec.Expired(k.w, m.streamTime) {
			if _, done := m.finals[k]; !done {
				m.t.Fatalf("arrival %d: window %v expired before it closed", i, k.w)
			}
			delete(m.store, k)
			m.expired[k] = i
		}
	}
	return open, late
}

// timeReference computes what a time-window store must do with recs,
// window by window from bruteWindows and the stream times.
type timeReference struct {
	open    [][]Window        // per arrival, the windows it is counted in
	counts  map[keyed]int64   // every window's count
	finals  map[keyed]emitted // when each window closes, if it does
	expired map[keyed]int     // when each window expires, if it does
	live    map[keyed]int64   // the windows not expired at the end
	// coverage
	late, partial int
}

func newTimeReference(recs []record, size, advance, grace, retention int64) *timeReference {
	st := prefixMax(recs)
	ref := &timeReference{open: make([][]Window, len(recs)), counts: map[keyed]int64{}, finals: map[keyed]emitted{}, expired: map[keyed]int{}, live: map[keyed]int64{}}
	for i, r := range recs {
		all := bruteWindows(r.ts, size, advance)
		for _, w := range all {
			if st[i] < w.End+grace { // still open
				ref.open[i] = append(ref.open[i], w)
				ref.counts[keyed{r.key, w}]++
			}
		}
		switch {
		case len(ref.open[i]) == 0:
			ref.late++
		case len(ref.open[i]) < len(all):
			ref.partial++
		}
	}
	for k, c := range ref.counts {
		if j := sort.Search(len(st), func(j int) bool { return st[j] >= k.w.End+grace }); j < len(st) {
			ref.finals[k] = emitted{c, j}
		}
		if j := sort.Search(len(st), func(j int) bool { return st[j] >= k.w.End+retention }); j < len(st) {
			ref.expired[k] = j
		} else {
			ref.live[k] = c
		}
	}
	return ref
}

func TestReferenceTimeWindows(t *testing.T) {
	for _, spec := range []Spec{
		{Store: "tumbling-5s", Kind: Tumbling, Size: 5 * time.Second, Grace: time.Second, Retention: 6 * time.Second},
		{Store: "tumbling-5s-no-grace", Kind: Tumbling, Size: 5 * time.Second},
		{Store: "hopping-5s-1s", Kind: Hopping, Size: 5 * time.Second, Advance: time.Second, Grace: 2 * time.Second, Retention: 7 * time.Second},
		{Store: "hopping-5s-2s", Kind: Hopping, Size: 5 * time.Second, Advance: 2 * time.Second, Grace: 2 * time.Second, Retention: 30 * time.Second},
	} {
		spec = spec.WithDefaults()
		if err := Validate([]Spec{spec}, ""); err != nil {
			t.Fatal(err)
		}
		for seed := range uint64(3) {
			t.Run(fmt.Sprintf("%s/seed=%d", spec.Store, seed), func(t *testing.T) {
				r := rand.New(rand.NewPCG(seed, 7))
				size, grace, retention := millis(spec.Size), millis(spec.Grace), millis(spec.Retention)
				recs := arrivals(r, shape{n: 3000, step: 40, jump: 3 * size, near: 2 * (size + grace), far: 3 * (size + retention), keys: 3, start: 0})
				advance := size
				if spec.Kind == Hopping {
					advance = millis(spec.Advance)
				}
				ref := newTimeReference(recs, size, advance, grace, retention)
				m := newTimeMachine(t, spec)
				for i, rec := range recs {
					open, late := m.process(i, rec)
					if late != (len(ref.open[i]) == 0) || !reflect.DeepEqual(open, ref.open[i]) {
						t.Fatalf("arrival %d %+v at stream time %d: open %v late %v, want open %v", i, rec, m.streamTime, open, late, ref.open[i])
					}
				}
				compareMaps(t, "updates", m.updates, ref.counts)
				compareMaps(t, "finals", m.finals, ref.finals)
				compareMaps(t, "expiry", m.expired, ref.expired)
				compareMaps(t, "store at the end", m.store, ref.live)
				t.Logf("%d records: %d late, %d counted in some windows only, %d windows, %d finals, %d expired",
					len(recs), ref.late, ref.partial, len(ref.counts), len(ref.finals), len(ref.expired))
				lasts := m.streamTime > 10*(size+retention) // long enough for windows to expire
				if ref.late == 0 || len(ref.finals) == 0 || len(ref.live) == 0 || (lasts && len(ref.expired) == 0) ||
					(spec.Kind == Hopping && ref.partial == 0) {
					t.Errorf("the records do not exercise every rule")
				}
			})
		}
	}
}

func compareMaps[V comparable](t *testing.T, what string, got, want map[keyed]V) {
	t.Helper()
	if maps.Equal(got, want) {
		return
	}
	n := 0
	for k, w := range want {
		if g, ok := got[k]; (!ok || g != w) && n < 5 {
			t.Errorf("%s: %s %v: got %v (present %v), want %v", what, k.key, k.w, g, ok, w)
			n++
		}
	}
	for k, g := range got {
		if _, ok := want[k]; !ok && n < 10 {
			t.Errorf("%s: %s %v: got %v, want none", what, k.key, k.w, g)
			n++
		}
	}
	t.Errorf("%s: %d entries, want %d", what, len(got), len(want))
}
