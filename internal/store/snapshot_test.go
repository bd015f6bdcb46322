package store

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	stdmaps "maps"
	"slices"
	"strings"
	"testing"
)

// commitCounts commits counts with a checkpoint to partition p.
func commitCounts(t *testing.T, p *Partition, counts map[string]int64, checkpoint int64) {
	t.Helper()
	if err := p.Commit(Batch{Counts: counts, Checkpoint: checkpoint}); err != nil {
		t.Fatal(err)
	}
}

// contents is every count of the partition.
func contents(t *testing.T, p *Partition) map[string]int64 {
	t.Helper()
	out := map[string]int64{}
	if err := p.Scan(ScanOptions{}, func(k []byte, v int64) bool { out[string(k)] = v; return true }); err != nil {
		t.Fatal(err)
	}
	return out
}

// snapshotOf writes the snapshot of p.
func snapshotOf(t *testing.T, p *Partition) ([]byte, SnapshotInfo) {
	t.Helper()
	var buf bytes.Buffer
	info, err := p.WriteSnapshot(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if info.Bytes != int64(buf.Len()) {
		t.Fatalf("WriteSnapshot says %d bytes, wrote %d", info.Bytes, buf.Len())
	}
	return buf.Bytes(), info
}

func checkpointOf(t *testing.T, p *Partition) int64 {
	t.Helper()
	cp, err := p.Checkpoint()
	if err != nil {
		t.Fatal(err)
	}
	return cp
}

// smallCounts are a few keys of every shape: empty, binary, UTF-8, long,
// and counts up to the largest.
func smallCounts() map[string]int64 {
	return map[string]int64{
		"": 4, "a": 1, "héllo wörld": 7, "a/b c%d": 2, "\x00\xff\x01": 3,
		strings.Repeat("k", 300): 9, "big": 1 << 62, "max": 1<<63 - 1,
	}
}

func TestSnapshotRoundTrip(t *testing.T) {
	src, dst := newDB(t, t.TempDir()), newDB(t, t.TempDir())
	defer src.Close()
	defer dst.Close()
	want := smallCounts()
	commitCounts(t, src.Partition(3), want, 41)
	// Neighbours on both sides must not leak into the snapshot.
	commitCounts(t, src.Partition(2), map[string]int64{"a": 100, "two": 2}, 7)
	commitCounts(t, src.Partition(4), map[string]int64{"a": 100, "four": 4}, 9)

	b, sent := snapshotOf(t, src.Partition(3))
	if sent != (SnapshotInfo{Partition: 3, Checkpoint: 41, Entries: int64(len(want)), Bytes: int64(len(b))}) {
		t.Errorf("WriteSnapshot = %+v", sent)
	}
	got, err := dst.Partition(3).ReadSnapshot(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	if got != sent {
		t.Errorf("ReadSnapshot = %+v; want %+v", got, sent)
	}
	if c := contents(t, dst.Partition(3)); !stdmaps.Equal(c, want) {
		t.Errorf("partition 3 after the snapshot holds %v; want %v", c, want)
	}
	if cp := checkpointOf(t, dst.Partition(3)); cp != 41 {
		t.Errorf("checkpoint %d after the snapshot, want 41", cp)
	}
	if c := contents(t, dst.Partition(2)); len(c) != 0 {
		t.Errorf("partition 2 got %v from a snapshot of partition 3", c)
	}
}

// The snapshot of a partition with a checkpoint and no key at all (every
// key deleted, or a changelog with no record yet) is a valid copy.
func TestSnapshotOfAnEmptyPartition(t *testing.T) {
	src, dst := newDB(t, t.TempDir()), newDB(t, t.TempDir())
	defer src.Close()
	defer dst.Close()
	commitCounts(t, src.Partition(0), nil, 12)
	b, sent := snapshotOf(t, src.Partition(0))
	if sent.Entries != 0 || sent.Checkpoint != 12 {
		t.Errorf("WriteSnapshot = %+v; want no entries at checkpoint 12", sent)
	}
	got, err := dst.Partition(0).ReadSnapshot(bytes.NewReader(b))
	if err != nil || got != sent {
		t.Fatalf("ReadSnapshot = %+v, %v; want %+v", got, err, sent)
	}
	if cp := checkpointOf(t, dst.Partition(0)); cp != 12 {
		t.Errorf("checkpoint %d, want 12", cp)
	}
}

// A partition without a checkpoint has no copy to give: its counts are
// complete up to nothing. Nothing is written.
func TestSnapshotOfAPartitionWithoutACheckpointIsRefused(t *testing.T) {
	db := newDB(t, t.TempDir())
	defer db.Close()
	var buf bytes.Buffer
	if _, err := db.Partition(1).WriteSnapshot(&buf); !errors.Is(err, ErrNoCheckpoint) || buf.Len() != 0 {
		t.Errorf("WriteSnapshot of a partition without a checkpoint: %v, %d bytes; want ErrNoCheckpoint and none", err, buf.Len())
	}
}

// readRefused reads b into p, which must fail with want and leave p
// without a checkpoint, or any count.
func readRefused(t *testing.T, p *Partition, b []byte, want ...error) error {
	t.Helper()
	_, err := p.ReadSnapshot(bytes.NewReader(b))
	if err == nil {
		t.Fatalf("ReadSnapshot of %d bytes took it", len(b))
	}
	ok := false
	for _, w := range want {
		ok = ok || errors.Is(err, w)
	}
	if !ok {
		t.Fatalf("ReadSnapshot of %d bytes: %v; want one of %v", len(b), err, want)
	}
	if cp := checkpointOf(t, p); cp != NoCheckpoint {
		t.Fatalf("checkpoint %d after a refused snapshot (%v)", cp, err)
	}
	if c := contents(t, p); len(c) != 0 {
		t.Fatalf("%d counts left after a refused snapshot (%v)", len(c), err)
	}
	return err
}

// A snapshot cut off at any byte, whatever it held up to there, is refused
// and leaves no checkpoint; the whole one then reads exactly.
func TestSnapshotCutOffAtEveryByteIsRefused(t *testing.T) {
	src, dst := newDB(t, t.TempDir()), newDB(t, t.TempDir())
	defer src.Close()
	defer dst.Close()
	want := smallCounts()
	commitCounts(t, src.Partition(5), want, 99)
	b, _ := snapshotOf(t, src.Partition(5))
	p := dst.Partition(5)
	for n := range len(b) {
		err := readRefused(t, p, b[:n], ErrSnapshotTruncated)
		if !strings.Contains(err.Error(), fmt.Sprintf("after %d bytes", n)) {
			t.Errorf("cut at %d: %v; want the error to say where", n, err)
		}
	}
	if _, err := p.ReadSnapshot(bytes.NewReader(b)); err != nil {
		t.Fatal(err)
	}
	if c := contents(t, p); !stdmaps.Equal(c, want) {
		t.Errorf("after the cut ones, the whole snapshot gave %v; want %v", c, want)
	}
}

// Any byte changed anywhere is refused: the checksum covers every byte
// before it, and the header is checked before the checksum can be.
func TestSnapshotWithAnyByteFlippedIsRefused(t *testing.T) {
	src, dst := newDB(t, t.TempDir()), newDB(t, t.TempDir())
	defer src.Close()
	defer dst.Close()
	commitCounts(t, src.Partition(5), smallCounts(), 99)
	b, _ := snapshotOf(t, src.Partition(5))
	p := dst.Partition(5)
	for i := range b {
		for _, mask := range []byte{0x01, 0x80, 0xff} {
			flipped := bytes.Clone(b)
			flipped[i] ^= mask
			readRefused(t, p, flipped, ErrSnapshotCorrupt, ErrSnapshotTruncated, ErrSnapshotVersion, ErrSnapshotPartition)
		}
	}
	readRefused(t, p, append(bytes.Clone(b), 0), ErrSnapshotCorrupt)
}

func TestSnapshotOfAnotherPartitionIsRefused(t *testing.T) {
	src, dst := newDB(t, t.TempDir()), newDB(t, t.TempDir())
	defer src.Close()
	defer dst.Close()
	commitCounts(t, src.Partition(1), smallCounts(), 5)
	b, _ := snapshotOf(t, src.Partition(1))
	err := readRefused(t, dst.Partition(2), b, ErrSnapshotPartition)
	if !strings.Contains(err.Error(), "partition 1") || !strings.Contains(err.Error(), "partition 2") {
		t.Errorf("error %q; want it to name both partitions", err)
	}
	if c := contents(t, dst.Partition(2)); len(c) != 0 {
		t.Errorf("partition 2 holds %v after refusing partition 1's snapshot", c)
	}
}

// A snapshot of a later format is refused with both versions named, never
// read as this one; so is a stream that is no snapshot at all (an error
// page).
func TestSnapshotOfANewerFormatIsRefused(t *testing.T) {
	src, dst := newDB(t, t.TempDir()), newDB(t, t.TempDir())
	defer src.Close()
	defer dst.Close()
	commitCounts(t, src.Partition(0), smallCounts(), 5)
	b, _ := snapshotOf(t, src.Partition(0))
	binary.BigEndian.PutUint16(b[len(snapshotMagic):], SnapshotVersion+1)
	err := readRefused(t, dst.Partition(0), b, ErrSnapshotVersion)
	newer, latest := fmt.Sprintf("version %d", SnapshotVersion+1), fmt.Sprintf("version %d", SnapshotVersion)
	if !strings.Contains(err.Error(), newer) || !strings.Contains(err.Error(), latest) {
		t.Errorf("error %q; want it to name %s and %s", err, newer, latest)
	}
	readRefused(t, dst.Partition(0), []byte(`{"error":{"code":"internal","message":"oops"}}`), ErrSnapshotCorrupt)
}

// A partition that has a checkpoint is never overwritten by a snapshot.
func TestSnapshotIntoAPartitionWithACheckpointIsRefused(t *testing.T) {
	src, dst := newDB(t, t.TempDir()), newDB(t, t.TempDir())
	defer src.Close()
	defer dst.Close()
	commitCounts(t, src.Partition(0), smallCounts(), 5)
	b, _ := snapshotOf(t, src.Partition(0))
	mine := map[string]int64{"mine": 1}
	commitCounts(t, dst.Partition(0), mine, 3)
	if _, err := dst.Partition(0).ReadSnapshot(bytes.NewReader(b)); err == nil {
		t.Fatal("ReadSnapshot over a partition with a checkpoint took it")
	}
	if c, cp := contents(t, dst.Partition(0)), checkpointOf(t, dst.Partition(0)); !stdmaps.Equal(c, mine) || cp != 3 {
		t.Errorf("partition holds %v at checkpoint %d; want %v at 3, untouched", c, cp, mine)
	}
}

// Counts left without a checkpoint (a restore stopped before its first
// checkpoint) go before the snapshot's come in: one of them may be a key
// deleted since, whose tombstone the changelog past the snapshot's
// checkpoint no longer carries.
func TestSnapshotReplacesCountsLeftWithoutACheckpoint(t *testing.T) {
	src, dst := newDB(t, t.TempDir()), newDB(t, t.TempDir())
	defer src.Close()
	defer dst.Close()
	want := smallCounts()
	commitCounts(t, src.Partition(0), want, 5)
	b, _ := snapshotOf(t, src.Partition(0))
	w := dst.Partition(0).NewRestorer()
	for k, v := range map[string]string{"deleted-since": "3", "a": "1000"} {
		if err := w.Put([]byte(k), []byte(v)); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	if _, err := dst.Partition(0).ReadSnapshot(bytes.NewReader(b)); err != nil {
		t.Fatal(err)
	}
	if c := contents(t, dst.Partition(0)); !stdmaps.Equal(c, want) {
		t.Errorf("partition holds %v; want the snapshot's %v alone", c, want)
	}
}

func TestSnapshotOfOneHundredThousandKeys(t *testing.T) {
	src, dst := newDB(t, t.TempDir()), newDB(t, t.TempDir())
	defer src.Close()
	defer dst.Close()
	want := make(map[string]int64, 100_000)
	for i := range 100_000 {
		want[fmt.Sprintf("user-%07d", i)] = int64(i%977 + 1)
	}
	commitCounts(t, src.Partition(7), want, 123_456)
	var buf bytes.Buffer
	sent, err := src.Partition(7).WriteSnapshot(&buf)
	if err != nil {
		t.Fatal(err)
	}
	got, err := dst.Partition(7).ReadSnapshot(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if got != sent || got.Entries != 100_000 || got.Checkpoint != 123_456 {
		t.Errorf("sent %+v, read %+v; want 100000 entries at checkpoint 123456", sent, got)
	}
	if c := contents(t, dst.Partition(7)); !stdmaps.Equal(c, want) {
		t.Errorf("partition holds %d keys, want the %d sent with their counts", len(c), len(want))
	}
	t.Logf("100,000 keys: %d bytes", sent.Bytes)
}

// wipeOnFirstWrite wipes a partition when the snapshot writes its first
// bytes, that is, while the snapshot's read transaction is open.
type wipeOnFirstWrite struct {
	p     *Partition
	wiped bool
	buf   bytes.Buffer
}

func (w *wipeOnFirstWrite) Write(b []byte) (int, error) {
	if !w.wiped {
		w.wiped = true
		if err := w.p.Wipe(); err != nil {
			return 0, err
		}
	}
	return w.buf.Write(b)
}

// A wipe drops the partition's tables under an open read transaction, so
// a snapshot read across one could hold part of the counts with the
// checkpoint: it fails instead, without a trailer, and a reader refuses
// what it sent.
func TestSnapshotOfAPartitionWipedMeanwhileFails(t *testing.T) {
	src, dst := newDB(t, t.TempDir()), newDB(t, t.TempDir())
	defer src.Close()
	defer dst.Close()
	counts := map[string]int64{}
	for i := range 20_000 { // more than the writer's buffer holds
		counts[fmt.Sprintf("key-%06d", i)] = 1
	}
	commitCounts(t, src.Partition(2), counts, 50)
	w := &wipeOnFirstWrite{p: src.Partition(2)} // another Partition value of the same task
	if _, err := src.Partition(2).WriteSnapshot(w); !errors.Is(err, ErrSnapshotWiped) {
		t.Fatalf("snapshot read across a wipe: %v; want ErrSnapshotWiped", err)
	}
	readRefused(t, dst.Partition(2), w.buf.Bytes(), ErrSnapshotTruncated)
	if _, err := src.Partition(2).WriteSnapshot(io.Discard); !errors.Is(err, ErrNoCheckpoint) {
		t.Errorf("snapshot after the wipe: %v; want ErrNoCheckpoint", err)
	}
}

// snapshotBytes builds a snapshot by hand, as the format says, apart from
// snapshotWriter: what WriteSnapshot writes and ReadSnapshot reads is held
// to it.
type snapshotBytes struct{ b []byte }

func (s *snapshotBytes) header(version uint16, partition int32, checkpoint int64) *snapshotBytes {
	s.b = append(s.b, snapshotMagic...)
	s.b = binary.BigEndian.AppendUint16(s.b, version)
	s.b = binary.BigEndian.AppendUint32(s.b, uint32(partition))
	s.b = binary.BigEndian.AppendUint64(s.b, uint64(checkpoint))
	return s
}

func (s *snapshotBytes) entry(key string, count int64) *snapshotBytes {
	s.b = binary.AppendUvarint(s.b, uint64(len(key))+1)
	s.b = binary.AppendVarint(append(s.b, key...), count)
	return s
}

func (s *snapshotBytes) end() *snapshotBytes { s.b = append(s.b, 0); return s }

func (s *snapshotBytes) store(name string, checkpoint, streamTime int64) *snapshotBytes {
	s.b = append(append(s.b, byte(len(name))), name...)
	s.b = binary.BigEndian.AppendUint64(s.b, uint64(checkpoint))
	s.b = binary.BigEndian.AppendUint64(s.b, uint64(streamTime))
	return s
}

// trailer ends the entries' runs with the last end, and appends the count
// and the checksum.
func (s *snapshotBytes) trailer(entries uint64) []byte {
	s.b = binary.BigEndian.AppendUint64(append(s.b, 0), entries)
	return binary.BigEndian.AppendUint32(s.b, crc32.Checksum(s.b, castagnoli))
}

// windowedSource commits to partition 3 of db the counts and two windowed
// stores with a checkpoint each, restores a third without one, and fills
// the neighbouring partitions; it returns the windows by store.
func windowedSource(t *testing.T, db *DB, counts map[string]int64) map[string]map[string]int64 {
	t.Helper()
	windows := map[string]map[string]int64{
		"minutes":  {wk("a", 0, 60_000): 3, wk("a", 60_000, 120_000): 1, wk("\x00\xff", 0, 60_000): 1 << 62},
		"sessions": {wk("", 5, 5): 1, wk("a", 10, 400): 7, wk(strings.Repeat("k", 300), 1, 2): 2},
	}
	for _, id := range []int32{2, 3, 4} {
		if err := db.Partition(id).Commit(Batch{Counts: counts, Checkpoint: 41, Windowed: map[string]WindowedBatch{
			"minutes":  {Puts: windows["minutes"], Checkpoint: 70, StreamTime: 119_000},
			"sessions": {Puts: windows["sessions"], Checkpoint: 0, StreamTime: NoStreamTime},
		}}); err != nil {
			t.Fatal(err)
		}
	}
	r := windowedOf(t, db.Partition(3), "unchecked").NewRestorer()
	if err := r.Put([]byte(wk("a", 1, 2)), EncodeCount(5)); err != nil {
		t.Fatal(err)
	}
	if err := r.Flush(); err != nil {
		t.Fatal(err)
	}
	return windows
}

// A partition with windowed stores is sent in version 2: its counts, and
// each store that has a checkpoint with its windows, checkpoint and
// stream time, byte for byte as the format says; the receiver holds the
// same, with an index entry per window. A store without a checkpoint is
// not sent.
func TestSnapshotRoundTripWithWindowedStores(t *testing.T) {
	src, dst := newDB(t, t.TempDir()), newDB(t, t.TempDir())
	defer src.Close()
	defer dst.Close()
	counts := map[string]int64{"a": 4, "\x00": 1}
	windows := windowedSource(t, src, counts)
	b, sent := snapshotOf(t, src.Partition(3))
	want := SnapshotInfo{Partition: 3, Checkpoint: 41, Entries: 8, Windows: 6, Bytes: int64(len(b))}
	if sent != want {
		t.Errorf("WriteSnapshot = %+v; want %+v", sent, want)
	}
	hand := (&snapshotBytes{}).header(2, 3, 41).entry("\x00", 1).entry("a", 4).end().
		store("minutes", 70, 119_000)
	for _, k := range slices.Sorted(stdmaps.Keys(windows["minutes"])) {
		hand.entry(k, windows["minutes"][k])
	}
	hand.end().store("sessions", 0, NoStreamTime)
	for _, k := range slices.Sorted(stdmaps.Keys(windows["sessions"])) {
		hand.entry(k, windows["sessions"][k])
	}
	if exact := hand.end().trailer(8); !bytes.Equal(b, exact) {
		t.Errorf("WriteSnapshot wrote\n% x\nthe format says\n% x", b, exact)
	}

	p := dst.Partition(3)
	got, err := p.ReadSnapshot(bytes.NewReader(b))
	if err != nil || got != sent {
		t.Fatalf("ReadSnapshot = %+v, %v; want %+v", got, err, sent)
	}
	if c, cp := contents(t, p), checkpointOf(t, p); !stdmaps.Equal(c, counts) || cp != 41 {
		t.Errorf("counts %v at checkpoint %d; want %v at 41", c, cp, counts)
	}
	for _, tc := range []struct {
		name           string
		cp, streamTime int64
	}{{"minutes", 70, 119_000}, {"sessions", 0, NoStreamTime}, {"unchecked", NoCheckpoint, NoStreamTime}} {
		s := windowedOf(t, p, tc.name)
		if w := windowsOf(t, s); !stdmaps.Equal(w, windows[tc.name]) {
			t.Errorf("%s: windows %v; want %v", tc.name, w, windows[tc.name])
		}
		if cp, st := checkpoints(t, s); cp != tc.cp || st != tc.streamTime {
			t.Errorf("%s: checkpoint %d, stream time %d; want %d, %d", tc.name, cp, st, tc.cp, tc.streamTime)
		}
		checkIndex(t, s)
	}
	for _, id := range []int32{2, 4} {
		if empty, err := dst.Partition(id).empty(); err != nil || !empty {
			t.Errorf("partition %d got something from a snapshot of partition 3 (%v)", id, err)
		}
	}
}

// A partition without windowed stores is sent in version 1, which a
// member without them reads, byte for byte as version 1 says; and a
// version 1 snapshot is read.
func TestSnapshotWithoutWindowedStoresIsVersion1(t *testing.T) {
	src, dst := newDB(t, t.TempDir()), newDB(t, t.TempDir())
	defer src.Close()
	defer dst.Close()
	commitCounts(t, src.Partition(1), map[string]int64{"a": 1, "b": -2}, 9)
	b, _ := snapshotOf(t, src.Partition(1))
	v1 := (&snapshotBytes{}).header(1, 1, 9).entry("a", 1).entry("b", -2).trailer(2)
	if !bytes.Equal(b, v1) {
		t.Errorf("WriteSnapshot wrote\n% x\nversion 1 is\n% x", b, v1)
	}
	got, err := dst.Partition(1).ReadSnapshot(bytes.NewReader(v1))
	if err != nil || got != (SnapshotInfo{Partition: 1, Checkpoint: 9, Entries: 2, Bytes: int64(len(v1))}) {
		t.Fatalf("ReadSnapshot of version 1 = %+v, %v", got, err)
	}
	if c := contents(t, dst.Partition(1)); !stdmaps.Equal(c, map[string]int64{"a": 1, "b": -2}) {
		t.Errorf("version 1 read into %v", c)
	}
	// Version 1 has no stores: the bytes of one after its entries are not
	// a trailer.
	withStore := (&snapshotBytes{}).header(1, 2, 9).entry("a", 1).end().store("s", 1, 1).end().trailer(1)
	readRefusedAll(t, dst.Partition(2), withStore, ErrSnapshotCorrupt)
}

// readRefusedAll is readRefused that also wants the partition empty,
// windowed stores included.
func readRefusedAll(t *testing.T, p *Partition, b []byte, want ...error) error {
	t.Helper()
	err := readRefused(t, p, b, want...)
	if empty, eerr := p.empty(); eerr != nil || !empty {
		t.Fatalf("the partition holds something after a refused snapshot (%v)", err)
	}
	return err
}

// Version 2 snapshots that break the format are refused, each for what is
// wrong, and leave the partition empty.
func TestSnapshotWithBadWindowedStoresIsRefused(t *testing.T) {
	db := newDB(t, t.TempDir())
	defer db.Close()
	p := db.Partition(0)
	window := wk("a", 1, 2)
	for _, tc := range []struct {
		name string
		b    []byte
		want string
	}{
		{"not a window key", (&snapshotBytes{}).header(2, 0, 5).end().store("s", 1, 1).entry("a", 1).end().trailer(1), "window key"},
		{"window ends before it starts", (&snapshotBytes{}).header(2, 0, 5).end().store("s", 1, 1).entry(wk("a", 2, 1), 1).end().trailer(1), "window key"},
		{"stores out of order", (&snapshotBytes{}).header(2, 0, 5).end().store("t", 1, 1).end().store("s", 1, 1).end().trailer(0), "out of name order"},
		{"a store twice", (&snapshotBytes{}).header(2, 0, 5).end().store("s", 1, 1).end().store("s", 1, 1).end().trailer(0), "out of name order"},
		{"name too long", (&snapshotBytes{}).header(2, 0, 5).end().store(strings.Repeat("n", 101), 1, 1).end().trailer(0), "name of 101 bytes"},
		{"no store checkpoint", (&snapshotBytes{}).header(2, 0, 5).end().store("s", -1, 1).entry(window, 1).end().trailer(1), "checkpoint -1"},
		{"stream time below none", (&snapshotBytes{}).header(2, 0, 5).end().store("s", 1, -2).end().trailer(0), "stream time -2"},
		{"entries miscounted", (&snapshotBytes{}).header(2, 0, 5).entry("a", 1).end().store("s", 1, 1).entry(window, 1).end().trailer(1), "counts 1 entries"},
	} {
		err := readRefusedAll(t, p, tc.b, ErrSnapshotCorrupt)
		if !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v; want it to say %q", tc.name, err, tc.want)
		}
	}
	good := (&snapshotBytes{}).header(2, 0, 5).entry("a", 1).end().store("s", 1, 1).entry(window, 1).end().trailer(2)
	if _, err := p.ReadSnapshot(bytes.NewReader(good)); err != nil {
		t.Errorf("the good one: %v", err)
	}
}

// A version 2 snapshot cut off at any byte, or with any byte changed, is
// refused and leaves the partition empty, windowed stores included.
func TestSnapshotWithWindowedStoresCutOffOrFlippedIsRefused(t *testing.T) {
	src, dst := newDB(t, t.TempDir()), newDB(t, t.TempDir())
	defer src.Close()
	defer dst.Close()
	if err := src.Partition(5).Commit(Batch{Counts: map[string]int64{"a": 1}, Checkpoint: 9, Windowed: map[string]WindowedBatch{
		"m": {Puts: map[string]int64{wk("a", 0, 10): 2, wk("b\x00", 10, 20): 3}, Checkpoint: 4, StreamTime: 15},
		"s": {Puts: map[string]int64{wk("a", 3, 7): 1}, Checkpoint: 2, StreamTime: 7},
	}}); err != nil {
		t.Fatal(err)
	}
	b, _ := snapshotOf(t, src.Partition(5))
	p := dst.Partition(5)
	for n := range len(b) {
		readRefusedAll(t, p, b[:n], ErrSnapshotTruncated)
	}
	for i := range b {
		for _, mask := range []byte{0x01, 0x80, 0xff} {
			flipped := bytes.Clone(b)
			flipped[i] ^= mask
			readRefusedAll(t, p, flipped, ErrSnapshotCorrupt, ErrSnapshotTruncated, ErrSnapshotVersion, ErrSnapshotPartition)
		}
	}
	if _, err := p.ReadSnapshot(bytes.NewReader(b)); err != nil {
		t.Fatal(err)
	}
	if w := windowsOf(t, windowedOf(t, p, "m")); len(w) != 2 {
		t.Errorf("after the refused ones, the whole snapshot gave %v", w)
	}
}

// A snapshot replaces windows left without a checkpoint, as it does
// counts: a window deleted since may be among them.
func TestSnapshotReplacesWindowsLeftWithoutACheckpoint(t *testing.T) {
	src, dst := newDB(t, t.TempDir()), newDB(t, t.TempDir())
	defer src.Close()
	defer dst.Close()
	windows := windowedSource(t, src, map[string]int64{"a": 1})
	b, _ := snapshotOf(t, src.Partition(3))
	s := windowedOf(t, dst.Partition(3), "minutes")
	r := s.NewRestorer()
	if err := r.Put([]byte(wk("deleted-since", 0, 60_000)), EncodeCount(3)); err != nil {
		t.Fatal(err)
	}
	if err := r.Flush(); err != nil {
		t.Fatal(err)
	}
	if _, err := dst.Partition(3).ReadSnapshot(bytes.NewReader(b)); err != nil {
		t.Fatal(err)
	}
	if w := windowsOf(t, s); !stdmaps.Equal(w, windows["minutes"]) {
		t.Errorf("minutes holds %v; want the snapshot's %v alone", w, windows["minutes"])
	}
	checkIndex(t, s)
}
