package processor

import (
	"bytes"
	"fmt"
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
		if items, err = scanInto(items, t.store, id, o); err != nil {
			return nil, nil, err
		}
	}
	items = firstKeys(items, o.Limit)
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
	t, err := p.answering(partition)
	if err != nil {
		return nil, err
	}
	return scanInto(nil, t.store, partition, o)
}

// firstKeys sorts items by key and keeps the first limit (all for 0).
func firstKeys(items []Item, limit int) []Item {
	slices.SortFunc(items, func(a, b Item) int { return bytes.Compare(a.Key, b.Key) })
	if limit > 0 && len(items) > limit {
		items = items[:limit]
	}
	return items
}

// scanInto appends the keys of the store slice of partition within o to
// items.
func scanInto(items []Item, slice *store.Partition, partition int32, o store.ScanOptions) ([]Item, error) {
	err := slice.Scan(o, func(k []byte, v int64) bool {
		items = append(items, Item{Key: k, Value: v, Partition: partition})
		return true
	})
	return items, err
}

// PartitionCopy says how fresh this member's copy of a partition is: Lag
// changelog records behind the end it last saw, and Stale unless it is
// an active task that answers lookups (Get).
type PartitionCopy struct {
	Partition int32
	Lag       int64
	Stale     bool
}

// ScanCopies is ScanLocal over every copy of a partition here that
// answers (GetCopy's copies: an active task, a standby, the store of a
// task that restores, is being handed over or whose membership is
// unconfirmed): it returns up to o.Limit keys in byte order from the
// copies that lag at most maxLag, and every copy here, fresh enough or
// not.
func (p *Processor) ScanCopies(storeName string, o store.ScanOptions, maxLag int64) (items []Item, copies []PartitionCopy, err error) {
	if storeName != p.cfg.Store {
		return nil, nil, abacus.ErrUnknownStore
	}
	for part := range p.numPartitions.Load() {
		lag, slice, ok := p.copyOf(part)
		if !ok {
			continue
		}
		_, notAnswering := p.answering(part)
		copies = append(copies, PartitionCopy{Partition: part, Lag: lag, Stale: notAnswering != nil})
		if lag > maxLag {
			continue
		}
		if items, err = scanInto(items, slice, part, o); err != nil {
			return nil, nil, fmt.Errorf("scan the copy of partition %d: %w", part, err)
		}
	}
	items = firstKeys(items, o.Limit)
	return items, copies, nil
}

// ScanCopy returns up to o.Limit keys in byte order from the copy of
// partition here that GetCopy answers from, if it lags at most maxLag.
// It fails with abacus.ErrNotOwned when there is no copy here, and with
// an *abacus.StaleError when it lags more.
func (p *Processor) ScanCopy(storeName string, partition int32, o store.ScanOptions, maxLag int64) ([]Item, error) {
	if storeName != p.cfg.Store {
		return nil, abacus.ErrUnknownStore
	}
	lag, slice, ok := p.copyOf(partition)
	switch {
	case !ok:
		return nil, abacus.ErrNotOwned
	case lag > maxLag:
		return nil, &abacus.StaleError{Lag: lag}
	}
	return scanInto(nil, slice, partition, o)
}
