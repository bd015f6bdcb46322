package processor

import (
	"bytes"
	"slices"

	"github.com/abacus-streams/abacus/internal/abacus"
	"github.com/abacus-streams/abacus/internal/store"
)

// Item is one key and its committed count.
type Item struct {
	Key       []byte
	Value     int64
	Partition int32
}

// ScanLocal returns up to o.Limit keys in byte order from this instance's
// active tasks, and the partitions the answer covers: a restoring task is
// not covered, so a caller merging answers can tell it is incomplete.
func (p *Processor) ScanLocal(storeName string, o store.ScanOptions) (items []Item, covered []int32, err error) {
	if storeName != p.cfg.Store {
		return nil, nil, abacus.ErrUnknownStore
	}
	unconfirmed := p.unconfirmed.Load()
	for id, t := range *p.tasks.Load() {
		if !t.active.Load() || t.handingOver.Load() || unconfirmed {
			continue
		}
		covered = append(covered, id)
		err := t.store.Scan(o, func(k []byte, v int64) bool {
			items = append(items, Item{Key: k, Value: v, Partition: id})
			return true
		})
		if err != nil {
			return nil, nil, err
		}
	}
	slices.SortFunc(items, func(a, b Item) int { return bytes.Compare(a.Key, b.Key) })
	if o.Limit > 0 && len(items) > o.Limit {
		items = items[:o.Limit]
	}
	slices.Sort(covered)
	return items, covered, nil
}

// ScanPartition returns up to o.Limit keys in byte order from the task of
// partition here. It fails with one of abacus's errors, as Get does, when
// this instance cannot answer for the partition now.
func (p *Processor) ScanPartition(storeName string, partition int32, o store.ScanOptions) ([]Item, error) {
	if storeName != p.cfg.Store {
		return nil, abacus.ErrUnknownStore
	}
	t, ok := (*p.tasks.Load())[partition]
	switch {
	case !ok:
		return nil, abacus.ErrNotOwned
	case !t.active.Load():
		return nil, abacus.ErrRestoring
	case t.handingOver.Load():
		return nil, abacus.ErrHandingOver
	case p.unconfirmed.Load():
		return nil, abacus.ErrUnconfirmed
	}
	var items []Item
	err := t.store.Scan(o, func(k []byte, v int64) bool {
		items = append(items, Item{Key: k, Value: v, Partition: partition})
		return true
	})
	return items, err
}
