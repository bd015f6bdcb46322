package discovery

import (
	"cmp"
	"encoding/binary"
	"slices"

	"github.com/abacus-streams/abacus/internal/abacus"
)

// Standby placement: which members keep a warm copy of each task.
//
// Every member computes it from the same group description, with no
// coordination, so it is a pure function of the sorted member names, the
// owner of each partition, the partition count and the number of copies
// (placeStandbys). Three wishes shape it:
//
//   - a copy is useful only away from the task's active member, and two
//     copies on one member are one copy;
//   - each member holds its share of the copies, since each copy costs its
//     disk and its changelog reads: the copies are dealt out to exact
//     quotas (floor or ceiling of copies/members);
//   - a member joining or leaving moves few copies, since each moved copy
//     is a restore: members rank for each partition by a fixed hash of
//     (partition, member name), rendezvous hashing, which a change of the
//     membership leaves alone for every pair it does not involve.
//
// TestStandbyPlacementRules, TestStandbyPlacementSpread and
// TestStandbyPlacementMovement pin each of them.

// placeStandbys returns, for each partition, the indices into members of
// the members that keep its standby copies, ascending. members are the
// member names (sorted, as in View.Members); owner maps a partition to
// its active member's index, and a partition it lacks (between the two
// phases of a cooperative rebalance) takes its copies from all members.
// A partition gets min(replicas, eligible members) copies.
//
// The copies are dealt out greedily, the heaviest (partition, member) pair
// by weight first, each member taking up to its quota. What the greedy
// pass leaves short (the only members with room are the partition's
// active or already hold it) is filled by moving one copy of another
// partition to a member with room (rebalanceInto), and failing that by
// the least loaded eligible member, above its quota (only an uneven
// assignment of the actives comes to that).
func placeStandbys(members []string, owner map[int32]int, partitions int32, replicas int) [][]int {
	out := make([][]int, max(partitions, 0))
	m := len(members)
	if replicas <= 0 || m == 0 || partitions <= 0 {
		return out
	}
	pl := placement{
		members: members, owner: owner, chosen: out,
		need: make([]int, partitions), load: make([]int, m),
	}
	type pair struct {
		p int32
		m int
		w uint64
	}
	var pairs []pair
	total := 0
	for p := range partitions {
		eligible := m
		if _, ok := owner[p]; ok {
			eligible--
		}
		pl.need[p] = min(replicas, eligible)
		total += pl.need[p]
		for i, name := range members {
			if pl.eligible(p, i) {
				pairs = append(pairs, pair{p, i, weight(p, name)})
			}
		}
	}
	pl.base, pl.extra = total/m, total%m
	slices.SortFunc(pairs, func(a, b pair) int {
		return cmp.Or(cmp.Compare(b.w, a.w), cmp.Compare(a.p, b.p), cmp.Compare(a.m, b.m))
	})
	for _, e := range pairs {
		if len(out[e.p]) < pl.need[e.p] && pl.hasRoom(e.m) && pl.eligible(e.p, e.m) {
			pl.take(e.p, e.m)
		}
	}
	for p := range partitions {
		for len(out[p]) < pl.need[p] {
			if !pl.rebalanceInto(p) {
				pl.overload(p)
			}
		}
	}
	for _, c := range out {
		slices.Sort(c)
	}
	return out
}

// placement is placeStandbys' working state.
type placement struct {
	members []string
	owner   map[int32]int
	chosen  [][]int // partition → members holding its copies
	need    []int   // partition → copies it gets
	load    []int   // member → copies it holds
	// Quotas: every member may hold base copies, and extra of them one
	// more. atCeiling counts the members holding base+1.
	base, extra, atCeiling int
}

// eligible says whether member i may take a copy of p: not its active,
// not already holding one.
func (pl *placement) eligible(p int32, i int) bool {
	if o, ok := pl.owner[p]; ok && o == i {
		return false
	}
	return !slices.Contains(pl.chosen[p], i)
}

func (pl *placement) hasRoom(i int) bool {
	return pl.load[i] < pl.base || (pl.load[i] == pl.base && pl.atCeiling < pl.extra)
}

func (pl *placement) take(p int32, i int) {
	pl.chosen[p] = append(pl.chosen[p], i)
	pl.load[i]++
	if pl.load[i] == pl.base+1 {
		pl.atCeiling++
	}
}

// rebalanceInto fills one missing copy of p within the quotas: a member f
// with room that may not hold p takes over another partition q's copy
// from a member that may hold p, which takes p's. Of the possible moves,
// the one whose new pair (q, f) weighs most wins, so that the result
// stays a function of the weights alone.
func (pl *placement) rebalanceInto(p int32) bool {
	found := false
	var best struct {
		w    uint64
		q    int32
		f, m int
	}
	for f, name := range pl.members {
		if !pl.hasRoom(f) {
			continue
		}
		for q := range int32(len(pl.chosen)) {
			if q == p || !pl.eligible(q, f) {
				continue
			}
			w := weight(q, name)
			if found && w <= best.w {
				continue
			}
			for _, m := range pl.chosen[q] {
				if pl.eligible(p, m) {
					found = true
					best.w, best.q, best.f, best.m = w, q, f, m
					break
				}
			}
		}
	}
	if !found {
		return false
	}
	c := pl.chosen[best.q]
	c[slices.Index(c, best.m)] = best.f
	pl.load[best.f]++
	if pl.load[best.f] == pl.base+1 {
		pl.atCeiling++
	}
	pl.chosen[p] = append(pl.chosen[p], best.m)
	return true
}

// overload gives p a copy on its least loaded eligible member, the
// heaviest by weight among equals, whatever its quota.
func (pl *placement) overload(p int32) {
	pick := -1
	for i, name := range pl.members {
		if !pl.eligible(p, i) {
			continue
		}
		if pick < 0 || pl.load[i] < pl.load[pick] ||
			(pl.load[i] == pl.load[pick] && weight(p, name) > weight(p, pl.members[pick])) {
			pick = i
		}
	}
	pl.take(p, pick)
}

// weight is the rendezvous weight of member for partition p: FNV-1a of the
// name and the partition, then murmur3's 64-bit finalizer, since FNV-1a
// alone spreads the last bytes it hashes (the partition's) poorly over
// the high bits, and member names differ only in their last digits.
// Fixed forever: members of two versions must compute the same placement
// (TestStandbyPlacementIsFixed).
func weight(p int32, member string) uint64 {
	const offset, prime = 14695981039346656037, 1099511628211 // FNV-1a, 64 bits
	x := uint64(offset)
	for i := range len(member) {
		x = (x ^ uint64(member[i])) * prime
	}
	for _, b := range binary.BigEndian.AppendUint32(make([]byte, 0, 4), uint32(p)) {
		x = (x ^ uint64(b)) * prime
	}
	x ^= x >> 33
	x *= 0xff51afd7ed558ccd
	x ^= x >> 33
	x *= 0xc4ceb9fe1a85ec53
	x ^= x >> 33
	return x
}

// setStandbys places replicas standby copies of each partition over the
// view's members and fills Standbys and each member's Standbys.
func (v *View) setStandbys(replicas int) {
	names := make([]string, len(v.Members))
	for i, m := range v.Members {
		names[i] = m.Name
		v.Members[i].Standbys = []int32{}
	}
	v.Standbys = placeStandbys(names, v.Owner, v.Partitions, replicas)
	for p, holders := range v.Standbys {
		for _, i := range holders {
			v.Members[i].Standbys = append(v.Members[i].Standbys, int32(p))
		}
	}
}

// StandbysOf lists the partitions whose standby copy member keeps, in
// order; none for a member the view does not list.
func (v *View) StandbysOf(member string) []int32 {
	for _, m := range v.Members {
		if m.Name == member {
			return slices.Clone(m.Standbys)
		}
	}
	return nil
}

// StandbyMembers lists the members keeping a standby copy of partition p,
// in name order.
func (v *View) StandbyMembers(p int32) []abacus.Member {
	if p < 0 || int(p) >= len(v.Standbys) {
		return nil
	}
	out := make([]abacus.Member, 0, len(v.Standbys[p]))
	for _, i := range v.Standbys[p] {
		out = append(out, v.Members[i])
	}
	return out
}
