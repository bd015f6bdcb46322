package window

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"reflect"
	"slices"
	"sort"
	"testing"
	"time"
)

// outcome is what one record did to a session store.
type outcome struct {
	late    bool
	merged  Window
	removed []Window
	count   int64 // of merged
}

// sessionMachine is one task of a session store. It loads a key's
// candidates through SessionRange, and deletes expired sessions only
// every purgeEvery records, as a store that sweeps now and then would.
type sessionMachine struct {
	t          *testing.T
	spec       Spec
	purgeEvery int
	streamTime int64
	store      map[string]map[Window]int64 // per key, sessions and counts
	finals     map[keyed]emitted
	expired    int
}

func newSessionMachine(t *testing.T, spec Spec, purgeEvery int) *sessionMachine {
	return &sessionMachine{t: t, spec: spec, purgeEvery: purgeEvery, streamTime: -1,
		store: map[string]map[Window]int64{}, finals: map[keyed]emitted{}}
}

func (m *sessionMachine) process(i int, r record) outcome {
	m.t.Helper()
	m.streamTime = max(m.streamTime, r.ts)
	sessions := m.store[r.key]
	if sessions == nil {
		sessions = map[Window]int64{}
		m.store[r.key] = sessions
	}
	from, to := m.spec.SessionRange(r.ts)
	var loaded []Window
	for w := range sessions {
		if w.End >= from && w.Start <= to {
			loaded = append(loaded, w)
		}
	}
	merged, removed, late, err := m.spec.AssignSession(loaded, r.ts, m.streamTime)
	if err != nil {
		m.t.Fatal(err)
	}
	// SessionRange loses no candidate: all the key's sessions give the same.
	m2, r2, l2, _ := m.spec.AssignSession(slices.Collect(maps.Keys(sessions)), r.ts, m.streamTime)
	if m2 != merged || l2 != late || !reflect.DeepEqual(r2, removed) {
		m.t.Fatalf("arrival %d %+v: from SessionRange [%d, %d] %v %v %v, from all sessions %v %v %v", i, r, from, to, merged, removed, late, m2, r2, l2)
	}
	out := outcome{late: late}
	if !late {
		out.merged, out.removed, out.count = merged, removed, 1
		for _, w := range removed {
			if _, done := m.finals[keyed{r.key, w}]; done {
				m.t.Fatalf("arrival %d %+v: merged session %v after its final value", i, r, w)
			}
			out.count += sessions[w]
			delete(sessions, w)
		}
		if m.spec.ClosedBy(merged, m.streamTime) {
			m.t.Fatalf("arrival %d %+v: made closed session %v", i, r, merged)
		}
		sessions[merged] = out.count
	}
	for key, sessions := range m.store {
		for w, c := range sessions {
			k := keyed{key, w}
			if _, done := m.finals[k]; !done && m.spec.ClosedBy(w, m.streamTime) {
				m.finals[k] = emitted{c, i}
			}
		}
	}
	if i%m.purgeEvery == 0 {
		m.purge()
	}
	return out
}

func (m *sessionMachine) purge() {
	for key, sessions := range m.store {
		for w := range sessions {
			if m.spec.Expired(w, m.streamTime) {
				if _, done := m.finals[keyed{key, w}]; !done {
					m.t.Fatalf("session %s %v expired before its final value", key, w)
				}
				delete(sessions, w)
				m.expired++
			}
		}
	}
}

// refSession is a session of the reference.
type refSession struct {
	start, end, count int64
}

// sessionReference keeps each key's sessions as a list sorted by start,
// deletes expired ones at once, and finds a record's sessions by binary
// search: those with start - gap < ts < end + gap.
type sessionReference struct {
	gap, grace, retention int64
	sessions              map[string][]refSession
	gone                  map[string][]refSession // expired
	finals                map[keyed]emitted
	outcomes              []outcome
	// coverage
	late, lateOwnOpen, backwards, bridges, extends, inside, started, ghosts, expired int
}

func newSessionReference(t *testing.T, recs []record, gap, grace, retention int64) *sessionReference {
	ref := &sessionReference{gap: gap, grace: grace, retention: retention,
		sessions: map[string][]refSession{}, gone: map[string][]refSession{}, finals: map[keyed]emitted{}}
	closedAt := func(end, st int64) bool { return st >= end+gap+grace }
	for i, st := range prefixMax(recs) {
		for key, list := range ref.sessions {
			for _, s := range list {
				if k := (keyed{key, Window{s.start, s.end}}); closedAt(s.end, st) && ref.finals[k] == (emitted{}) {
					ref.finals[k] = emitted{s.count, i}
				}
			}
			keep := list[:0]
			for _, s := range list {
				if s.end+retention <= st {
					ref.gone[key] = append(ref.gone[key], s)
					ref.expired++
				} else {
					keep = append(keep, s)
				}
			}
			ref.sessions[key] = keep
		}
		r := recs[i]
		list := ref.sessions[r.key]
		lo := sort.Search(len(list), func(j int) bool { return list[j].end+gap > r.ts })
		hi := sort.Search(len(list), func(j int) bool { return list[j].start-gap >= r.ts })
		touched := list[lo:hi]
		ownClosed := closedAt(r.ts, st)
		late := len(touched) == 0 && ownClosed
		for _, s := range touched {
			late = late || closedAt(s.end, st)
		}
		if late {
			ref.late++
			if !ownClosed {
				ref.lateOwnOpen++
			}
			ref.outcomes = append(ref.outcomes, outcome{late: true})
			continue
		}
		n := refSession{start: r.ts, end: r.ts, count: 1}
		var removed []Window
		for _, s := range touched {
			n.start, n.end, n.count = min(n.start, s.start), max(n.end, s.end), n.count+s.count
			removed = append(removed, Window{s.start, s.end})
		}
		switch {
		case len(touched) == 0:
			ref.started++
		case len(touched) > 1:
			ref.bridges++
		case touched[0] == refSession{n.start, n.end, n.count - 1}:
			ref.inside++
		default:
			ref.extends++
		}
		if ownClosed {
			ref.backwards++
		}
		for _, s := range ref.gone[r.key] {
			if s.start-gap < r.ts && r.ts < s.end+gap {
				ref.ghosts++
			}
		}
		ref.outcomes = append(ref.outcomes, outcome{merged: Window{n.start, n.end}, removed: removed, count: n.count})
		list = slices.Replace(list, lo, hi, n)
		ref.sessions[r.key] = list
		for j := 1; j < len(list); j++ {
			if list[j].start-list[j-1].end < gap {
				t.Fatalf("reference: sessions %v and %v of %s closer than the gap", list[j-1], list[j], r.key)
			}
		}
	}
	return ref
}

// clusters splits the sorted timestamps of a key's counted records where
// two are gap or more apart: the sessions, were none ever expired.
func clusters(ts []int64, gap int64) map[Window]int64 {
	out := map[Window]int64{}
	for i := 0; i < len(ts); {
		j := i + 1
		for j < len(ts) && ts[j]-ts[j-1] < gap {
			j++
		}
		out[Window{ts[i], ts[j-1]}] = int64(j - i)
		i = j
	}
	return out
}

func TestReferenceSessions(t *testing.T) {
	clusterChecks := 0
	for _, tc := range []struct {
		spec       Spec
		purgeEvery int
	}{
		{Spec{Store: "gap-3s-shortest-retention", Kind: Session, Size: 3 * time.Second, Grace: time.Second, Retention: 4 * time.Second}, 37},
		{Spec{Store: "gap-3s-no-grace", Kind: Session, Size: 3 * time.Second}, 1},
		{Spec{Store: "gap-2s-grace-2s", Kind: Session, Size: 2 * time.Second, Grace: 2 * time.Second, Retention: 30 * time.Second}, 5},
	} {
		spec := tc.spec.WithDefaults()
		if err := Validate([]Spec{spec}, ""); err != nil {
			t.Fatal(err)
		}
		for seed := range uint64(3) {
			t.Run(fmt.Sprintf("%s/seed=%d", spec.Store, seed), func(t *testing.T) {
				r := rand.New(rand.NewPCG(seed, 13))
				gap, grace, retention := millis(spec.Size), millis(spec.Grace), millis(spec.Retention)
				recs := arrivals(r, shape{n: 3000, step: 150, jump: 4 * gap, near: 2 * (gap + grace), far: 4 * (gap + grace), keys: 4, start: 0})
				ref := newSessionReference(t, recs, gap, grace, retention)
				m := newSessionMachine(t, spec, tc.purgeEvery)
				accepted := map[string][]int64{}
				for i, rec := range recs {
					got := m.process(i, rec)
					if want := ref.outcomes[i]; !reflect.DeepEqual(got, want) {
						t.Fatalf("arrival %d %+v at stream time %d: got %+v, want %+v", i, rec, m.streamTime, got, want)
					}
					if !got.late {
						accepted[rec.key] = append(accepted[rec.key], rec.ts)
					}
				}
				m.purge()
				compareMaps(t, "finals", m.finals, ref.finals)
				live := map[keyed]int64{}
				for key, list := range ref.sessions {
					for _, s := range list {
						if s.end+retention > m.streamTime {
							live[keyed{key, Window{s.start, s.end}}] = s.count
						}
					}
				}
				got := map[keyed]int64{}
				for key, sessions := range m.store {
					for w, c := range sessions {
						got[keyed{key, w}] = c
					}
				}
				compareMaps(t, "store at the end", got, live)
				// Were no session ever expired next to a later one, the
				// sessions are the clusters of the counted records.
				if ref.ghosts == 0 {
					all := map[keyed]int64{}
					for key, list := range ref.sessions {
						for _, s := range append(slices.Clone(list), ref.gone[key]...) {
							all[keyed{key, Window{s.start, s.end}}] = s.count
						}
					}
					want := map[keyed]int64{}
					for key, ts := range accepted {
						slices.Sort(ts)
						for w, c := range clusters(ts, gap) {
							want[keyed{key, w}] = c
						}
					}
					compareMaps(t, "sessions against clusters", all, want)
				}
				t.Logf("%d records: %d late (%d only for a closed session they touch), %d new sessions, %d inside, %d extend, %d bridge, %d extend an open session from behind its own grace, %d expired, %d finals, %d next to an expired session",
					len(recs), ref.late, ref.lateOwnOpen, ref.started, ref.inside, ref.extends, ref.bridges, ref.backwards, ref.expired, len(ref.finals), ref.ghosts)
				if ref.late == 0 || ref.started == 0 || ref.inside == 0 || ref.extends == 0 || ref.backwards == 0 || len(ref.finals) == 0 ||
					(retention < time.Hour.Milliseconds() && ref.expired == 0) {
					t.Errorf("the records do not exercise every rule")
				}
				// Two sessions are gap or more apart, so with no grace the
				// first has closed when the second starts: nothing bridges.
				if bridges := ref.bridges > 0; bridges != (grace > 0) {
					t.Errorf("grace %d: %d bridges", grace, ref.bridges)
				}
				// At the shortest retention a session expires as it closes,
				// so no record meets a closed one: it starts a session next
				// to the expired one instead of being late. With a longer
				// one, the records here do meet closed sessions, and none
				// lands next to an expired one.
				if shortest := retention == gap+grace; shortest != (ref.lateOwnOpen == 0) || shortest != (ref.ghosts > 0) {
					t.Errorf("retention %d: %d late for a closed session they touch, %d next to an expired one", retention, ref.lateOwnOpen, ref.ghosts)
				}
				if ref.ghosts == 0 {
					clusterChecks++
				}
			})
		}
	}
	if clusterChecks < 3 {
		t.Errorf("sessions compared with clusters %d times, want at least 3", clusterChecks)
	}
}
