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
// A Restorer is used by one goroutine.
type Restorer struct {
	p  *Partition
	wb *badger.WriteBatch
}

// NewRestorer starts a batch of restore writes to the partition.
func (p *Partition) NewRestorer() *Restorer {
	return &Restorer{p: p, wb: p.db.NewWriteBatch()}
}

// Put sets key to the count in its wire form (a decimal string, as the
// changelog carries it); the caller has checked it decodes.
func (r *Restorer) Put(key, count []byte) error {
	if err := r.wb.Set(r.p.dataKey(key), count); err != nil {
		return fmt.Errorf("restore partition %d: %w", r.p.id, err)
	}
	return nil
}

// Delete removes key (a changelog tombstone).
func (r *Restorer) Delete(key []byte) error {
	if err := r.wb.Delete(r.p.dataKey(key)); err != nil {
		return fmt.Errorf("restore partition %d: %w", r.p.id, err)
	}
	return nil
}

// Checkpoint records that the writes so far are complete up to offset.
func (r *Restorer) Checkpoint(offset int64) error {
	if err := r.wb.Set(append([]byte(nil), r.p.checkpointKey...), encodeCount(offset)); err != nil {
		return fmt.Errorf("restore partition %d: %w", r.p.id, err)
	}
	return nil
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
