package store

import (
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
}

// NewRestorer starts a batch of restore writes to the partition.
func (p *Partition) NewRestorer() *Restorer {
	return &Restorer{p: p, wb: p.db.NewWriteBatch(), unchecked: -1}
}

// Put sets key to the count in its wire form (a decimal string, as the
// changelog carries it); the caller has checked it decodes.
func (r *Restorer) Put(key, count []byte) error {
	if err := r.write(len(key)+len(count), func() error { return r.wb.Set(r.p.dataKey(key), count) }); err != nil {
		return fmt.Errorf("restore partition %d: %w", r.p.id, err)
	}
	return nil
}

// Delete removes key (a changelog tombstone).
func (r *Restorer) Delete(key []byte) error {
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
	if err := r.wb.Flush(); err != nil {
		return fmt.Errorf("restore partition %d: %w", r.p.id, err)
	}
	return nil
}

// Cancel drops the writes not yet committed and waits for those under way.
func (r *Restorer) Cancel() { r.wb.Cancel() }
