package window

import (
	"errors"
	"math"
	"math/rand/v2"
	"reflect"
	"slices"
	"testing"
	"time"
)

func tumbling(size, grace time.Duration) Spec {
	return Spec{Store: "t", Kind: Tumbling, Size: size, Grace: grace}.WithDefaults()
}

func hopping(size, advance, grace time.Duration) Spec {
	return Spec{Store: "h", Kind: Hopping, Size: size, Advance: advance, Grace: grace}.WithDefaults()
}

// starts lists windows of the given size by their starts.
func starts(size int64, ss ...int64) []Window {
	ws := make([]Window, len(ss))
	for i, s := range ss {
		ws[i] = Window{Start: s, End: s + size}
	}
	return ws
}

func TestWindowsForTumbling(t *testing.T) {
	s := tumbling(5*time.Second, 0)
	for _, tc := range []struct {
		ts   int64
		want []Window
	}{
		{0, starts(5000, 0)},
		{1, starts(5000, 0)},
		{4999, starts(5000, 0)},
		{5000, starts(5000, 5000)}, // a window's end belongs to the next one
		{5001, starts(5000, 5000)},
		{1_700_000_003_210, starts(5000, 1_700_000_000_000)},
		{math.MaxInt64, []Window{{Start: math.MaxInt64 - math.MaxInt64%5000, End: math.MaxInt64}}},
	} {
		if got := s.WindowsFor(tc.ts); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("WindowsFor(%d) = %v, want %v", tc.ts, got, tc.want)
		}
	}
}

func TestWindowsForHopping(t *testing.T) {
	s := hopping(5*time.Second, time.Second, 0)
	for _, tc := range []struct {
		ts   int64
		want []Window
	}{
		{0, starts(5000, 0)},
		{999, starts(5000, 0)},
		{1000, starts(5000, 0, 1000)},
		{3999, starts(5000, 0, 1000, 2000, 3000)},
		{4000, starts(5000, 0, 1000, 2000, 3000, 4000)},
		{4999, starts(5000, 0, 1000, 2000, 3000, 4000)},
		{5000, starts(5000, 1000, 2000, 3000, 4000, 5000)},
		{12_345, starts(5000, 8000, 9000, 10_000, 11_000, 12_000)},
		{1_700_000_000_000, starts(5000, 1_699_999_996_000, 1_699_999_997_000, 1_699_999_998_000, 1_699_999_999_000, 1_700_000_000_000)},
	} {
		if got := s.WindowsFor(tc.ts); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("WindowsFor(%d) = %v, want %v", tc.ts, got, tc.want)
		}
	}
	// An advance that does not divide the size: 2 or 3 windows.
	s = hopping(5*time.Second, 2*time.Second, 0)
	for ts, want := range map[int64][]Window{
		4000: starts(5000, 0, 2000, 4000),
		4999: starts(5000, 0, 2000, 4000),
		5000: starts(5000, 2000, 4000),
		6000: starts(5000, 2000, 4000, 6000),
	} {
		if got := s.WindowsFor(ts); !reflect.DeepEqual(got, want) {
			t.Errorf("5s/2s: WindowsFor(%d) = %v, want %v", ts, got, want)
		}
	}
	// Near the largest timestamp the last windows end at it.
	last := int64(math.MaxInt64 - math.MaxInt64%1000)
	want := []Window{{last - 4000, math.MaxInt64}, {last - 3000, math.MaxInt64}, {last - 2000, math.MaxInt64}, {last - 1000, math.MaxInt64}, {last, math.MaxInt64}}
	if got := hopping(5*time.Second, time.Second, 0).WindowsFor(math.MaxInt64); !reflect.DeepEqual(got, want) {
		t.Errorf("WindowsFor(MaxInt64) = %v, want %v", got, want)
	}
	want = []Window{{last - 9000, last - 4000}, {last - 8000, last - 3000}}
	if got := hopping(5*time.Second, time.Second, 0).WindowsFor(last - 4001); !reflect.DeepEqual(got[:2], want) {
		t.Errorf("WindowsFor(%d) = %v, want %v first", last-4001, got, want)
	}
}

func TestWindowsForCounts(t *testing.T) {
	if n := len(tumbling(5*time.Second, 0).WindowsFor(123_456)); n != 1 {
		t.Errorf("tumbling: %d windows, want 1", n)
	}
	if n := len(hopping(5*time.Second, time.Second, 0).WindowsFor(123_456)); n != 5 {
		t.Errorf("hopping 5s/1s: %d windows, want 5", n)
	}
}

func TestWindowsForInvalid(t *testing.T) {
	if got := tumbling(time.Second, 0).WindowsFor(-1); got != nil {
		t.Errorf("negative timestamp: %v", got)
	}
	if got := visits().WithDefaults().WindowsFor(1000); got != nil {
		t.Errorf("session spec: %v", got)
	}
	if _, _, err := tumbling(time.Second, 0).Assign(-1, 10); !errors.Is(err, ErrNegativeTimestamp) {
		t.Errorf("Assign(-1): %v, want ErrNegativeTimestamp", err)
	}
	if _, _, err := visits().WithDefaults().Assign(1, 10); err == nil {
		t.Error("Assign on a session spec: no error")
	}
}

// TestWindowsForBruteForce compares WindowsFor with the windows found by
// walking down from the last start at or before ts.
func TestWindowsForBruteForce(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for range 20_000 {
		size := 1 + r.Int64N(10_000)
		advance := 1 + r.Int64N(size)
		s := Spec{Kind: Hopping, Size: time.Duration(size) * time.Millisecond, Advance: time.Duration(advance) * time.Millisecond}
		if advance == size && r.IntN(2) == 0 {
			s.Kind, s.Advance = Tumbling, 0
		}
		ts := r.Int64N(100_000)
		if r.IntN(4) == 0 {
			ts = r.Int64N(math.MaxInt64 - 1<<40) // far from the end, so no window is cut short
		}
		if got, want := s.WindowsFor(ts), bruteWindows(ts, size, advance); !reflect.DeepEqual(got, want) {
			t.Fatalf("size %d advance %d: WindowsFor(%d) = %v, want %v", size, advance, ts, got, want)
		}
	}
}

// bruteWindows finds the windows holding ts by trying every start down
// from the last one at or before ts.
func bruteWindows(ts, size, advance int64) []Window {
	var ws []Window
	for start := ts - ts%advance; start >= 0 && ts < start+size; start -= advance {
		ws = append(ws, Window{Start: start, End: start + size})
	}
	slices.Reverse(ws)
	return ws
}

// TestAssignClosesWindowsAtEndPlusGrace: hopping 5s/1s, grace 2s, a
// record at 4.5s; its windows end at 5s..9s and close at 7s..11s.
func TestAssignClosesWindowsAtEndPlusGrace(t *testing.T) {
	s := hopping(5*time.Second, time.Second, 2*time.Second)
	for _, tc := range []struct {
		streamTime int64
		open       []Window
		late       bool
	}{
		{4500, starts(5000, 0, 1000, 2000, 3000, 4000), false},
		{6999, starts(5000, 0, 1000, 2000, 3000, 4000), false},
		{7000, starts(5000, 1000, 2000, 3000, 4000), false},
		{10_999, starts(5000, 4000), false},
		{11_000, nil, true},
		{1 << 50, nil, true},
	} {
		open, late, err := s.Assign(4500, tc.streamTime)
		if err != nil || late != tc.late || !reflect.DeepEqual(open, tc.open) {
			t.Errorf("Assign(4500, %d) = %v, %v, %v; want %v, %v", tc.streamTime, open, late, err, tc.open, tc.late)
		}
	}
	// Grace 0: a window closes when stream time reaches its end.
	s = tumbling(5*time.Second, 0)
	if open, late, _ := s.Assign(4999, 4999); late || len(open) != 1 {
		t.Errorf("grace 0, stream time before the end: %v, late %v", open, late)
	}
	if open, late, _ := s.Assign(4999, 5000); !late || open != nil {
		t.Errorf("grace 0, stream time at the end: %v, late %v", open, late)
	}
	if open, late, _ := s.Assign(5000, 5000); late || !reflect.DeepEqual(open, starts(5000, 5000)) {
		t.Errorf("record on a start: %v, late %v", open, late)
	}
}

// TestAssignStreamTimeBeforeOrAfter: Assign takes the stream time after
// the record, max(previous, ts); the one before gives the same answer.
func TestAssignStreamTimeBeforeOrAfter(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	for _, s := range []Spec{tumbling(5*time.Second, 0), tumbling(time.Minute, 10*time.Second), hopping(5*time.Second, time.Second, 2*time.Second)} {
		for range 10_000 {
			ts, before := r.Int64N(100_000), r.Int64N(100_000)
			o1, l1, _ := s.Assign(ts, max(before, ts))
			o2, l2, _ := s.Assign(ts, before)
			if l1 != l2 || !reflect.DeepEqual(o1, o2) {
				t.Fatalf("%s: Assign(%d) after %v %v, before %v %v", s.Kind, ts, o1, l1, o2, l2)
			}
			if ts >= before && (l1 || len(o1) != len(s.WindowsFor(ts))) {
				t.Fatalf("%s: a record at %d advancing stream time from %d lost windows: %v", s.Kind, ts, before, o1)
			}
		}
	}
}

func TestExpired(t *testing.T) {
	s := tumbling(5*time.Second, 0) // retention 1h
	w := Window{Start: 0, End: 5000}
	if s.Expired(w, 5000+3_600_000-1) {
		t.Error("expired before End + retention")
	}
	if !s.Expired(w, 5000+3_600_000) {
		t.Error("not expired at End + retention")
	}
	if s.Expired(Window{Start: math.MaxInt64 - 4999, End: math.MaxInt64}, math.MaxInt64) {
		t.Error("the last window expired")
	}
	if s.Expired(w, -1) || s.Expired(Window{}, math.MinInt64) {
		t.Error("expired at a negative stream time")
	}
}

// TestExpiryFollowsClosing: with the shortest retention Validate allows,
// a window never expires before it closes; a time window expires at
// least its size later, a session when it closes.
func TestExpiryFollowsClosing(t *testing.T) {
	for _, s := range []Spec{
		{Store: "t", Kind: Tumbling, Size: 5 * time.Second, Retention: 5 * time.Second},
		{Store: "h", Kind: Hopping, Size: 5 * time.Second, Advance: time.Second, Grace: 2 * time.Second, Retention: 7 * time.Second},
		{Store: "s", Kind: Session, Size: 3 * time.Second, Grace: time.Second, Retention: 4 * time.Second},
	} {
		if err := Validate([]Spec{s}, ""); err != nil {
			t.Fatal(err)
		}
		w := Window{Start: 10_000, End: 15_000}
		close := s.CloseTime(w)
		if !s.ClosedBy(w, close) || s.ClosedBy(w, close-1) {
			t.Errorf("%s: ClosedBy disagrees with CloseTime %d", s.Kind, close)
		}
		if s.Expired(w, close-1) {
			t.Errorf("%s: expired before it closes at %d", s.Kind, close)
		}
		if wantExpired := s.Kind == Session; s.Expired(w, close) != wantExpired {
			t.Errorf("%s: Expired at its close time %d = %v, want %v", s.Kind, close, !wantExpired, wantExpired)
		}
		if s.Kind != Session && s.Expired(w, close+millis(s.Size)-1) {
			t.Errorf("%s: expired sooner than size after it closed", s.Kind)
		}
		for st := close; st < close+20_000; st += 100 {
			if s.Expired(w, st) && !s.ClosedBy(w, st) {
				t.Errorf("%s: expired at %d before it closed", s.Kind, st)
			}
		}
	}
}

func TestCloseTime(t *testing.T) {
	w := Window{Start: 1000, End: 2000}
	if got := hopping(5*time.Second, time.Second, 2*time.Second).CloseTime(w); got != 4000 {
		t.Errorf("time window: %d, want End + grace = 4000", got)
	}
	s := Spec{Kind: Session, Size: 3 * time.Second, Grace: time.Second}
	if got := s.CloseTime(w); got != 6000 {
		t.Errorf("session: %d, want End + gap + grace = 6000", got)
	}
	if got := s.CloseTime(Window{Start: 0, End: math.MaxInt64 - 1}); got != math.MaxInt64 {
		t.Errorf("near the end of time: %d, want MaxInt64", got)
	}
}
