package store

import (
	"bytes"
	"errors"
	"fmt"
	stdmaps "maps"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/dgraph-io/badger/v4"
)

// NoCheckpoint is the checkpoint of a partition that has none yet.
const NoCheckpoint int64 = -1

// Partition is the store of one task: its counts and its checkpoint, and
// its windowed stores (Windowed). Get, Checkpoint and Scan may run
// concurrently with each other and with one writer calling Commit or Wipe.
type Partition struct {
	db            *badger.DB
	space         *space
	id            int32
	keyPrefix     []byte
	checkpointKey []byte
	// wipes counts the starts and ends of the partition's wipes (odd
	// while one runs), shared by every Partition value of the same task:
	// a snapshot read across a wipe fails (see WriteSnapshot).
	wipes *atomic.Uint64
}

// Batch is what one commit writes to a partition.
type Batch struct {
	// Counts are the new values by key.
	Counts map[string]int64
	// Deletes are keys removed (a changelog tombstone).
	Deletes []string
	// Checkpoint is the changelog offset these values are complete up to.
	Checkpoint int64
	// Windowed are the writes to the task's windowed stores, by store
	// name; a store not named keeps its windows, checkpoint and stream
	// time as they are.
	Windowed map[string]WindowedBatch
}

// WindowedBatch is what one commit writes to one windowed store.
type WindowedBatch struct {
	// Puts are the new counts by window key (EncodeWindowKey).
	Puts map[string]int64
	// Deletes are window keys removed (a changelog tombstone: a session
	// merged into another). A key both put and deleted is deleted.
	Deletes []string
	// Checkpoint is the offset of the store's own changelog these windows
	// are complete up to (>= 0).
	Checkpoint int64
	// StreamTime is the store's stream time as of the batch, epoch
	// milliseconds, or NoStreamTime.
	StreamTime int64
}

// ID is the partition (task) number.
func (p *Partition) ID() int32 { return p.id }

func (p *Partition) dataKey(key []byte) []byte {
	k := make([]byte, 0, len(p.keyPrefix)+len(key))
	return append(append(k, p.keyPrefix...), key...)
}

// Get returns the count of key, and whether the key exists.
func (p *Partition) Get(key []byte) (int64, bool, error) {
	var n int64
	var found bool
	err := p.db.View(func(txn *badger.Txn) (err error) {
		n, found, err = p.get(txn, key)
		return err
	})
	return n, found, err
}

// GetIn is Get as of the snapshot.
func (p *Partition) GetIn(s *Snapshot, key []byte) (int64, bool, error) {
	if s.txn == nil {
		s.txn = s.db.NewTransaction(false)
	}
	return p.get(s.txn, key)
}

func (p *Partition) get(txn *badger.Txn, key []byte) (int64, bool, error) {
	item, err := txn.Get(p.dataKey(key))
	if errors.Is(err, badger.ErrKeyNotFound) {
		return 0, false, nil
	}
	var n int64
	if err == nil {
		err = item.Value(func(v []byte) (err error) { n, err = decodeCount(v); return err })
	}
	if err != nil {
		return 0, false, fmt.Errorf("get key in partition %d: %w", p.id, err)
	}
	return n, true, nil
}

// Snapshot is a view of every partition as of its first read, for a
// reader that reads many keys one at a time: a Badger transaction per
// read costs two hand-offs to Badger's watermark goroutine, which in the
// processor's loop cost more than the reads. It sees no write made after
// its first read until Refresh. A Snapshot is used by one goroutine.
type Snapshot struct {
	db  *badger.DB
	txn *badger.Txn
}

// Snapshot starts a snapshot reader; it opens its view at its first read.
func (d *DB) Snapshot() *Snapshot { return &Snapshot{db: d.db} }

// Refresh makes the next read see every write committed before it. It
// also ends the snapshot's view until then, so a reader done with it
// calls Refresh before the database closes.
func (s *Snapshot) Refresh() {
	if s.txn != nil {
		s.txn.Discard()
		s.txn = nil
	}
}

// Checkpoint returns the changelog offset the partition is complete up to,
// or NoCheckpoint.
func (p *Partition) Checkpoint() (int64, error) {
	cp := NoCheckpoint
	err := p.db.View(func(txn *badger.Txn) (err error) {
		cp, err = p.checkpointIn(txn)
		return err
	})
	if err != nil {
		return NoCheckpoint, err
	}
	return cp, nil
}

// checkpointIn is Checkpoint as of txn.
func (p *Partition) checkpointIn(txn *badger.Txn) (int64, error) {
	item, err := txn.Get(p.checkpointKey)
	if errors.Is(err, badger.ErrKeyNotFound) {
		return NoCheckpoint, nil
	}
	cp := NoCheckpoint
	if err == nil {
		err = item.Value(func(v []byte) (err error) { cp, err = decodeCount(v); return err })
	}
	if err != nil {
		return NoCheckpoint, fmt.Errorf("read checkpoint of partition %d: %w", p.id, err)
	}
	return cp, nil
}

// Commit writes the batch's values and its checkpoint, with the writes,
// checkpoints and stream times of its windowed stores, in one Badger
// transaction when it fits (see the package doc for when it does not).
// It writes nothing, and fails with a *DiskFullError, when the disk has
// less free space than the store needs (see space.go); and it writes no
// checkpoint when a windowed store's name, checkpoint, stream time or a
// window key is invalid.
func (p *Partition) Commit(b Batch) error {
	if err := p.space.check(); err != nil {
		return fmt.Errorf("commit partition %d: %w", p.id, err)
	}
	if err := p.commit(b); err != nil {
		return fmt.Errorf("commit partition %d: %w", p.id, err)
	}
	return nil
}

func (p *Partition) commit(b Batch) error {
	// A batch too big for one transaction goes in several, the checkpoints
	// in the last (txnWriter). Keys and values share two allocations:
	// Badger holds on to them until its commit.
	stores := make([]*WindowedStore, 0, len(b.Windowed))
	for _, name := range slices.Sorted(stdmaps.Keys(b.Windowed)) {
		s, err := p.Windowed(name)
		if err != nil {
			return err
		}
		if wb := b.Windowed[name]; wb.Checkpoint < 0 || wb.StreamTime < NoStreamTime {
			return fmt.Errorf("windowed store %q: checkpoint %d, stream time %d: a checkpoint is an offset (>= 0), a stream time >= %d",
				name, wb.Checkpoint, wb.StreamTime, NoStreamTime)
		}
		stores = append(stores, s)
	}
	size, nvalues := 0, len(b.Counts)
	for k := range b.Counts {
		size += len(p.keyPrefix) + len(k)
	}
	for _, k := range b.Deletes {
		size += len(p.keyPrefix) + len(k)
	}
	for _, s := range stores {
		wb := b.Windowed[s.name]
		for k := range wb.Puts {
			size += s.entryKeysBytes(len(k))
		}
		for _, k := range wb.Deletes {
			size += s.entryKeysBytes(len(k))
		}
		nvalues += len(wb.Puts)
	}
	keys := make([]byte, 0, size)
	values := make([]byte, 0, 8*nvalues)
	// key appends prefix, mid and k to keys and returns them as one key.
	key := func(prefix, mid []byte, k string) []byte {
		start := len(keys)
		keys = append(append(append(keys, prefix...), mid...), k...)
		return keys[start:len(keys):len(keys)]
	}
	value := func(n int64) []byte {
		start := len(values)
		values = strconv.AppendInt(values, n, 10)
		return values[start:len(values):len(values)]
	}
	w := &txnWriter{db: p.db, txn: p.db.NewTransaction(true)}
	defer w.discard()
	for k, n := range b.Counts {
		if err := w.write(key(p.keyPrefix, nil, k), value(n)); err != nil {
			return err
		}
	}
	for _, k := range b.Deletes {
		if err := w.write(key(p.keyPrefix, nil, k), nil); err != nil {
			return err
		}
	}
	var end [8]byte
	for _, s := range stores {
		wb := b.Windowed[s.name]
		// The index entry before the window, the window before its index
		// entry's removal (see WindowedStore).
		for k, n := range wb.Puts {
			if err := s.endOf(k, end[:]); err != nil {
				return err
			}
			if err := w.write(key(s.indexPrefix, end[:], k), []byte{}); err != nil {
				return err
			}
			if err := w.write(key(s.dataPrefix, nil, k), value(n)); err != nil {
				return err
			}
		}
		for _, k := range wb.Deletes {
			if err := s.endOf(k, end[:]); err != nil {
				return err
			}
			if err := w.write(key(s.dataPrefix, nil, k), nil); err != nil {
				return err
			}
			if err := w.write(key(s.indexPrefix, end[:], k), nil); err != nil {
				return err
			}
		}
	}
	last := make([][2][]byte, 0, 1+2*len(stores))
	last = append(last, [2][]byte{p.checkpointKey, encodeCount(b.Checkpoint)})
	for _, s := range stores {
		wb := b.Windowed[s.name]
		last = append(last, [2][]byte{s.checkpointKey, encodeCount(wb.Checkpoint)}, [2][]byte{s.streamTimeKey, encodeCount(wb.StreamTime)})
	}
	if err := w.writeLast(last); err != nil {
		return err
	}
	return w.finish()
}

// txnWriter writes one commit in Badger transactions: in one when it
// fits, else in several, each full one committed in the background while
// the next is built, and the last only once all before it are in.
type txnWriter struct {
	db  *badger.DB
	txn *badger.Txn
	// entries and bytes are what txn holds, as Badger counts them or more
	// (see entryBytes): what writeLast needs to know that its entries fit.
	entries, bytes int64
	background     sync.WaitGroup
	mu             sync.Mutex
	failed         error
}

// entryOverhead is what an entry costs a transaction beyond its key and
// value: Badger counts 12 bytes (2 meta bytes, 10 for the version in
// the key); counting more makes writeLast's test err on the safe side.
const entryOverhead = 16

func entryBytes(key, value []byte) int64 { return int64(len(key) + len(value) + entryOverhead) }

// write sets key to value (deletes it for a nil value), going on in a
// new transaction when this one is full.
func (w *txnWriter) write(key, value []byte) error {
	err := setOrDelete(w.txn, key, value)
	if errors.Is(err, badger.ErrTxnTooBig) {
		w.next()
		err = setOrDelete(w.txn, key, value)
	}
	if err != nil {
		return err
	}
	w.entries++
	w.bytes += entryBytes(key, value)
	return nil
}

// next commits the full transaction in the background and starts the next.
func (w *txnWriter) next() {
	w.background.Add(1)
	w.txn.CommitWith(func(err error) {
		if err != nil {
			w.mu.Lock()
			w.failed = errors.Join(w.failed, err)
			w.mu.Unlock()
		}
		w.background.Done()
	})
	w.txn = w.db.NewTransaction(true)
	w.entries, w.bytes = 0, 0
}

// writeLast writes the entries (key, value) all into the last
// transaction: into this one when they fit, else into a new one. The
// checkpoints go so, after every value and together: a store's stream
// time always goes with its checkpoint, and one commit moves every
// store's checkpoint or none (TestCommitWritesTheCheckpointsTogetherLast).
func (w *txnWriter) writeLast(entries [][2][]byte) error {
	n, size := int64(len(entries)), int64(0)
	for _, e := range entries {
		size += entryBytes(e[0], e[1])
	}
	// Badger refuses the entry that brings its count to MaxBatchCount or
	// its size to MaxBatchSize.
	if w.entries > 0 && (w.entries+n >= w.db.MaxBatchCount() || w.bytes+size >= w.db.MaxBatchSize()) {
		w.next()
	}
	for _, e := range entries {
		if err := setOrDelete(w.txn, e[0], e[1]); err != nil {
			return fmt.Errorf("write the checkpoints in the last transaction: %w", err)
		}
	}
	return nil
}

// finish commits the last transaction once every one before it is in.
func (w *txnWriter) finish() error {
	w.background.Wait()
	if w.failed != nil {
		return w.failed
	}
	return w.txn.Commit()
}

// discard drops the last transaction unless finish committed it, and
// waits for those under way.
func (w *txnWriter) discard() {
	w.txn.Discard()
	w.background.Wait()
}

// setOrDelete sets key to value in txn, or deletes it for a nil value.
func setOrDelete(txn *badger.Txn, key, value []byte) error {
	if value == nil {
		return txn.Delete(key)
	}
	return txn.Set(key, value)
}

// Wipe deletes every value and the checkpoint of the partition, and every
// windowed store of it: windows, expiry index, checkpoint and stream time.
//
// It writes a tombstone per key (deleteAll), which compaction then drops.
// Badger's DropPrefix would rewrite the tables instead, faster for many
// keys, but while a drop runs Badger refuses every other write of the
// database with ErrBlockedWrites: the commits, restores and standbys of
// every other partition would fail with it (TestWipeBlocksNoWriter).
// A partition that holds nothing writes nothing.
func (p *Partition) Wipe() error {
	if empty, err := p.empty(); err != nil || empty {
		return err
	}
	p.wipes.Add(1)
	defer p.wipes.Add(1)
	if err := p.deleteAll(); err != nil {
		return fmt.Errorf("wipe partition %d: %w", p.id, err)
	}
	return nil
}

// empty reports whether the partition holds no key at all, checkpoint
// included.
func (p *Partition) empty() (bool, error) {
	empty := true
	err := p.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: p.keyPrefix[:4]})
		defer it.Close()
		it.Rewind()
		empty = !it.Valid()
		return nil
	})
	if err != nil {
		return false, fmt.Errorf("look into partition %d: %w", p.id, err)
	}
	return empty, nil
}

// deleteAll deletes every key of the partition, checkpoints included, with
// a tombstone each; it blocks no other writer. The checkpoints and stream
// times (the meta keys, a few) go last, as a commit writes them last: a
// crash in between leaves values without a checkpoint, which the next
// restore wipes, never a checkpoint without the values it covers.
func (p *Partition) deleteAll() error {
	if err := p.space.check(); err != nil {
		return fmt.Errorf("delete partition %d: %w", p.id, err)
	}
	wb := p.db.NewWriteBatch()
	defer wb.Cancel()
	err := p.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: p.keyPrefix[:4]})
		defer it.Close()
		var meta [][]byte
		for it.Rewind(); it.Valid(); it.Next() {
			k := it.Item().KeyCopy(nil)
			if len(k) > 4 && k[4] == metaTag {
				meta = append(meta, k)
				continue
			}
			if err := wb.Delete(k); err != nil {
				return err
			}
		}
		for _, k := range meta {
			if err := wb.Delete(k); err != nil {
				return err
			}
		}
		return nil
	})
	if err == nil {
		err = wb.Flush()
	}
	if err != nil {
		return fmt.Errorf("delete partition %d: %w", p.id, err)
	}
	return nil
}

// ScanOptions bound a scan: keys with Prefix, From <= key < To (empty: no
// bound), at most Limit entries (0: no limit).
type ScanOptions struct {
	Prefix []byte
	From   []byte
	To     []byte
	Limit  int
}

// Scan calls fn for each key in byte order within the bounds, until fn
// returns false or Limit keys were passed.
func (p *Partition) Scan(o ScanOptions, fn func(key []byte, value int64) bool) error {
	err := p.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{PrefetchValues: true, PrefetchSize: 64, Prefix: p.dataKey(o.Prefix)})
		defer it.Close()
		start := o.Prefix
		if bytes.Compare(o.From, start) > 0 {
			start = o.From
		}
		n := 0
		for it.Seek(p.dataKey(start)); it.Valid(); it.Next() {
			key := it.Item().Key()[len(p.keyPrefix):]
			if len(o.To) > 0 && bytes.Compare(key, o.To) >= 0 {
				return nil
			}
			var v int64
			if err := it.Item().Value(func(b []byte) (err error) { v, err = decodeCount(b); return err }); err != nil {
				return err
			}
			if !fn(append([]byte(nil), key...), v) {
				return nil
			}
			if n++; o.Limit > 0 && n >= o.Limit {
				return nil
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("scan partition %d: %w", p.id, err)
	}
	return nil
}

// Values are stored as decimal strings: the form the changelog and the
// output topic carry, so a value is the same bytes everywhere.
func encodeCount(n int64) []byte { return strconv.AppendInt(nil, n, 10) }

func decodeCount(b []byte) (int64, error) {
	n, err := strconv.ParseInt(string(b), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("decode count %q: %w", b, err)
	}
	return n, nil
}

// EncodeCount is the wire form of a count (changelog, output topic).
func EncodeCount(n int64) []byte { return encodeCount(n) }

// DecodeCount reads the wire form of a count.
func DecodeCount(b []byte) (int64, error) { return decodeCount(b) }
