package peer

import (
	"errors"
	"io"
	"sync"

	"github.com/abacus-streams/abacus/internal/api"
	"github.com/abacus-streams/abacus/internal/store"
)

// Copies serves this member's copies of task stores from its store
// database: every partition with a checkpoint there, whether an active
// task's, a standby's, or a revoked task's kept for the cleanup delay. It
// is the api's Snapshots.
type Copies struct {
	// mu is held for reading by every snapshot being written, and for
	// writing by Close: the store must not close under a snapshot.
	mu sync.RWMutex
	db *store.DB // nil: no store open, or closed
}

// NewCopies serves the copies in db; a nil db serves none (a member
// started on a full disk, whose processor opens the store later, sends
// no snapshot until its next start).
func NewCopies(db *store.DB) *Copies { return &Copies{db: db} }

// Checkpoint is the checkpoint of the copy of the partition, if there is
// one with a checkpoint.
func (c *Copies) Checkpoint(partition int32) (int64, bool, error) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if c.db == nil {
		return store.NoCheckpoint, false, nil
	}
	cp, err := c.db.Partition(partition).Checkpoint()
	return cp, err == nil && cp != store.NoCheckpoint, err
}

// WriteSnapshot writes the snapshot of the copy of the partition to w.
func (c *Copies) WriteSnapshot(partition int32, w io.Writer) (int64, error) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if c.db == nil {
		return 0, api.ErrNoCopy
	}
	info, err := c.db.Partition(partition).WriteSnapshot(w)
	if errors.Is(err, store.ErrNoCheckpoint) {
		// Nothing was written: the answer can still be a 404.
		return 0, errors.Join(api.ErrNoCopy, err)
	}
	return info.Bytes, err
}

// Close waits for the snapshots being written (each write is bounded by
// the api's stream write timeout) and serves none after: call it before
// the store closes.
func (c *Copies) Close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.db = nil
}
