package subscribe

import "slices"

// index finds the streams that follow a key. The loop owns it.
//
// Key streams are found by one map lookup. Prefix streams are kept by
// prefix, and a key is matched against each distinct prefix length in use:
// a handful of lookups per update however many prefix streams there are.
type index struct {
	all         map[*stream]struct{}
	exact       map[string]set    // key -> its key streams
	prefix      map[string]set    // prefix -> its prefix streams
	lens        []int             // distinct prefix lengths, ascending
	lenCount    map[int]int       // prefix streams per prefix length
	byPartition map[int32]set     // partition -> streams bound to it
	partitionOf map[*stream]int32 // bound streams: key streams, one-partition prefix streams
}

type set = map[*stream]struct{}

func newIndex() index {
	return index{
		all: set{}, exact: map[string]set{}, prefix: map[string]set{},
		lenCount: map[int]int{}, byPartition: map[int32]set{}, partitionOf: map[*stream]int32{},
	}
}

func (x *index) add(s *stream) {
	x.all[s] = struct{}{}
	if !s.prefix {
		addTo(x.exact, s.key, s)
		return
	}
	addTo(x.prefix, s.key, s)
	n := len(s.key)
	x.lenCount[n]++
	if x.lenCount[n] == 1 {
		x.lens = append(x.lens, n)
		slices.Sort(x.lens)
	}
}

func (x *index) remove(s *stream) {
	if _, ok := x.all[s]; !ok {
		return
	}
	delete(x.all, s)
	if p, ok := x.partitionOf[s]; ok {
		delete(x.partitionOf, s)
		removeFrom(x.byPartition, p, s)
	}
	if !s.prefix {
		removeFrom(x.exact, s.key, s)
		return
	}
	removeFrom(x.prefix, s.key, s)
	n := len(s.key)
	x.lenCount[n]--
	if x.lenCount[n] == 0 {
		delete(x.lenCount, n)
		x.lens = slices.DeleteFunc(x.lens, func(l int) bool { return l == n })
	}
}

// bind records the partition of a key stream or of a one-partition
// prefix stream.
func (x *index) bind(s *stream, p int32) {
	if s.prefix && !s.onePartition {
		return
	}
	if _, ok := x.all[s]; !ok {
		return
	}
	x.partitionOf[s] = p
	addTo(x.byPartition, p, s)
}

func addTo[K comparable](m map[K]set, k K, s *stream) {
	ss, ok := m[k]
	if !ok {
		ss = set{}
		m[k] = ss
	}
	ss[s] = struct{}{}
}

func removeFrom[K comparable](m map[K]set, k K, s *stream) {
	ss := m[k]
	delete(ss, s)
	if len(ss) == 0 {
		delete(m, k)
	}
}
