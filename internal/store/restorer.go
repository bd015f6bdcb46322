package store

import (
	"bytes"
	"errors"
	"fmt"

	"github.com/dgraph-io/badger/v4"
)

// Restorer writes a restore's changelog records into a partition's counts
// (Partition.NewRestorer) or into one of its windowed stores
// (WindowedStore.NewRestorer), whose records are keyed by window key and
// whose restore keeps each window's expiry index entry with it. Records
// are coalesced per key in memory, a chunk at a time (RestoreChunkBytes):
// a changelog's head, and above all the delta a restart restores, holds
// many records of each hot key, and only the last (or, keeping the
// larger, the largest) is written. A chunk goes to Badger through a
// WriteBatch of its own, with its checkpoint last, and Badger commits it
// in the background while the restore reads the next chunk: the next
// chunk waits for it before it is written, so chunks commit in order, a
// crash keeps a prefix of them, and the checkpoint never runs ahead of
// the counts. (Writing a chunk only when the next is full left Badger's
// one writer idle while the restore read, then busy at the end: half of a
// full restore's time, measured.)
// Before the first record and after every MiB or so it checks the disk's
// free space, and fails with a *DiskFullError rather than let Badger write
// past the end of the disk (see space.go).
// A Restorer is used by one goroutine.
type Restorer struct {
	p *Partition
	// ws is the windowed store restored, nil for the partition's counts.
	ws *WindowedStore
	// what names the store restored in errors.
	what      string
	wb        *badger.WriteBatch // the chunk being written
	unchecked int                // bytes taken since the last free-space check, -1 before the first
	// committing is the chunk Badger commits in the background, nil if
	// none: it is closed with its error set once every write is in.
	committing *chunkCommit

	// keepMax: see NewRestorerKeepingMax.
	keepMax bool
	// compareStored: keepMax compares with the counts in Badger; not for
	// the first chunk of a restore that began without a checkpoint (from
	// the changelog's start, which holds every count there is).
	compareStored bool
	chunk         map[string]restoredCount
	chunkBytes    int
}

// chunkCommit is a chunk's WriteBatch being flushed in the background.
type chunkCommit struct {
	done chan struct{}
	err  error
}

// restoredCount is a key's part of a chunk.
type restoredCount struct {
	n       int64
	deleted bool // the chunk ends with the key's tombstone
	// restarted: the key had a tombstone in this chunk before n, so n is
	// taken as it is (keeping the larger, too).
	restarted bool
}

// RestoreChunkBytes bounds the records a Restorer holds before it writes
// them (a key's bytes plus restoreEntryOverhead each).
const RestoreChunkBytes = 2 << 20

// restoreEntryOverhead approximates what a chunk's key costs beyond its
// bytes (map entry, string header, count).
const restoreEntryOverhead = 64

// NewRestorer starts a batch of restore writes to the partition: each
// record of the changelog replaces the stored count (exactly-once, where
// the changelog read_committed is the truth).
func (p *Partition) NewRestorer() *Restorer { return newRestorer(p, nil) }

// NewRestorer starts a batch of restore writes to the windowed store from
// its changelog, as Partition.NewRestorer does to the counts: each record
// (a window key and a count, or a tombstone) replaces the stored window,
// and the store's own checkpoint follows each chunk.
func (s *WindowedStore) NewRestorer() *Restorer { return newRestorer(s.p, s) }

func newRestorer(p *Partition, ws *WindowedStore) *Restorer {
	what := fmt.Sprintf("partition %d", p.id)
	if ws != nil {
		what = ws.what()
	}
	return &Restorer{p: p, ws: ws, what: what, wb: p.db.NewWriteBatch(), unchecked: -1, chunk: map[string]restoredCount{}}
}

// NewRestorerKeepingMax starts a batch of restore writes that keep the
// larger of the stored count and the changelog's, for at-least-once.
// Counts only grow, but there a changelog record can land after a newer
// one: a member that lost its partitions can have sends in flight that
// the broker appends after the new owner's. A restore replaying them in
// order would take counts back, and the input offsets behind the lost
// counts are committed already. A tombstone still deletes, and a count
// after a tombstone is taken as it is (the key started again).
func (p *Partition) NewRestorerKeepingMax() (*Restorer, error) {
	cp, err := p.Checkpoint()
	if err != nil {
		return nil, err
	}
	return newRestorer(p, nil).keepingMax(cp), nil
}

// NewRestorerKeepingMax is Partition.NewRestorerKeepingMax for the
// windowed store: a window's count only grows too (a merged session's
// old windows go with a tombstone, which still deletes).
func (s *WindowedStore) NewRestorerKeepingMax() (*Restorer, error) {
	cp, err := s.Checkpoint()
	if err != nil {
		return nil, err
	}
	return newRestorer(s.p, s).keepingMax(cp), nil
}

// keepingMax makes r keep the larger count, of a store at checkpoint cp.
func (r *Restorer) keepingMax(cp int64) *Restorer {
	r.keepMax, r.compareStored = true, cp != NoCheckpoint
	return r
}

// checkKey refuses a key that is not a window key, for a windowed store.
func (r *Restorer) checkKey(key []byte) error {
	if r.ws == nil {
		return nil
	}
	if _, _, _, err := parseWindowKey(key); err != nil {
		return fmt.Errorf("restore %s: window key %q: %w", r.what, key, err)
	}
	return nil
}

// Put sets key (a window key, for a windowed store) to the count in its
// wire form (a decimal string, as the changelog carries it).
func (r *Restorer) Put(key, count []byte) error {
	n, err := decodeCount(count)
	if err != nil {
		return fmt.Errorf("restore %s: %w", r.what, err)
	}
	if err := r.checkKey(key); err != nil {
		return err
	}
	if err := r.take(len(key) + len(count)); err != nil {
		return err
	}
	e, seen := r.chunk[string(key)]
	switch {
	case !seen:
		r.chunkBytes += len(key) + restoreEntryOverhead
		e = restoredCount{n: n}
	case e.deleted:
		e = restoredCount{n: n, restarted: true}
	case !r.keepMax || n > e.n:
		e.n = n
	}
	r.chunk[string(key)] = e
	return nil
}

// Delete removes key (a changelog tombstone).
func (r *Restorer) Delete(key []byte) error {
	if err := r.checkKey(key); err != nil {
		return err
	}
	if err := r.take(len(key)); err != nil {
		return err
	}
	if _, seen := r.chunk[string(key)]; !seen {
		r.chunkBytes += len(key) + restoreEntryOverhead
	}
	r.chunk[string(key)] = restoredCount{deleted: true}
	return nil
}

// Full reports whether the chunk has reached RestoreChunkBytes: time for
// a Checkpoint.
func (r *Restorer) Full() bool { return r.chunkBytes >= RestoreChunkBytes }

// Checkpoint writes the chunk and then the checkpoint (the changelog is
// complete up to offset) of the store restored, and lets Badger commit
// them while the restore reads on.
func (r *Restorer) Checkpoint(offset int64) error {
	if err := r.take(8); err != nil {
		return err
	}
	if err := r.writeChunk(); err != nil {
		return err
	}
	key := r.p.checkpointKey
	if r.ws != nil {
		key = r.ws.checkpointKey
	}
	if err := r.wb.Set(bytes.Clone(key), encodeCount(offset)); err != nil {
		return fmt.Errorf("restore %s: %w", r.what, err)
	}
	wb, c := r.wb, &chunkCommit{done: make(chan struct{})}
	go func() {
		defer close(c.done)
		c.err = wb.Flush()
	}()
	r.committing, r.wb = c, r.p.db.NewWriteBatch()
	return nil
}

// WaitCommitted waits until the last Checkpoint's writes are committed,
// and so readable: for a reader told of them as soon as they are.
func (r *Restorer) WaitCommitted() error { return r.waitCommitted() }

// waitCommitted waits for the chunk Badger commits in the background.
func (r *Restorer) waitCommitted() error {
	c := r.committing
	if c == nil {
		return nil
	}
	<-c.done
	r.committing = nil
	if c.err != nil {
		return fmt.Errorf("restore %s: %w", r.what, c.err)
	}
	return nil
}

// writeChunk hands the chunk's counts to the write batch and empties it.
func (r *Restorer) writeChunk() error {
	// First the chunk before it: in the order of the changelog, and read
	// back by the larger-count comparison below.
	if err := r.waitCommitted(); err != nil {
		return err
	}
	if len(r.chunk) == 0 {
		return nil
	}
	var view *badger.Txn
	if r.keepMax && r.compareStored {
		view = r.p.db.NewTransaction(false)
		defer view.Discard()
	}
	for key, e := range r.chunk {
		k := r.dataKey([]byte(key))
		var err error
		switch {
		case e.deleted:
			err = r.delete(k, key)
		case view != nil && !e.restarted:
			var stored int64
			if stored, err = r.stored(view, k); err == nil && stored < e.n {
				err = r.set(k, key, e.n)
			}
		default:
			err = r.set(k, key, e.n)
		}
		if err != nil {
			return fmt.Errorf("restore %s: %w", r.what, err)
		}
	}
	clear(r.chunk)
	r.chunkBytes = 0
	r.compareStored = r.keepMax // from the second chunk on: with the first
	return nil
}

// dataKey is the Badger key of the restored key.
func (r *Restorer) dataKey(key []byte) []byte {
	if r.ws != nil {
		return r.ws.dataKey(key)
	}
	return r.p.dataKey(key)
}

// set writes the count n of key under its Badger key k; a window's index
// entry goes first (see WindowedStore).
func (r *Restorer) set(k []byte, key string, n int64) error {
	if r.ws != nil {
		if err := r.wb.Set(r.ws.indexKey([]byte(key)), []byte{}); err != nil {
			return err
		}
	}
	return r.wb.Set(k, encodeCount(n))
}

// delete deletes key under its Badger key k; a window's index entry goes
// after it.
func (r *Restorer) delete(k []byte, key string) error {
	if err := r.wb.Delete(k); err != nil || r.ws == nil {
		return err
	}
	return r.wb.Delete(r.ws.indexKey([]byte(key)))
}

// stored is the count Badger holds for the data key k, -1 for none.
func (r *Restorer) stored(view *badger.Txn, k []byte) (int64, error) {
	item, err := view.Get(k)
	if errors.Is(err, badger.ErrKeyNotFound) {
		return -1, nil
	}
	var n int64
	if err == nil {
		err = item.Value(func(v []byte) (err error) { n, err = decodeCount(v); return err })
	}
	if err != nil {
		return 0, fmt.Errorf("read the stored count: %w", err)
	}
	return n, nil
}

// take accounts for a record of about n bytes, checking the free space
// first when it has not been checked for a while.
func (r *Restorer) take(n int) error {
	if r.unchecked < 0 || r.unchecked >= spaceCheckBytes {
		if err := r.p.space.check(); err != nil {
			return fmt.Errorf("restore %s: %w", r.what, err)
		}
		r.unchecked = 0
	}
	r.unchecked += n + 32 // Badger's entry header and our key prefix
	return nil
}

// Flush writes the chunk and waits until every write is committed.
// Without a Checkpoint after them, the chunk's counts are written but the
// checkpoint stays where it was: a later restore replays them again.
func (r *Restorer) Flush() error {
	if err := r.writeChunk(); err != nil {
		return err
	}
	if err := r.wb.Flush(); err != nil {
		return fmt.Errorf("restore %s: %w", r.what, err)
	}
	return nil
}

// Cancel drops the writes not yet committed and waits for those under way.
func (r *Restorer) Cancel() {
	clear(r.chunk)
	r.wb.Cancel()
	_ = r.waitCommitted() // a checkpointed chunk is kept: it is complete
}
