package processor

import (
	"bytes"
	"cmp"
	"slices"

	"github.com/abacus-streams/abacus/internal/abacus"
	"github.com/abacus-streams/abacus/internal/store"
	"github.com/abacus-streams/abacus/internal/window"
)

// windowedNamed is the windowed store named name, nil if there is none.
func (p *Processor) windowedNamed(name string) *windowedStore {
	for _, w := range p.windowed {
		if w.spec.Store == name {
			return w
		}
	}
	return nil
}

// WindowedStores are the specs of the windowed stores, defaults filled, in
// configuration order.
func (p *Processor) WindowedStores() []window.Spec {
	out := make([]window.Spec, len(p.windowed))
	for i, w := range p.windowed {
		out[i] = w.spec
	}
	return out
}

// GetWindows returns the committed windows of key in the windowed store
// whose start lies in [from, to), ascending by start, and the key's
// partition. A window past the store's retention is never answered, even
// before the committer deletes it (e2e TestWindowsPastTheirRetentionAreGone). It fails
// as Get does.
func (p *Processor) GetWindows(storeName string, key []byte, from, to int64) (partition int32, windows []store.WindowCount, err error) {
	w := p.windowedNamed(storeName)
	if w == nil {
		return 0, nil, abacus.ErrUnknownStore
	}
	if partition, err = p.PartitionOf(key); err != nil {
		return 0, nil, err
	}
	t, err := p.answering(partition)
	if err != nil {
		return partition, nil, err
	}
	ws, err := t.store.Windowed(storeName)
	if err != nil {
		return partition, nil, err
	}
	st, err := ws.StreamTime()
	if err != nil {
		return partition, nil, err
	}
	got, err := ws.GetWindows(key, from, to)
	if err != nil {
		return partition, nil, err
	}
	return partition, unexpired(got, w.spec, st), nil
}

// GetWindowsAt is GetWindows of every window of key, with the checkpoint
// of the windowed store's changelog they hold every record of, read in
// one view of the store (store.WindowedStore.GetWindowsAt): a live stream
// that starts with them needs no update at or below the checkpoint.
func (p *Processor) GetWindowsAt(storeName string, key []byte) (partition int32, windows []store.WindowCount, checkpoint int64, err error) {
	w := p.windowedNamed(storeName)
	if w == nil {
		return 0, nil, store.NoCheckpoint, abacus.ErrUnknownStore
	}
	if partition, err = p.PartitionOf(key); err != nil {
		return 0, nil, store.NoCheckpoint, err
	}
	t, err := p.answering(partition)
	if err != nil {
		return partition, nil, store.NoCheckpoint, err
	}
	ws, err := t.store.Windowed(storeName)
	if err != nil {
		return partition, nil, store.NoCheckpoint, err
	}
	got, m, err := ws.GetWindowsAt(key)
	if err != nil {
		return partition, nil, store.NoCheckpoint, err
	}
	return partition, unexpired(got, w.spec, m.StreamTime), m.Checkpoint, nil
}

// ScanWindowsPartitionAt returns up to o.Limit unexpired windows in (key,
// start, end) order from the task of partition here, with the checkpoint
// as GetWindowsAt does. It fails as GetWindows does when this member
// cannot answer for the partition now.
func (p *Processor) ScanWindowsPartitionAt(storeName string, partition int32, o store.WindowScanOptions) ([]store.WindowCount, int64, error) {
	w := p.windowedNamed(storeName)
	if w == nil {
		return nil, store.NoCheckpoint, abacus.ErrUnknownStore
	}
	t, err := p.answering(partition)
	if err != nil {
		return nil, store.NoCheckpoint, err
	}
	ws, err := t.store.Windowed(storeName)
	if err != nil {
		return nil, store.NoCheckpoint, err
	}
	// Expired windows do not count against the limit: ask for them all,
	// and drop them as the view's stream time says.
	var got []store.WindowCount
	all := o
	all.Limit = 0
	m, err := ws.ScanWindowsAt(all, func(m store.Mark, wc store.WindowCount) bool {
		if !w.spec.Expired(window.Window{Start: wc.Start, End: wc.End}, m.StreamTime) {
			got = append(got, wc)
		}
		return o.Limit <= 0 || len(got) < o.Limit
	})
	if err != nil {
		return nil, store.NoCheckpoint, err
	}
	return got, m.Checkpoint, nil
}

// unexpired drops the windows expired at stream time st.
func unexpired(ws []store.WindowCount, spec window.Spec, st int64) []store.WindowCount {
	return slices.DeleteFunc(ws, func(wc store.WindowCount) bool {
		return spec.Expired(window.Window{Start: wc.Start, End: wc.End}, st)
	})
}

// WindowItem is one window of a windowed store's scan.
type WindowItem struct {
	store.WindowCount
	Partition int32
}

// ScanWindowsLocal returns up to o.Limit windows in (key, start, end)
// order from the windowed store's slices in this member's active tasks,
// and the partitions the answer covers, as ScanLocal does for counts.
func (p *Processor) ScanWindowsLocal(storeName string, o store.WindowScanOptions) (items []WindowItem, covered []int32, err error) {
	w := p.windowedNamed(storeName)
	if w == nil {
		return nil, nil, abacus.ErrUnknownStore
	}
	unconfirmed := p.unconfirmed.Load()
	for id, t := range *p.tasks.Load() {
		if !t.active.Load() || t.handingOver.Load() || unconfirmed {
			continue
		}
		covered = append(covered, id)
		ws, err := t.store.Windowed(storeName)
		if err != nil {
			return nil, nil, err
		}
		st, err := ws.StreamTime()
		if err != nil {
			return nil, nil, err
		}
		// Expired windows do not count against the limit: ask for them
		// all, then drop them.
		var got []store.WindowCount
		all := o
		all.Limit = 0
		if err := ws.ScanWindows(all, func(wc store.WindowCount) bool {
			if !w.spec.Expired(window.Window{Start: wc.Start, End: wc.End}, st) {
				got = append(got, wc)
			}
			return o.Limit <= 0 || len(got) < o.Limit
		}); err != nil {
			return nil, nil, err
		}
		for _, wc := range got {
			items = append(items, WindowItem{WindowCount: wc, Partition: id})
		}
	}
	slices.SortFunc(items, func(a, b WindowItem) int {
		if c := bytes.Compare(a.Key, b.Key); c != 0 {
			return c
		}
		return cmp.Or(cmp.Compare(a.Start, b.Start), cmp.Compare(a.End, b.End))
	})
	if o.Limit > 0 && len(items) > o.Limit {
		items = items[:o.Limit]
	}
	slices.Sort(covered)
	return items, covered, nil
}
