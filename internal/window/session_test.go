package window

import (
	"errors"
	"math"
	"math/rand/v2"
	"reflect"
	"testing"
	"time"
)

// sessions returns a session spec with a gap and a grace in milliseconds.
func sessions(gap, grace int64) Spec {
	return Spec{Store: "s", Kind: Session, Size: time.Duration(gap) * time.Millisecond, Grace: time.Duration(grace) * time.Millisecond}.WithDefaults()
}

func TestSessionRange(t *testing.T) {
	s := sessions(3000, 1000)
	for _, tc := range []struct{ ts, from, to int64 }{
		{10_000, 7001, 12_999},
		{0, 0, 2999},
		{2999, 0, 5998},
		{math.MaxInt64, math.MaxInt64 - 2999, math.MaxInt64},
	} {
		if from, to := s.SessionRange(tc.ts); from != tc.from || to != tc.to {
			t.Errorf("SessionRange(%d) = %d, %d; want %d, %d", tc.ts, from, to, tc.from, tc.to)
		}
	}
}

// TestSessionRangeHoldsEveryCandidate: a session is in the range exactly
// when MergeSession would take it.
func TestSessionRangeHoldsEveryCandidate(t *testing.T) {
	r := rand.New(rand.NewPCG(8, 9))
	for range 50_000 {
		gap := 1 + r.Int64N(50)
		s := sessions(gap, 0)
		start := r.Int64N(200)
		w := Window{Start: start, End: start + r.Int64N(3)*r.Int64N(50)}
		ts := r.Int64N(300)
		from, to := s.SessionRange(ts)
		_, removed := s.MergeSession([]Window{w}, ts)
		if inRange := w.End >= from && w.Start <= to; inRange != (len(removed) == 1) {
			t.Fatalf("gap %d, ts %d, session %v: in range [%d, %d] %v, merged %v", gap, ts, w, from, to, inRange, removed)
		}
	}
}

// TestMergeSessionGap: a record joins a session when its distance to it
// is below the gap, not when it equals it.
func TestMergeSessionGap(t *testing.T) {
	s := sessions(10, 0)
	S := Window{Start: 100, End: 120}
	for _, tc := range []struct {
		ts      int64
		merged  Window
		removed []Window
	}{
		{110, S, []Window{S}},                    // inside: updated in place
		{100, S, []Window{S}},                    // on its start
		{120, S, []Window{S}},                    // on its end
		{91, Window{91, 120}, []Window{S}},       // 9 before
		{90, Window{90, 90}, nil},                // 10 before: a new session
		{129, Window{100, 129}, []Window{S}},     // 9 after
		{130, Window{130, 130}, nil},             // 10 after
		{1 << 40, Window{1 << 40, 1 << 40}, nil}, // far away
	} {
		merged, removed := s.MergeSession([]Window{S}, tc.ts)
		if merged != tc.merged || !reflect.DeepEqual(removed, tc.removed) {
			t.Errorf("MergeSession(%v, %d) = %v, %v; want %v, %v", S, tc.ts, merged, removed, tc.merged, tc.removed)
		}
	}
}

// TestMergeSessionBridges: a record within the gap of two sessions merges
// them into one; the input's order does not matter and far sessions stay.
func TestMergeSessionBridges(t *testing.T) {
	s := sessions(10, 0)
	a, b, far := Window{0, 10}, Window{25, 30}, Window{100, 100}
	merged, removed := s.MergeSession([]Window{far, b, a}, 18)
	if merged != (Window{0, 30}) || !reflect.DeepEqual(removed, []Window{a, b}) {
		t.Errorf("bridge: %v, %v", merged, removed)
	}
	merged, removed = s.MergeSession([]Window{far, b, a}, 20) // 10 after a: joins b only
	if merged != (Window{20, 30}) || !reflect.DeepEqual(removed, []Window{b}) {
		t.Errorf("next to a, within b's gap: %v, %v", merged, removed)
	}
	merged, removed = s.MergeSession(nil, 7)
	if merged != (Window{7, 7}) || removed != nil {
		t.Errorf("first record: %v, %v", merged, removed)
	}
}

// TestSessionWorkedExample is the example of the package documentation:
// gap 5 minutes, grace 10, one key's records at 10:00, 10:03, 10:11,
// 10:07, 10:20, 10:16, then, once stream time is 10:26, at 10:14 and
// 10:24. Minutes count from 10:00.
func TestSessionWorkedExample(t *testing.T) {
	const minute = 60_000
	s := sessions(5*minute, 10*minute)
	store := map[Window]int64{} // the key's sessions and their counts
	var streamTime int64 = -1
	add := func(ts int64) (late bool) {
		t.Helper()
		streamTime = max(streamTime, ts)
		existing := make([]Window, 0, len(store))
		for w := range store {
			existing = append(existing, w)
		}
		merged, removed, late, err := s.AssignSession(existing, ts, streamTime)
		if err != nil {
			t.Fatal(err)
		}
		if late {
			return true
		}
		count := int64(1)
		for _, w := range removed {
			count += store[w]
			delete(store, w)
		}
		store[merged] = count
		return false
	}
	check := func(when string, want map[Window]int64) {
		t.Helper()
		if !reflect.DeepEqual(store, want) {
			t.Errorf("%s: %v, want %v", when, store, want)
		}
	}
	add(0)
	add(3 * minute)  // 3 after 10:00: joins it
	add(11 * minute) // 8 after 10:03: a session of its own
	check("10:11", map[Window]int64{{0, 3 * minute}: 2, {11 * minute, 11 * minute}: 1})
	add(7 * minute) // 4 after 10:03, 4 before 10:11: bridges them
	check("10:07", map[Window]int64{{0, 11 * minute}: 4})
	add(20 * minute) // 9 after 10:11: a new session
	add(16 * minute) // 5 after 10:11, not below the gap; 4 before 10:20: joins it
	check("10:16", map[Window]int64{{0, 11 * minute}: 4, {16 * minute, 20 * minute}: 2})
	streamTime = 26 * minute // another key's record
	if !s.ClosedBy(Window{0, 11 * minute}, streamTime) || s.ClosedBy(Window{16 * minute, 20 * minute}, streamTime) {
		t.Error("at 10:26 10:00-10:11 closes (11 + 5 + 10), 10:16-10:20 does not")
	}
	if !add(14 * minute) { // 3 after 10:11, 2 before 10:16: would bridge a closed session
		t.Error("10:14 counted")
	}
	if add(24 * minute) { // 4 after 10:20: extends the open one
		t.Error("10:24 late")
	}
	check("10:24", map[Window]int64{{0, 11 * minute}: 4, {16 * minute, 24 * minute}: 3})
}

// TestAssignSessionLateness: gap 3s, grace 1s; S = [10s, 12s] closes at
// 12s + 3s + 1s = 16s.
func TestAssignSessionLateness(t *testing.T) {
	s := sessions(3000, 1000)
	S := Window{10_000, 12_000}
	for _, tc := range []struct {
		name           string
		ts, streamTime int64
		merged         Window
		late           bool
	}{
		{"extends an open session", 13_000, 15_999, Window{10_000, 13_000}, false},
		{"would extend a closed one", 13_000, 16_000, Window{}, true},
		{"inside a closed one", 11_000, 16_000, Window{}, true},
		{"starts a session", 20_000, 20_000, Window{20_000, 20_000}, false},
		{"starts a session within grace + gap", 20_000, 23_999, Window{20_000, 20_000}, false},
		{"starts a closed session", 20_000, 24_000, Window{}, true},
		// Far behind stream time, its own session would be closed, but it
		// joins an open one: counted, as in an open time window.
		{"extends an open session backwards", 8000, 15_000, Window{8000, 12_000}, false},
	} {
		merged, removed, late, err := s.AssignSession([]Window{S}, tc.ts, tc.streamTime)
		if err != nil || late != tc.late || merged != tc.merged {
			t.Errorf("%s: AssignSession(%d, %d) = %v, %v, late %v, %v; want %v, late %v",
				tc.name, tc.ts, tc.streamTime, merged, removed, late, err, tc.merged, tc.late)
		}
		if late && removed != nil {
			t.Errorf("%s: a late record removes %v", tc.name, removed)
		}
	}
}

// TestAssignSessionNeverChangesClosed: a record that would bridge an open
// session and a closed one is late, and nothing changes.
func TestAssignSessionNeverChangesClosed(t *testing.T) {
	s := sessions(3000, 1000)
	closed, open := Window{10_000, 12_000}, Window{14_000, 17_000} // close at 16s and 21s
	_, _, late, _ := s.AssignSession([]Window{open, closed}, 13_000, 16_000)
	if !late {
		t.Error("a record bridging a closed session counted")
	}
	merged, removed, late, _ := s.AssignSession([]Window{open, closed}, 13_000, 15_999)
	if late || merged != (Window{10_000, 17_000}) || !reflect.DeepEqual(removed, []Window{closed, open}) {
		t.Errorf("before the first closes: %v, %v, late %v", merged, removed, late)
	}
}

// TestAssignSessionIgnoresExpired: an expired session is as good as
// deleted, so whether the caller has deleted it changes nothing.
func TestAssignSessionIgnoresExpired(t *testing.T) {
	s := Spec{Store: "s", Kind: Session, Size: 3 * time.Second, Grace: time.Second, Retention: 4 * time.Second}
	old, long := Window{1000, 9000}, Window{9500, 30_000} // old expires at 13s; long closes at 34s
	for _, existing := range [][]Window{{old, long}, {long}} {
		merged, removed, late, err := s.AssignSession(existing, 9200, 31_000)
		if err != nil || late || merged != (Window{9200, 30_000}) || !reflect.DeepEqual(removed, []Window{long}) {
			t.Errorf("with %v: %v, %v, late %v, %v", existing, merged, removed, late, err)
		}
	}
	// Before old expires, it is closed (at 13s too) and makes the record late.
	if _, _, late, _ := s.AssignSession([]Window{old, long}, 9200, 12_999); late {
		t.Error("old is still open at 12.999s")
	}
	s.Retention = 5 * time.Second // old closes at 13s, expires at 14s
	if _, _, late, _ := s.AssignSession([]Window{old, long}, 9200, 13_500); !late {
		t.Error("a record joining a closed, unexpired session counted")
	}
}

// TestAssignSessionStreamTimeBeforeOrAfter: AssignSession takes the
// stream time after the record; the one before gives the same answer.
func TestAssignSessionStreamTimeBeforeOrAfter(t *testing.T) {
	r := rand.New(rand.NewPCG(10, 11))
	s := sessions(300, 100)
	s.Retention = 400 * time.Millisecond
	for range 20_000 {
		var existing []Window
		for at := r.Int64N(300); at < 3000; at += 300 + r.Int64N(500) {
			end := at + r.Int64N(200)
			existing = append(existing, Window{at, end})
			at = end
		}
		ts, before := r.Int64N(3000), r.Int64N(3000)
		m1, r1, l1, _ := s.AssignSession(existing, ts, max(before, ts))
		m2, r2, l2, _ := s.AssignSession(existing, ts, before)
		if m1 != m2 || l1 != l2 || !reflect.DeepEqual(r1, r2) {
			t.Fatalf("AssignSession(%v, %d): after %v %v %v, before(%d) %v %v %v", existing, ts, m1, r1, l1, before, m2, r2, l2)
		}
	}
}

func TestAssignSessionInvalid(t *testing.T) {
	s := sessions(1000, 0)
	if _, _, _, err := s.AssignSession(nil, -1, 0); !errors.Is(err, ErrNegativeTimestamp) {
		t.Errorf("negative timestamp: %v", err)
	}
	if _, _, _, err := trades().WithDefaults().AssignSession(nil, 1, 1); err == nil {
		t.Error("AssignSession on a hopping spec: no error")
	}
}
