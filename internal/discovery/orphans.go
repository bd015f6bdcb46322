package discovery

import (
	"slices"
	"time"

	"github.com/abacus-streams/abacus/internal/abacus"
)

// orphanWatch decides when this member makes the group rebalance because
// input partitions have had no owner in a Stable group for too long.
//
// Between the two phases of a cooperative rebalance the group is Stable
// with the moving partitions owned by nobody; the member that gave them up
// rejoins at once and the second phase hands them out. If that member is
// killed before it rejoins and its replacement takes its place as the same
// static member (KIP-345), Kafka does not rebalance and no member rejoins:
// the partitions stay unowned until something else changes in the group.
// Every member sees the same description, so each one times the same
// episode; the member ranked i by name acts after (i+1) grace periods, and
// the first rebalance ends the episode for all. A member that acts again
// waits another full period. TestOrphanedPartitionsAreHandedOut pins it.
type orphanWatch struct {
	grace   time.Duration
	since   time.Time // when the current episode was first seen
	unowned []int32   // the episode's partitions
}

// observe takes a fresh view and says whether self should make the group
// rebalance now, and for which partitions.
func (w *orphanWatch) observe(v *View, self string, now time.Time) ([]int32, bool) {
	unowned := v.Unowned()
	if !v.Stable || len(unowned) == 0 {
		w.since, w.unowned = time.Time{}, nil
		return nil, false
	}
	if w.since.IsZero() || !slices.Equal(unowned, w.unowned) {
		w.since, w.unowned = now, unowned
		return nil, false
	}
	rank := slices.IndexFunc(v.Members, func(m abacus.Member) bool { return m.Name == self })
	if rank < 0 || now.Sub(w.since) < time.Duration(rank+1)*w.grace {
		return nil, false
	}
	w.since = now.Add(time.Duration(len(v.Members)) * w.grace) // a full round before this member acts again
	return unowned, true
}

// Unowned lists the input partitions no member owns, in order.
func (v *View) Unowned() []int32 {
	var out []int32
	for p := int32(0); p < v.Partitions; p++ {
		if _, ok := v.Owner[p]; !ok {
			out = append(out, p)
		}
	}
	return out
}
