package store

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"

	"github.com/dgraph-io/badger/v4"
)

// A peer snapshot is one partition's counts and checkpoint, with its
// windowed stores, as a stream of bytes, for a member that takes a task
// over without a copy of its own (docs/state.md, "Peer snapshots").
// Format version 2, integers big-endian:
//
//	header   magic "abacusSN" (8 bytes), format version (uint16),
//	         partition (uint32), checkpoint (int64)
//	entries  per key, in key order: the key's length plus one (uvarint),
//	         the key, its count (zigzag varint)
//	end      0x00 (a length no entry has)
//	stores   per windowed store that has a checkpoint, in name order: the
//	         name's length (one byte, 1 to 100), the name, the store's
//	         checkpoint (int64) and stream time (int64), then its windows
//	         as entries are, in window key order, keyed by window key,
//	         and an end (0x00)
//	end      0x00 (a length no name has)
//	trailer  the number of entries, counts and windows (uint64), then the
//	         CRC-32C (Castagnoli) of every byte before it (uint32)
//
// Version 1, the format of members without windowed stores, is version 2
// without the stores and their end: the header, the entries, the end and
// the trailer. A partition without a windowed store is written in version
// 1, which carries all of it, so that a member of the previous release
// still reads its snapshots; and a version 1 snapshot is still read.
// A store's windows without a checkpoint of the store (a restore of its
// changelog stopped before its first chunk's checkpoint) are not sent:
// they are complete up to nothing, and the receiver restores that store
// from its changelog's start. Index entries are not sent either: the
// receiver derives each from its window key.
//
// The trailer comes last, so a stream cut off at any byte lacks it; the
// checksum catches a changed byte anywhere before it. A reader checks the
// magic and the version before anything else: a later version may lay
// its bytes out differently, so it is refused, never read as this one.

// SnapshotVersion is the latest snapshot format this build writes and
// reads; it reads every version from 1 on.
const SnapshotVersion uint16 = 2

// snapshotVersionCounts is the format of a snapshot of a partition
// without a windowed store.
const snapshotVersionCounts uint16 = 1

const snapshotMagic = "abacusSN"

// snapshotHeaderBytes: magic, version, partition, checkpoint.
const snapshotHeaderBytes = len(snapshotMagic) + 2 + 4 + 8

// maxSnapshotKey bounds a key in a snapshot: Badger takes no key over
// 65,000 bytes, so a longer length can only be damage, refused before it
// is allocated.
const maxSnapshotKey = 1 << 16

// Errors of peer snapshots; the message around each says where and what.
var (
	// ErrNoCheckpoint: the partition has no checkpoint, so no copy to send:
	// counts without one are complete up to nothing.
	ErrNoCheckpoint = errors.New("partition has no checkpoint")
	// ErrSnapshotWiped: the partition was wiped while its snapshot was read.
	ErrSnapshotWiped = errors.New("partition wiped while its snapshot was read")
	// ErrSnapshotTruncated: the stream ended before its trailer.
	ErrSnapshotTruncated = errors.New("snapshot cut off")
	// ErrSnapshotCorrupt: the stream is not a snapshot, or its checksum,
	// entry count or structure is wrong.
	ErrSnapshotCorrupt = errors.New("snapshot corrupt")
	// ErrSnapshotVersion: a format version this build does not read.
	ErrSnapshotVersion = errors.New("snapshot format version not supported")
	// ErrSnapshotPartition: a snapshot of another partition.
	ErrSnapshotPartition = errors.New("snapshot of another partition")
)

// SnapshotInfo is what a snapshot carried: its partition and checkpoint,
// its entries (counts and windows), of those its windows, and its size in
// bytes.
type SnapshotInfo struct {
	Partition  int32
	Checkpoint int64
	Entries    int64
	Windows    int64
	Bytes      int64
}

// storeMeta is a windowed store's checkpoint and stream time.
type storeMeta struct {
	s                      *WindowedStore
	checkpoint, streamTime int64
}

// windowedStoresIn lists the windowed stores of the partition that have a
// checkpoint as of txn, in name order, with their stream times.
func (p *Partition) windowedStoresIn(txn *badger.Txn) ([]storeMeta, error) {
	prefix := append(append(bytes.Clone(p.keyPrefix[:4]), metaTag), "checkpoint/"...)
	it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix})
	defer it.Close()
	var out []storeMeta
	for it.Rewind(); it.Valid(); it.Next() {
		s, err := p.Windowed(string(it.Item().Key()[len(prefix):]))
		if err != nil {
			return nil, err
		}
		m := storeMeta{s: s, streamTime: NoStreamTime}
		if err := it.Item().Value(func(v []byte) (err error) { m.checkpoint, err = decodeCount(v); return err }); err != nil {
			return nil, fmt.Errorf("read the checkpoint of %s: %w", s.what(), err)
		}
		item, err := txn.Get(s.streamTimeKey)
		if err == nil {
			err = item.Value(func(v []byte) (err error) { m.streamTime, err = decodeCount(v); return err })
		}
		if err != nil && !errors.Is(err, badger.ErrKeyNotFound) {
			return nil, fmt.Errorf("read the stream time of %s: %w", s.what(), err)
		}
		out = append(out, m)
	}
	return out, nil
}

// WriteSnapshot writes the partition's counts and checkpoint to w, with
// the windows, checkpoint and stream time of each of its windowed stores
// that has a checkpoint, read in one Badger transaction: a consistent copy
// as of its checkpoints (values past a checkpoint that a commit in several
// transactions left are rewritten by the changelog from checkpoint+1, see
// the package doc). It
// fails, having written nothing, with ErrNoCheckpoint for a partition
// without a checkpoint. A wipe that runs at any time during the read
// fails the snapshot with ErrSnapshotWiped before its trailer, and the
// reader takes it for a cut one (TestSnapshotOfAPartitionWipedMeanwhileFails):
// the read transaction would still see the copy as it was, but a copy
// being wiped is one this member no longer keeps up to date.
func (p *Partition) WriteSnapshot(w io.Writer) (SnapshotInfo, error) {
	info := SnapshotInfo{Partition: p.id}
	fail := func(err error) (SnapshotInfo, error) {
		return info, fmt.Errorf("snapshot of partition %d: %w", p.id, err)
	}
	wipes := p.wipes.Load()
	if wipes%2 == 1 {
		return fail(ErrSnapshotWiped)
	}
	txn := p.db.NewTransaction(false)
	defer txn.Discard()
	cp, err := p.checkpointIn(txn)
	if err != nil {
		return fail(err)
	}
	if cp == NoCheckpoint {
		return fail(ErrNoCheckpoint)
	}
	info.Checkpoint = cp
	stores, err := p.windowedStoresIn(txn)
	if err != nil {
		return fail(err)
	}
	version := SnapshotVersion
	if len(stores) == 0 {
		version = snapshotVersionCounts
	}
	sw := &snapshotWriter{w: bufio.NewWriterSize(w, 64<<10)}
	sw.header(version, p.id, cp)
	// entries writes the entries under prefix, keyed by what follows it.
	entries := func(prefix []byte) error {
		it := txn.NewIterator(badger.IteratorOptions{PrefetchValues: true, PrefetchSize: 256, Prefix: prefix})
		defer it.Close()
		for it.Rewind(); it.Valid() && sw.err == nil; it.Next() {
			var n int64
			if err := it.Item().Value(func(v []byte) (err error) { n, err = decodeCount(v); return err }); err != nil {
				return err
			}
			sw.entry(it.Item().Key()[len(prefix):], n)
			info.Entries++
		}
		return nil
	}
	if err := entries(p.keyPrefix); err != nil {
		return fail(err)
	}
	if version >= 2 {
		sw.end()
		for _, m := range stores {
			sw.store(m.s.name, m.checkpoint, m.streamTime)
			before := info.Entries
			if err := entries(m.s.dataPrefix); err != nil {
				return fail(fmt.Errorf("%s: %w", m.s.what(), err))
			}
			info.Windows += info.Entries - before
			sw.end()
		}
	}
	if sw.err != nil {
		return fail(fmt.Errorf("write: %w", sw.err))
	}
	if p.wipes.Load() != wipes {
		return fail(ErrSnapshotWiped)
	}
	sw.trailer(info.Entries)
	if err := sw.flush(); err != nil {
		return fail(fmt.Errorf("write: %w", err))
	}
	info.Bytes = sw.n
	return info, nil
}

// ReadSnapshot fills the partition, which must have no checkpoint, from a
// snapshot (WriteSnapshot's, of any version), and returns what it carried.
// It writes the counts and windows as they arrive (each window's index
// entry first), and the snapshot's checkpoints and stream times only
// after the whole stream is verified, all in one transaction, so on any
// failure the partition is left without a checkpoint; it then deletes
// what it wrote, and what it could not delete is to be wiped (restore
// does). Whatever the partition held without a checkpoint, windowed
// stores included, goes first.
//
// The counts are written as they are, not keeping the larger of a stored
// one as an at-least-once restore does (NewRestorerKeepingMax): the slice
// is emptied first (TestSnapshotReplacesCountsLeftWithoutACheckpoint),
// since counts left without a checkpoint (a restore
// stopped before its first chunk's checkpoint) may hold a key deleted
// since, whose tombstone the changelog from the snapshot's checkpoint on
// no longer carries. An empty slice has nothing to compare with, and the
// copy is already what the sender's own rules made of the changelog up
// to its checkpoint (the larger count kept under at-least-once); the
// restore from checkpoint+1 then compares with it as with any checkpoint.
func (p *Partition) ReadSnapshot(r io.Reader) (SnapshotInfo, error) {
	info := SnapshotInfo{Partition: p.id}
	sr := &snapshotReader{r: bufio.NewReaderSize(r, 64<<10)}
	fail := func(err error) (SnapshotInfo, error) {
		info.Bytes = sr.n
		return info, fmt.Errorf("read snapshot into partition %d: %w", p.id, err)
	}
	if cp, err := p.Checkpoint(); err != nil {
		return fail(err)
	} else if cp != NoCheckpoint {
		return fail(fmt.Errorf("the partition has a checkpoint (%d): a snapshot only fills one without", cp))
	}
	version, cp, err := sr.header(p.id)
	if err != nil {
		return fail(err)
	}
	info.Checkpoint = cp
	if empty, err := p.empty(); err != nil {
		return fail(err)
	} else if !empty {
		if err := p.deleteAll(); err != nil {
			return fail(err)
		}
	}
	wb := p.db.NewWriteBatch()
	defer wb.Cancel() // waits for the commits under way; a no-op after Flush
	// A snapshot refused deletes what it wrote: the restore's wipe then
	// finds nothing to drop, and blocks no other writer (see Wipe).
	fail = func(err error) (SnapshotInfo, error) {
		wb.Cancel()
		info.Bytes = sr.n
		err = fmt.Errorf("read snapshot into partition %d: %w", p.id, err)
		if derr := p.deleteAll(); derr != nil {
			err = errors.Join(err, derr)
		}
		return info, err
	}
	unchecked := spaceCheckBytes
	// entries writes the entries up to their end, into the windowed store
	// s, or the counts for nil.
	entries := func(s *WindowedStore) error {
		for {
			key, n, ok, err := sr.entry()
			if err != nil || !ok {
				return err
			}
			if unchecked += len(key) + 32; unchecked >= spaceCheckBytes {
				if err := p.space.check(); err != nil {
					return err
				}
				unchecked = 0
			}
			// Badger holds on to the keys and values until it commits them.
			if s == nil {
				err = wb.Set(p.dataKey(key), encodeCount(n))
			} else if _, _, _, err = parseWindowKey(key); err != nil {
				return corrupt("%s: a window key after %d bytes: %v", s.what(), sr.n, err)
			} else if err = wb.Set(s.indexKey(key), []byte{}); err == nil {
				err = wb.Set(s.dataKey(key), encodeCount(n))
				info.Windows++
			}
			if err != nil {
				return err
			}
			info.Entries++
		}
	}
	if err := entries(nil); err != nil {
		return fail(err)
	}
	var stores []storeMeta
	for version >= 2 {
		m, ok, err := sr.store(p, stores)
		if err != nil {
			return fail(err)
		}
		if !ok {
			break
		}
		if err := entries(m.s); err != nil {
			return fail(err)
		}
		stores = append(stores, m)
	}
	if err := sr.trailer(info.Entries); err != nil {
		return fail(err)
	}
	if err := wb.Flush(); err != nil {
		return fail(err)
	}
	// The checkpoints last, once every value is in, together: a crash
	// before them leaves values without one, which the next restore wipes.
	err = p.db.Update(func(txn *badger.Txn) error {
		if err := txn.Set(p.checkpointKey, encodeCount(cp)); err != nil {
			return err
		}
		for _, m := range stores {
			if err := txn.Set(m.s.checkpointKey, encodeCount(m.checkpoint)); err != nil {
				return err
			}
			if err := txn.Set(m.s.streamTimeKey, encodeCount(m.streamTime)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fail(err)
	}
	info.Bytes = sr.n
	return info, nil
}

// snapshotWriter writes a snapshot's bytes, keeping their count and
// checksum; its first error sticks.
type snapshotWriter struct {
	w   *bufio.Writer
	crc uint32
	n   int64
	err error
	buf []byte
}

func (s *snapshotWriter) write(b []byte) {
	if s.err != nil {
		return
	}
	s.crc = crc32.Update(s.crc, castagnoli, b)
	s.n += int64(len(b))
	_, s.err = s.w.Write(b)
}

func (s *snapshotWriter) header(version uint16, partition int32, checkpoint int64) {
	b := append(s.buf[:0], snapshotMagic...)
	b = binary.BigEndian.AppendUint16(b, version)
	b = binary.BigEndian.AppendUint32(b, uint32(partition))
	b = binary.BigEndian.AppendUint64(b, uint64(checkpoint))
	s.write(b)
	s.buf = b
}

func (s *snapshotWriter) entry(key []byte, count int64) {
	b := binary.AppendUvarint(s.buf[:0], uint64(len(key))+1)
	b = append(b, key...)
	b = binary.AppendVarint(b, count)
	s.write(b)
	s.buf = b
}

// end ends a run of entries (version 2).
func (s *snapshotWriter) end() { s.write([]byte{0}) }

// store starts a windowed store's part (version 2).
func (s *snapshotWriter) store(name string, checkpoint, streamTime int64) {
	b := append(append(s.buf[:0], byte(len(name))), name...)
	b = binary.BigEndian.AppendUint64(b, uint64(checkpoint))
	b = binary.BigEndian.AppendUint64(b, uint64(streamTime))
	s.write(b)
	s.buf = b
}

func (s *snapshotWriter) trailer(entries int64) {
	s.write(binary.BigEndian.AppendUint64(append(s.buf[:0], 0), uint64(entries)))
	if s.err == nil {
		s.n += 4
		_, s.err = s.w.Write(binary.BigEndian.AppendUint32(s.buf[:0], s.crc))
	}
}

func (s *snapshotWriter) flush() error {
	if s.err != nil {
		return s.err
	}
	return s.w.Flush()
}

// snapshotReader reads a snapshot's bytes, keeping their count and
// checksum.
type snapshotReader struct {
	r   *bufio.Reader
	crc uint32
	n   int64
	one [1]byte
	buf []byte
	// failed is ReadByte's error, told apart from a varint's own.
	failed error
}

// cut names a read error: the end of the stream before the trailer is a
// cut-off snapshot; any other is the transfer's own.
func (s *snapshotReader) cut(err error) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("%w after %d bytes", ErrSnapshotTruncated, s.n)
	}
	return fmt.Errorf("read after %d bytes: %w", s.n, err)
}

func corrupt(format string, a ...any) error {
	return fmt.Errorf("%w: %s", ErrSnapshotCorrupt, fmt.Sprintf(format, a...))
}

// ReadByte makes the reader an io.ByteReader for the varints.
func (s *snapshotReader) ReadByte() (byte, error) {
	b, err := s.r.ReadByte()
	if err != nil {
		s.failed = s.cut(err)
		return 0, s.failed
	}
	s.one[0] = b
	s.crc = crc32.Update(s.crc, castagnoli, s.one[:])
	s.n++
	return b, nil
}

// full reads the next n bytes; they are valid until the next call.
func (s *snapshotReader) full(n int) ([]byte, error) {
	if cap(s.buf) < n {
		s.buf = make([]byte, n)
	}
	b := s.buf[:n]
	got, err := io.ReadFull(s.r, b)
	s.crc = crc32.Update(s.crc, castagnoli, b[:got])
	s.n += int64(got)
	if err != nil {
		return nil, s.cut(err)
	}
	return b, nil
}

// header reads and checks the header, and returns the format version and
// the checkpoint.
func (s *snapshotReader) header(partition int32) (uint16, int64, error) {
	b, err := s.full(snapshotHeaderBytes)
	if err != nil {
		return 0, 0, err
	}
	if magic := string(b[:len(snapshotMagic)]); magic != snapshotMagic {
		return 0, 0, corrupt("not a snapshot: it begins with %q, not %q", magic, snapshotMagic)
	}
	b = b[len(snapshotMagic):]
	v := binary.BigEndian.Uint16(b)
	switch {
	case v > SnapshotVersion:
		return 0, 0, fmt.Errorf("%w: format version %d is newer than version %d, the latest this member reads", ErrSnapshotVersion, v, SnapshotVersion)
	case v < snapshotVersionCounts:
		return 0, 0, fmt.Errorf("%w: format version %d is unknown (this member reads versions %d to %d)", ErrSnapshotVersion, v, snapshotVersionCounts, SnapshotVersion)
	}
	if got := int32(binary.BigEndian.Uint32(b[2:])); got != partition {
		return 0, 0, fmt.Errorf("%w: the snapshot is of partition %d", ErrSnapshotPartition, got)
	}
	cp := int64(binary.BigEndian.Uint64(b[6:]))
	if cp < 0 {
		return 0, 0, corrupt("checkpoint %d", cp)
	}
	return v, cp, nil
}

// store reads the start of a windowed store's part of partition p, after
// the stores before (in name order); ok is false at the end of the
// stores.
func (s *snapshotReader) store(p *Partition, before []storeMeta) (m storeMeta, ok bool, err error) {
	l, err := s.ReadByte()
	switch {
	case err != nil:
		return m, false, err
	case l == 0:
		return m, false, nil
	case l > MaxWindowedStoreName:
		return m, false, corrupt("a windowed store name of %d bytes after %d bytes", l, s.n)
	}
	b, err := s.full(int(l) + 16)
	if err != nil {
		return m, false, err
	}
	name := string(b[:l])
	if len(before) > 0 && before[len(before)-1].s.name >= name {
		return m, false, corrupt("windowed store %q after %q, out of name order", name, before[len(before)-1].s.name)
	}
	if m.s, err = p.Windowed(name); err != nil {
		return m, false, corrupt("%v", err)
	}
	m.checkpoint, m.streamTime = int64(binary.BigEndian.Uint64(b[l:])), int64(binary.BigEndian.Uint64(b[l+8:]))
	if m.checkpoint < 0 || m.streamTime < NoStreamTime {
		return m, false, corrupt("%s: checkpoint %d, stream time %d", m.s.what(), m.checkpoint, m.streamTime)
	}
	return m, true, nil
}

// entry reads the next key and count; ok is false at the end of the
// entries. The key is valid until the next call.
func (s *snapshotReader) entry() (key []byte, count int64, ok bool, err error) {
	l, err := binary.ReadUvarint(s)
	switch {
	case s.failed != nil:
		return nil, 0, false, s.failed
	case err != nil:
		return nil, 0, false, corrupt("a key's length after %d bytes: %v", s.n, err)
	case l == 0:
		return nil, 0, false, nil
	case l-1 > maxSnapshotKey:
		return nil, 0, false, corrupt("a key of %d bytes after %d bytes, over the %d a key may have", l-1, s.n, maxSnapshotKey)
	}
	if key, err = s.full(int(l - 1)); err != nil {
		return nil, 0, false, err
	}
	// Copied: the varint below may refill the buffer the key is in.
	key = append([]byte(nil), key...)
	count, err = binary.ReadVarint(s)
	switch {
	case s.failed != nil:
		return nil, 0, false, s.failed
	case err != nil:
		return nil, 0, false, corrupt("a count after %d bytes: %v", s.n, err)
	}
	return key, count, true, nil
}

// trailer reads the trailer after the end of the entries and checks the
// count of entries read and the checksum, and that nothing follows.
func (s *snapshotReader) trailer(entries int64) error {
	b, err := s.full(8)
	if err != nil {
		return err
	}
	count := binary.BigEndian.Uint64(b)
	want := s.crc
	var sum [4]byte
	got, err := io.ReadFull(s.r, sum[:])
	s.n += int64(got)
	if err != nil {
		return s.cut(err)
	}
	if crc := binary.BigEndian.Uint32(sum[:]); crc != want {
		return corrupt("checksum %08x, but the %d bytes before it sum to %08x", crc, s.n-4, want)
	}
	if count != uint64(entries) {
		return corrupt("the trailer counts %d entries, the stream carried %d", count, entries)
	}
	switch _, err := s.r.ReadByte(); {
	case err == nil:
		return corrupt("bytes after the trailer, at %d", s.n)
	case !errors.Is(err, io.EOF):
		return fmt.Errorf("read after the trailer: %w", err)
	}
	return nil
}
