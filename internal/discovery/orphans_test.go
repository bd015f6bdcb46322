package discovery

import (
	"slices"
	"testing"
	"time"

	"github.com/abacus-streams/abacus/internal/abacus"
)

func viewOf(stable bool, partitions int32, members map[string][]int32) *View {
	v := &View{Owner: map[int32]int{}, Partitions: partitions, Stable: stable}
	names := make([]string, 0, len(members))
	for n := range members {
		names = append(names, n)
	}
	slices.Sort(names)
	for i, n := range names {
		v.Members = append(v.Members, abacus.Member{Name: n, Partitions: members[n]})
		for _, p := range members[n] {
			v.Owner[p] = i
		}
	}
	return v
}

// The member ranked i by name acts after (i+1) grace periods of one
// unchanged episode, once; a rebalancing group, a change of the unowned
// set or full ownership starts the timing over.
func TestOrphanWatchActsByRank(t *testing.T) {
	const grace = 10 * time.Second
	orphaned := viewOf(true, 4, map[string][]int32{"abacus-0": {0}, "abacus-1": {1}, "abacus-2": {}})
	t0 := time.Unix(1000, 0)
	type step struct {
		v    *View
		at   time.Duration
		want []bool // abacus-0, abacus-1, abacus-2
	}
	steps := []step{
		{orphaned, 0, []bool{false, false, false}},
		{orphaned, 9 * time.Second, []bool{false, false, false}},
		{orphaned, 10 * time.Second, []bool{true, false, false}},
		{orphaned, 12 * time.Second, []bool{false, false, false}},
		{orphaned, 20 * time.Second, []bool{false, true, false}},
		{orphaned, 30 * time.Second, []bool{false, false, true}},
		{orphaned, 35 * time.Second, []bool{false, false, false}},
	}
	watches := make([]orphanWatch, 3)
	for i := range watches {
		watches[i].grace = grace
	}
	for _, st := range steps {
		for i, name := range []string{"abacus-0", "abacus-1", "abacus-2"} {
			ps, act := watches[i].observe(st.v, name, t0.Add(st.at))
			if act != st.want[i] {
				t.Fatalf("at %s %s acts = %v, want %v", st.at, name, act, st.want[i])
			}
			if act && !slices.Equal(ps, []int32{2, 3}) {
				t.Fatalf("at %s %s acts for %v, want [2 3]", st.at, name, ps)
			}
		}
	}
	// abacus-0 acts again a full round (3 periods) after it acted.
	if _, act := watches[0].observe(orphaned, "abacus-0", t0.Add(49*time.Second)); act {
		t.Fatal("abacus-0 acted again before a full round")
	}
	if _, act := watches[0].observe(orphaned, "abacus-0", t0.Add(50*time.Second)); !act {
		t.Fatal("abacus-0 did not act again after a full round")
	}
}

func TestOrphanWatchRestartsOnChange(t *testing.T) {
	const grace = 10 * time.Second
	t0 := time.Unix(1000, 0)
	w := orphanWatch{grace: grace}
	self := "abacus-0"
	cases := []struct {
		name string
		v    *View
		at   time.Duration
	}{
		{"orphans seen", viewOf(true, 4, map[string][]int32{self: {0, 1}}), 0},
		{"rebalancing", viewOf(false, 4, map[string][]int32{self: {0, 1}}), 5 * time.Second},
		{"orphans again", viewOf(true, 4, map[string][]int32{self: {0, 1}}), 6 * time.Second},
		{"other orphans", viewOf(true, 4, map[string][]int32{self: {0}}), 15 * time.Second},
		{"all owned", viewOf(true, 4, map[string][]int32{self: {0, 1, 2, 3}}), 24 * time.Second},
		{"not a member", viewOf(true, 4, map[string][]int32{"abacus-1": {0, 1}}), 40 * time.Second},
		{"not a member still", viewOf(true, 4, map[string][]int32{"abacus-1": {0, 1}}), 60 * time.Second},
	}
	for _, c := range cases {
		if _, act := w.observe(c.v, self, t0.Add(c.at)); act {
			t.Fatalf("%s at %s: acted", c.name, c.at)
		}
	}
	if _, act := w.observe(viewOf(true, 4, map[string][]int32{self: {0}}), self, t0.Add(70*time.Second)); act {
		t.Fatal("acted on the first sight of an episode")
	}
	if _, act := w.observe(viewOf(true, 4, map[string][]int32{self: {0}}), self, t0.Add(80*time.Second)); !act {
		t.Fatal("did not act after a grace period of one episode")
	}
}
