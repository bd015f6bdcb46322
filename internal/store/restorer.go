package store

import (
	"errors"
	"fmt"

	"github.com/dgraph-io/badger/v4"
)

// Restorer writes a restore's changelog records into a partition through
// a Badger WriteBatch: writes are committed in the background, in the
// order they were made, so reading the changelog never waits for the disk.
// A checkpoint written after some records is durable only after them,
// which is all a restore needs: a crash keeps a prefix of the writes.
// Before the first write and after every MiB or so it checks the disk's
// free space, and fails with a *DiskFullError rather than let Badger write
// past the end of the disk (see space.go).
// A Restorer is used by one goroutine.
type Restorer struct {
	p         *Partition
	wb        *badger.WriteBatch
	unchecked int // bytes written since the last free-space check, -1 before the first

	// keepMax: see NewRestorerKeepingMax. chunk holds the counts written
	// since the last Checkpoint by key (deleted: -1); the writes before it
	// are flushed, so Badger answers for them, through view: one read
	// transaction per chunk, opened after the flush.
	keepMax bool
	chunk   map[string]int64
	view    *badger.Txn
}

// NewRestorer starts a batch of restore writes to the partition: each
// record of the changelog replaces the stored count (exactly-once, where
// the changelog read_committed is the truth).
func (p *Partition) NewRestorer() *Restorer {
	return &Restorer{p: p, wb: p.db.NewWriteBatch(), unchecked: -1}
}

// NewRestorerKeepingMax starts a batch of restore writes that keep the
// larger of the stored count and the changelog's, for at-least-once.
// Counts only grow, but there a changelog record can land after a newer
// one: a member that lost its partitions can have sends in flight that
// the broker appends after the new owner's. A restore replaying them in
// order would take counts back, and the input offsets behind the lost
// counts are committed already. A tombstone still deletes, and a count
// after a tombstone is taken as it is (the key started again).
//
// A Checkpoint flushes the writes before it (so Badger answers for them),
// which costs the restore one wait for the disk per checkpoint.
func (p *Partition) NewRestorerKeepingMax() *Restorer {
	r := p.NewRestorer()
	r.keepMax, r.chunk = true, map[string]int64{}
	return r
}

// Put sets key to the count in its wire form (a decimal string, as the
// changelog carries it); the caller has checked it decodes.
func (r *Restorer) Put(key, count []byte) error {
	if r.keepMax {
		n, err := decodeCount(count)
		if err != nil {
			return fmt.Errorf("restore partition %d: %w", r.p.id, err)
		}
		keep, err := r.stored(key)
		if err != nil {
			return err
		}
		if keep >= n {
			return nil
		}
		r.chunk[string(key)] = n
	}
	if err := r.write(len(key)+len(count), func() error { return r.wb.Set(r.p.dataKey(key), count) }); err != nil {
		return fmt.Errorf("restore partition %d: %w", r.p.id, err)
	}
	return nil
}

// stored is the count a keep-max restore compares with: this chunk's
// write of the key, else Badger's; -1 for none (or deleted).
func (r *Restorer) stored(key []byte) (int64, error) {
	if n, ok := r.chunk[string(key)]; ok {
		return n, nil
	}
	if r.view == nil {
		r.view = r.p.db.NewTransaction(false)
	}
	item, err := r.view.Get(r.p.dataKey(key))
	if errors.Is(err, badger.ErrKeyNotFound) {
		return -1, nil
	}
	var n int64
	if err == nil {
		err = item.Value(func(v []byte) (err error) { n, err = decodeCount(v); return err })
	}
	if err != nil {
		return 0, fmt.Errorf("restore partition %d: read the stored count: %w", r.p.id, err)
	}
	return n, nil
}

// endView ends the chunk's read transaction, if any.
func (r *Restorer) endView() {
	if r.view != nil {
		r.view.Discard()
		r.view = nil
	}
}

// Delete removes key (a changelog tombstone).
func (r *Restorer) Delete(key []byte) error {
	if r.keepMax {
		r.chunk[string(key)] = -1
	}
	if err := r.write(len(key), func() error { return r.wb.Delete(r.p.dataKey(key)) }); err != nil {
		return fmt.Errorf("restore partition %d: %w", r.p.id, err)
	}
	return nil
}

// Checkpoint records that the writes so far are complete up to offset.
func (r *Restorer) Checkpoint(offset int64) error {
	v := encodeCount(offset)
	if err := r.write(len(v), func() error { return r.wb.Set(append([]byte(nil), r.p.checkpointKey...), v) }); err != nil {
		return fmt.Errorf("restore partition %d: %w", r.p.id, err)
	}
	if r.keepMax {
		// Badger must answer for this chunk before its map is dropped.
		r.endView()
		if err := r.Flush(); err != nil {
			return err
		}
		r.wb = r.p.db.NewWriteBatch()
		clear(r.chunk)
	}
	return nil
}

// write adds one write of about n bytes, checking the free space first
// when it has not been checked for a while.
func (r *Restorer) write(n int, set func() error) error {
	if r.unchecked < 0 || r.unchecked >= spaceCheckBytes {
		if err := r.p.space.check(); err != nil {
			return err
		}
		r.unchecked = 0
	}
	r.unchecked += n + 32 // Badger's entry header and our key prefix
	return set()
}

// Flush waits until every write is committed.
func (r *Restorer) Flush() error {
	r.endView()
	if err := r.wb.Flush(); err != nil {
		return fmt.Errorf("restore partition %d: %w", r.p.id, err)
	}
	return nil
}

// Cancel drops the writes not yet committed and waits for those under way.
func (r *Restorer) Cancel() {
	r.endView()
	r.wb.Cancel()
}
