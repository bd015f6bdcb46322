package store

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"slices"

	"github.com/dgraph-io/badger/v4"
)

// The byte after a key's partition prefix says what the key is (see the
// package doc for the layout).
const (
	countTag  = 'k' // a count of the count store
	metaTag   = 'm' // a checkpoint or a stream time
	windowTag = 'w' // a window of a windowed store
	expiryTag = 'x' // an entry of a windowed store's expiry index
)

// MaxWindowedStoreName bounds a windowed store's name, in bytes: the name
// is in the key of each of its windows, behind one length byte.
const MaxWindowedStoreName = 100

// StreamTimeHeader names the header of a windowed store's changelog
// record that carries the task's stream time as of the record's commit
// (epoch ms, decimal): a restore from the changelog raises the store's
// stream time to the largest it reads (RaiseStreamTime).
const StreamTimeHeader = "abacus.stream.time"

// NoStreamTime is the stream time of a windowed store that has none yet.
const NoStreamTime int64 = -1

// WindowedStore is one windowed store of a task: the counts of its keys'
// windows, an index of them by end for ExpireWindows, and the store's own
// changelog checkpoint and stream time. Its windows are committed with
// the task's counts (Batch.Windowed) and read through it, which is cheap
// to make; any number of them may exist. It is safe for concurrent
// readers with the task's one writer, which alone calls ExpireWindows.
//
// Every window has an index entry: a writer puts the index entry before
// the window and removes the window before its index entry, so a crash
// between two transactions of one write (a commit too big for one, a
// restore's chunk, an expiry) can leave an index entry without its
// window, which an expiry drops like any other, but never a window
// without its index entry, which no expiry would find
// (TestWindowIndexEntryNeverFollowsItsWindow).
type WindowedStore struct {
	p    *Partition
	name string
	// dataPrefix and indexPrefix lead the keys of the store's windows
	// and of its index entries.
	dataPrefix    []byte
	indexPrefix   []byte
	checkpointKey []byte
	streamTimeKey []byte
}

// Windowed returns the windowed store of the task named name (1 to
// MaxWindowedStoreName bytes).
func (p *Partition) Windowed(name string) (*WindowedStore, error) {
	if len(name) == 0 || len(name) > MaxWindowedStoreName {
		return nil, fmt.Errorf("windowed store %q of partition %d: a name has 1 to %d bytes, not %d", name, p.id, MaxWindowedStoreName, len(name))
	}
	prefix := func(tag byte) []byte {
		b := append(bytes.Clone(p.keyPrefix[:4]), tag, byte(len(name)))
		return append(b, name...)
	}
	meta := func(what string) []byte {
		b := append(bytes.Clone(p.keyPrefix[:4]), metaTag)
		return append(append(b, what+"/"...), name...)
	}
	return &WindowedStore{
		p: p, name: name, dataPrefix: prefix(windowTag), indexPrefix: prefix(expiryTag),
		checkpointKey: meta("checkpoint"), streamTimeKey: meta("streamtime"),
	}, nil
}

// Name is the store's name.
func (s *WindowedStore) Name() string { return s.name }

// what names the store in errors.
func (s *WindowedStore) what() string {
	return fmt.Sprintf("windowed store %q of partition %d", s.name, s.p.id)
}

// entryKeysBytes is the bytes of the keys of a window with a window key of
// n bytes: the window's and its index entry's.
func (s *WindowedStore) entryKeysBytes(n int) int {
	return len(s.dataPrefix) + n + len(s.indexPrefix) + 8 + n
}

// endOf checks the window key k and puts its end into end (8 bytes), as
// its index entry's key has it.
func (s *WindowedStore) endOf(k string, end []byte) error {
	if _, _, _, err := parseWindowKey(k); err != nil {
		return fmt.Errorf("%s: window key %q: %w", s.what(), k, err)
	}
	binary.BigEndian.PutUint64(end, uint64(windowKeyEnd(k)))
	return nil
}

// dataKey is the key of the window with the window key k.
func (s *WindowedStore) dataKey(k []byte) []byte {
	return append(append(make([]byte, 0, len(s.dataPrefix)+len(k)), s.dataPrefix...), k...)
}

// indexKey is the key of the index entry of the window key k, which
// parseWindowKey took.
func (s *WindowedStore) indexKey(k []byte) []byte {
	b := append(make([]byte, 0, len(s.indexPrefix)+8+len(k)), s.indexPrefix...)
	return append(binary.BigEndian.AppendUint64(b, uint64(windowKeyEnd(k))), k...)
}

// Checkpoint returns the offset of the store's changelog its windows are
// complete up to, or NoCheckpoint.
func (s *WindowedStore) Checkpoint() (int64, error) {
	cp, err := s.readMeta(s.checkpointKey, NoCheckpoint)
	if err != nil {
		return NoCheckpoint, fmt.Errorf("read the checkpoint of %s: %w", s.what(), err)
	}
	return cp, nil
}

// StreamTime returns the store's stream time as of its last commit, or
// NoStreamTime. A restore from the changelog does not write it (the
// changelog does not carry it), a peer snapshot does.
func (s *WindowedStore) StreamTime() (int64, error) {
	t, err := s.readMeta(s.streamTimeKey, NoStreamTime)
	if err != nil {
		return NoStreamTime, fmt.Errorf("read the stream time of %s: %w", s.what(), err)
	}
	return t, nil
}

// readMeta reads the number under key, none if there is none.
func (s *WindowedStore) readMeta(key []byte, none int64) (n int64, err error) {
	err = s.p.db.View(func(txn *badger.Txn) error {
		n, err = metaIn(txn, key, none)
		return err
	})
	if err != nil {
		return none, err
	}
	return n, nil
}

// metaIn is readMeta as of txn.
func metaIn(txn *badger.Txn, key []byte, none int64) (int64, error) {
	item, err := txn.Get(key)
	if errors.Is(err, badger.ErrKeyNotFound) {
		return none, nil
	}
	n := none
	if err == nil {
		err = item.Value(func(v []byte) (err error) { n, err = decodeCount(v); return err })
	}
	return n, err
}

// Mark is where a read of a windowed store stands: the checkpoint and
// the stream time of the view it read.
type Mark struct {
	// Checkpoint is the offset of the store's changelog the windows read
	// hold every record of, or NoCheckpoint. A commit writes its
	// checkpoints in its last transaction (TestCommitWritesTheCheckpointsTogetherLast),
	// so a view holds every window of the batches up to its checkpoint,
	// and perhaps some of the next one's.
	Checkpoint int64
	// StreamTime is the store's stream time, or NoStreamTime.
	StreamTime int64
}

// GetWindowsAt returns every window of key, ascending by start then end,
// and the Mark of the same view: a live stream that starts with them
// needs no update at or below the checkpoint (TestWindowsAtReadOneView).
func (s *WindowedStore) GetWindowsAt(key []byte) (ws []WindowCount, m Mark, err error) {
	err = s.p.db.View(func(txn *badger.Txn) (err error) {
		if m, err = s.markIn(txn); err != nil {
			return err
		}
		ws, err = s.getWindows(txn, key, 0, math.MaxInt64)
		return err
	})
	if err != nil {
		return nil, Mark{NoCheckpoint, NoStreamTime}, fmt.Errorf("read the windows of a key in %s: %w", s.what(), err)
	}
	return ws, m, nil
}

// ScanWindowsAt is ScanWindows with the Mark of the view it reads, handed
// to fn with each window (so that fn can drop the expired ones before
// they count against its limit) and returned.
func (s *WindowedStore) ScanWindowsAt(o WindowScanOptions, fn func(Mark, WindowCount) bool) (m Mark, err error) {
	err = s.p.db.View(func(txn *badger.Txn) (err error) {
		if m, err = s.markIn(txn); err != nil {
			return err
		}
		return s.scanWindows(txn, o, func(wc WindowCount) bool { return fn(m, wc) })
	})
	if err != nil {
		return Mark{NoCheckpoint, NoStreamTime}, fmt.Errorf("scan %s: %w", s.what(), err)
	}
	return m, nil
}

func (s *WindowedStore) markIn(txn *badger.Txn) (m Mark, err error) {
	if m.Checkpoint, err = metaIn(txn, s.checkpointKey, NoCheckpoint); err != nil {
		return m, err
	}
	m.StreamTime, err = metaIn(txn, s.streamTimeKey, NoStreamTime)
	return m, err
}

// GetWindows returns the windows of key whose start lies in [from, to),
// ascending by start, then end, with their counts.
func (s *WindowedStore) GetWindows(key []byte, from, to int64) ([]WindowCount, error) {
	var out []WindowCount
	err := s.p.db.View(func(txn *badger.Txn) (err error) {
		out, err = s.getWindows(txn, key, from, to)
		return err
	})
	return out, err
}

// GetWindowsIn is GetWindows as of the snapshot.
func (s *WindowedStore) GetWindowsIn(snap *Snapshot, key []byte, from, to int64) ([]WindowCount, error) {
	if snap.txn == nil {
		snap.txn = snap.db.NewTransaction(false)
	}
	return s.getWindows(snap.txn, key, from, to)
}

func (s *WindowedStore) getWindows(txn *badger.Txn, key []byte, from, to int64) ([]WindowCount, error) {
	from = max(from, 0)
	if to <= from {
		return nil, nil
	}
	prefix := appendWindowKeyPrefix(bytes.Clone(s.dataPrefix), key)
	it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix})
	defer it.Close()
	var out []WindowCount
	for it.Seek(binary.BigEndian.AppendUint64(prefix[:len(prefix):len(prefix)], uint64(from))); it.Valid(); it.Next() {
		wc, err := s.window(it.Item())
		if err != nil {
			return nil, fmt.Errorf("get the windows of a key in %s: %w", s.what(), err)
		}
		if wc.Start >= to {
			break
		}
		out = append(out, wc)
	}
	return out, nil
}

// window reads the window and count of an item of the store.
func (s *WindowedStore) window(item *badger.Item) (WindowCount, error) {
	w, err := DecodeWindowKey(item.Key()[len(s.dataPrefix):])
	if err != nil {
		return WindowCount{}, err
	}
	wc := WindowCount{Window: w}
	err = item.Value(func(v []byte) (err error) { wc.Count, err = decodeCount(v); return err })
	return wc, err
}

// WindowScanOptions bound a scan of a windowed store: windows whose key
// has Prefix and lies in From <= key < To (empty To: no bound), whose
// start lies in StartFrom <= start < StartTo (0 StartTo: no bound), and
// whose window key is above After (a cursor: the window key of the last
// window of the page before; empty: from the first), at most Limit (0:
// no limit).
type WindowScanOptions struct {
	Prefix    []byte
	From      []byte
	To        []byte
	StartFrom int64
	StartTo   int64
	After     []byte
	Limit     int
}

// ScanWindows calls fn for each window within the bounds in the order of
// (key, start, end), the order of window keys, until fn returns false or
// Limit windows were passed; each call reads one Badger transaction. The
// next page of a scan cut at Limit is the same scan with After set to
// EncodeWindowKey of the last window passed: pages neither skip nor
// repeat a window that no write added or removed between them
// (TestScanWindowsPages). Start bounds skip, by a seek per key, the
// windows of a key outside them.
func (s *WindowedStore) ScanWindows(o WindowScanOptions, fn func(WindowCount) bool) error {
	err := s.p.db.View(func(txn *badger.Txn) error { return s.scanWindows(txn, o, fn) })
	if err != nil {
		return fmt.Errorf("scan %s: %w", s.what(), err)
	}
	return nil
}

// scanWindows is ScanWindows as of txn.
func (s *WindowedStore) scanWindows(txn *badger.Txn, o WindowScanOptions, fn func(WindowCount) bool) error {
	startFrom := max(o.StartFrom, 0)
	if o.StartTo > 0 && startFrom >= o.StartTo {
		return nil
	}
	base := s.dataPrefix
	// Each window key of a key with o.Prefix begins with these bytes;
	// those of the keys from o.From on are at or after the like ones
	// of o.From (see windowkey.go).
	prefix := appendEscapedKey(append(bytes.Clone(base), windowKeyV1), o.Prefix)
	seek := prefix
	if len(o.From) > 0 {
		if from := appendEscapedKey(append(bytes.Clone(base), windowKeyV1), o.From); bytes.Compare(from, seek) > 0 {
			seek = from
		}
	}
	if len(o.After) > 0 {
		// The least bytes above After.
		if after := append(append(bytes.Clone(base), o.After...), 0x00); bytes.Compare(after, seek) > 0 {
			seek = after
		}
	}
	it := txn.NewIterator(badger.IteratorOptions{PrefetchValues: true, PrefetchSize: 64, Prefix: prefix})
	defer it.Close()
	n := 0
	for it.Seek(seek); it.Valid(); {
		wk := it.Item().Key()[len(base):]
		keyEnd, start, _, err := parseWindowKey(wk)
		if err != nil {
			return err
		}
		switch {
		case start < startFrom:
			// On to this key's first window from startFrom.
			it.Seek(binary.BigEndian.AppendUint64(append(bytes.Clone(base), wk[:keyEnd+2]...), uint64(startFrom)))
			continue
		case o.StartTo > 0 && start >= o.StartTo:
			// On to the next key: its windows' keys go on from this
			// key's escaped bytes with 0x00 0xFF or a byte above 0x00,
			// after this key's windows' 0x00 0x01.
			it.Seek(append(append(bytes.Clone(base), wk[:keyEnd]...), 0x00, 0x02))
			continue
		}
		wc, err := s.window(it.Item())
		if err != nil {
			return err
		}
		if len(o.To) > 0 && bytes.Compare(wc.Key, o.To) >= 0 {
			return nil
		}
		if !fn(wc) {
			return nil
		}
		if n++; o.Limit > 0 && n >= o.Limit {
			return nil
		}
		it.Next()
	}
	return nil
}

// ExpireWindows deletes every window of the store that ends at or before
// cutoff, with its index entry, and returns how many it removed (an
// index entry a crash left without its window counts too). It finds
// them through the index, reading no other window, and deletes them
// with a tombstone each in transactions of Badger's size, committed as
// they fill: like a wipe, it blocks no other writer (see Wipe). It writes
// nothing to the changelog, which keeps its windows until its retention
// drops them; a restore that brings one back puts its index entry too,
// and the next expiry removes it again. It is the task writer's: a
// commit of a window it removes at the same time could leave the window
// without its index entry.
func (s *WindowedStore) ExpireWindows(cutoff int64) (int, error) {
	if cutoff < 0 {
		return 0, nil
	}
	if err := s.p.space.check(); err != nil {
		return 0, fmt.Errorf("expire windows of %s: %w", s.what(), err)
	}
	wb := s.p.db.NewWriteBatch()
	defer wb.Cancel()
	removed := 0
	err := s.p.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: s.indexPrefix})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			k := it.Item().Key()
			if len(k) < len(s.indexPrefix)+8 {
				return fmt.Errorf("an index entry of %d bytes", len(k))
			}
			if int64(binary.BigEndian.Uint64(k[len(s.indexPrefix):])) > cutoff {
				return nil
			}
			if err := wb.Delete(s.dataKey(k[len(s.indexPrefix)+8:])); err != nil {
				return err
			}
			if err := wb.Delete(it.Item().KeyCopy(nil)); err != nil {
				return err
			}
			removed++
		}
		return nil
	})
	if err == nil {
		err = wb.Flush()
	}
	if err != nil {
		return 0, fmt.Errorf("expire windows of %s: %w", s.what(), err)
	}
	return removed, nil
}

// WindowsEndingIn calls fn, as of the snapshot, for each window of the
// store whose end lies in (after, upTo], in the order of their ends,
// until fn returns false. It reads them through the expiry index: the
// windows a rise of stream time closes are those whose end passed the
// close line, and emitting their finals reads no other window
// (TestWindowsEndingIn). An index entry a crash left without its window
// is skipped.
func (s *WindowedStore) WindowsEndingIn(snap *Snapshot, after, upTo int64, fn func(WindowCount) bool) error {
	if upTo <= after || upTo < 0 {
		return nil
	}
	if snap.txn == nil {
		snap.txn = snap.db.NewTransaction(false)
	}
	txn := snap.txn
	it := txn.NewIterator(badger.IteratorOptions{Prefix: s.indexPrefix})
	defer it.Close()
	seek := binary.BigEndian.AppendUint64(bytes.Clone(s.indexPrefix), uint64(max(after+1, 0)))
	for it.Seek(seek); it.Valid(); it.Next() {
		k := it.Item().Key()
		if len(k) < len(s.indexPrefix)+8 {
			return fmt.Errorf("scan the windows ending in (%d, %d] of %s: an index entry of %d bytes", after, upTo, s.what(), len(k))
		}
		if int64(binary.BigEndian.Uint64(k[len(s.indexPrefix):])) > upTo {
			return nil
		}
		item, err := txn.Get(s.dataKey(k[len(s.indexPrefix)+8:]))
		if errors.Is(err, badger.ErrKeyNotFound) {
			continue
		}
		if err != nil {
			return fmt.Errorf("scan the windows ending in (%d, %d] of %s: %w", after, upTo, s.what(), err)
		}
		wc, err := s.window(item)
		if err != nil {
			return fmt.Errorf("scan the windows ending in (%d, %d] of %s: %w", after, upTo, s.what(), err)
		}
		if !fn(wc) {
			return nil
		}
	}
	return nil
}

// RaiseStreamTime sets the store's stream time to t unless it is at t or
// beyond already: a restore from the changelog learns the stream time
// from its records' headers, and a store restored onto an older copy
// keeps the later of the two.
func (s *WindowedStore) RaiseStreamTime(t int64) error {
	if t < 0 {
		return nil
	}
	err := s.p.db.Update(func(txn *badger.Txn) error {
		cur := NoStreamTime
		item, err := txn.Get(s.streamTimeKey)
		switch {
		case errors.Is(err, badger.ErrKeyNotFound):
		case err != nil:
			return err
		default:
			if err := item.Value(func(v []byte) (err error) { cur, err = decodeCount(v); return err }); err != nil {
				return err
			}
		}
		if cur >= t {
			return nil
		}
		return txn.Set(s.streamTimeKey, encodeCount(t))
	})
	if err != nil {
		return fmt.Errorf("raise the stream time of %s to %d: %w", s.what(), t, err)
	}
	return nil
}

// GetWindowIn returns the count of the window w as of the snapshot, and
// whether the store has it.
func (s *WindowedStore) GetWindowIn(snap *Snapshot, w Window) (int64, bool, error) {
	if snap.txn == nil {
		snap.txn = snap.db.NewTransaction(false)
	}
	item, err := snap.txn.Get(s.dataKey(EncodeWindowKey(w)))
	if errors.Is(err, badger.ErrKeyNotFound) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, fmt.Errorf("get a window of %s: %w", s.what(), err)
	}
	var n int64
	if err := item.Value(func(v []byte) (err error) { n, err = decodeCount(v); return err }); err != nil {
		return 0, false, fmt.Errorf("get a window of %s: %w", s.what(), err)
	}
	return n, true, nil
}

// SessionsIn returns, as of the snapshot, the windows of key that start
// at or before to and end at or after from, ascending by start: the
// sessions a record may join (window.Spec.SessionRange). It relies on a
// key's sessions never overlapping, so that their ends ascend with their
// starts: it walks back from the last window starting at or before to and
// stops at the first that ends before from, reading one or two windows
// where GetWindowsIn would read every session of the key
// (TestSessionsIn).
func (s *WindowedStore) SessionsIn(snap *Snapshot, key []byte, from, to int64) ([]WindowCount, error) {
	if to < 0 || to < from {
		return nil, nil
	}
	if snap.txn == nil {
		snap.txn = snap.db.NewTransaction(false)
	}
	prefix := appendWindowKeyPrefix(bytes.Clone(s.dataPrefix), key)
	it := snap.txn.NewIterator(badger.IteratorOptions{Prefix: prefix, Reverse: true, PrefetchValues: false})
	defer it.Close()
	seek := binary.BigEndian.AppendUint64(prefix[:len(prefix):len(prefix)], uint64(to))
	seek = binary.BigEndian.AppendUint64(seek, ^uint64(0)>>1)
	var out []WindowCount
	for it.Seek(seek); it.Valid(); it.Next() {
		wc, err := s.window(it.Item())
		if err != nil {
			return nil, fmt.Errorf("get the sessions of a key in %s: %w", s.what(), err)
		}
		if wc.End < from {
			break
		}
		out = append(out, wc)
	}
	slices.Reverse(out)
	return out, nil
}
