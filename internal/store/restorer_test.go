package store

import (
	"errors"
	"fmt"
	stdmaps "maps"
	"testing"
)

// A keep-max restore (at-least-once) keeps the larger of the stored count
// and the changelog's: a lower count landing late on the changelog does
// not take a count back, whether the higher one is in Badger already, in
// the same chunk of the restore, or in an earlier chunk. A tombstone
// deletes, and a count after it is taken as it is.
func TestRestoreKeepingMax(t *testing.T) {
	db := newDB(t, t.TempDir())
	defer db.Close()
	p := db.Partition(2)
	if err := p.Commit(Batch{Counts: map[string]int64{"stored-high": 151, "stored-low": 3, "deleted": 40}, Checkpoint: 9}); err != nil {
		t.Fatal(err)
	}
	r, err := p.NewRestorerKeepingMax()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Cancel()
	steps := []struct {
		op, key string
		n       int64
	}{
		{"put", "stored-high", 127}, // a late, lower record: keep 151
		{"put", "stored-low", 7},    // newer and higher: take it
		{"put", "same-chunk", 20},
		{"put", "same-chunk", 12}, // lower, after a higher one in this chunk
		{"del", "deleted", 0},
		{"put", "deleted", 2}, // the key started again after its tombstone
		{"checkpoint", "", 15},
		{"put", "same-chunk", 13}, // lower than the earlier chunk's 20
		{"put", "stored-low", 8},
		{"put", "new", 1},
	}
	for _, s := range steps {
		var err error
		switch s.op {
		case "put":
			err = r.Put([]byte(s.key), EncodeCount(s.n))
		case "del":
			err = r.Delete([]byte(s.key))
		case "checkpoint":
			err = r.Checkpoint(s.n)
		}
		if err != nil {
			t.Fatalf("%s %s %d: %v", s.op, s.key, s.n, err)
		}
	}
	if err := r.Checkpoint(18); err != nil {
		t.Fatal(err)
	}
	if err := r.Flush(); err != nil {
		t.Fatal(err)
	}
	for key, want := range map[string]int64{"stored-high": 151, "stored-low": 8, "same-chunk": 20, "deleted": 2, "new": 1} {
		if n, found, err := p.Get([]byte(key)); err != nil || !found || n != want {
			t.Errorf("%s = %d (found %v, %v), want %d", key, n, found, err, want)
		}
	}
	if cp, _ := p.Checkpoint(); cp != 18 {
		t.Errorf("checkpoint %d, want 18", cp)
	}

	// The exactly-once restorer takes the changelog as it is.
	r = p.NewRestorer()
	if err := r.Put([]byte("stored-high"), EncodeCount(127)); err != nil {
		t.Fatal(err)
	}
	if err := r.Flush(); err != nil {
		t.Fatal(err)
	}
	if n, _, _ := p.Get([]byte("stored-high")); n != 127 {
		t.Errorf("plain restore: stored-high = %d, want the changelog's 127", n)
	}
}

// The exactly-once restorer coalesces a chunk per key with the last record
// winning, tombstones included, and says when its chunk is full.
func TestRestoreCoalescesAChunk(t *testing.T) {
	db := newDB(t, t.TempDir())
	defer db.Close()
	p := db.Partition(1)
	if err := p.Commit(Batch{Counts: map[string]int64{"gone": 5, "kept": 9}, Checkpoint: 3}); err != nil {
		t.Fatal(err)
	}
	r := p.NewRestorer()
	defer r.Cancel()
	put, del := restorerWrites(t, r)
	put("a", 4)
	put("a", 2) // lower, but the changelog is the truth here: last wins
	del("gone")
	put("back", 1)
	del("back")
	put("back", 7) // a count after a tombstone
	put("new", 1)
	del("new") // ends deleted
	if r.Full() {
		t.Fatal("a chunk of five keys says it is full")
	}
	if err := r.Checkpoint(11); err != nil {
		t.Fatal(err)
	}
	if err := r.Flush(); err != nil {
		t.Fatal(err)
	}
	for key, want := range map[string]int64{"a": 2, "back": 7, "kept": 9} {
		if n, found, err := p.Get([]byte(key)); err != nil || !found || n != want {
			t.Errorf("%s = %d (found %v, %v), want %d", key, n, found, err, want)
		}
	}
	for _, key := range []string{"gone", "new"} {
		if _, found, _ := p.Get([]byte(key)); found {
			t.Errorf("%s is still there after its tombstone", key)
		}
	}
	if cp, _ := p.Checkpoint(); cp != 11 {
		t.Errorf("checkpoint %d, want 11", cp)
	}
	for i := 0; !r.Full(); i++ {
		put(fmt.Sprintf("key-%08d", i), 1)
		if i > RestoreChunkBytes {
			t.Fatal("the chunk never fills")
		}
	}
}

// A keep-max restore from the changelog's start (no checkpoint) takes its
// first chunk without reading Badger, but still keeps the larger count
// across chunks, each written while the next is read: a late lower record
// in a later chunk takes no count back, many chunks commit in order, and
// the checkpoint is the last chunk's.
func TestRestoreKeepingMaxFromTheStartAcrossChunks(t *testing.T) {
	db := newDB(t, t.TempDir())
	defer db.Close()
	p := db.Partition(3)
	r, err := p.NewRestorerKeepingMax()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Cancel()
	put, _ := restorerWrites(t, r)
	checkpoint := func(offset int64) {
		t.Helper()
		if err := r.Checkpoint(offset); err != nil {
			t.Fatal(err)
		}
	}
	put("hot", 20)
	put("hot", 12) // lower, same chunk
	put("cold", 1)
	checkpoint(2)
	put("hot", 13) // lower than the first chunk's 20
	put("cold", 2)
	checkpoint(4)
	for c := range 20 { // chunks committing one after the other
		put("hot", int64(21+c))
		put("hot", 5)
		checkpoint(int64(5 + c))
	}
	put("cold", 1)
	if err := r.Checkpoint(30); err != nil {
		t.Fatal(err)
	}
	if err := r.Flush(); err != nil {
		t.Fatal(err)
	}
	for key, want := range map[string]int64{"hot": 40, "cold": 2} {
		if n, found, err := p.Get([]byte(key)); err != nil || !found || n != want {
			t.Errorf("%s = %d (found %v, %v), want %d", key, n, found, err, want)
		}
	}
	if cp, _ := p.Checkpoint(); cp != 30 {
		t.Errorf("checkpoint %d, want 30", cp)
	}
}

// A windowed store's restore takes its changelog's records, tombstones
// included, keeps an index entry per window, and writes the store's own
// checkpoint: the counts, their checkpoint, another store and the
// store's stream time stay as they were. A record whose key is not a
// window key is refused.
func TestWindowedRestoreRoundTrip(t *testing.T) {
	db := newDB(t, t.TempDir())
	defer db.Close()
	p := db.Partition(5)
	counts := map[string]int64{"alice": 3}
	others := map[string]int64{wk("alice", 0, 10): 1}
	if err := p.Commit(Batch{Counts: counts, Checkpoint: 5, Windowed: map[string]WindowedBatch{
		"s": {Puts: map[string]int64{wk("alice", 0, 10): 2, wk("bob", 0, 10): 4, wk("carol", 5, 5): 1}, Checkpoint: 7, StreamTime: 60},
		"o": {Puts: others, Checkpoint: 3, StreamTime: 61},
	}}); err != nil {
		t.Fatal(err)
	}
	s := windowedOf(t, p, "s")
	r := s.NewRestorer()
	defer r.Cancel()
	put, del := restorerWrites(t, r)
	put(wk("alice", 0, 10), 5)
	put(wk("alice", 0, 10), 3) // exactly-once: the last record wins
	del(wk("bob", 0, 10))      // a stored window deleted
	put(wk("dave", 0, 10), 1)
	del(wk("dave", 0, 10)) // a window of this chunk deleted
	put(wk("erin", 10, 20), 1)
	if err := r.Checkpoint(20); err != nil {
		t.Fatal(err)
	}
	del(wk("carol", 5, 5))
	put(wk("carol", 5, 9), 2) // the session grew: the old one goes, the new comes
	del(wk("nobody", 1, 2))   // a tombstone of a window never stored
	put(wk("erin", 10, 20), 2)
	if err := r.Checkpoint(25); err != nil {
		t.Fatal(err)
	}
	for _, bad := range [][]byte{[]byte("alice"), nil, []byte(wk("x", 3, 2))} {
		if err := r.Put(bad, EncodeCount(1)); !errors.Is(err, ErrWindowKey) {
			t.Errorf("Put(%q): %v; want ErrWindowKey", bad, err)
		}
		if err := r.Delete(bad); !errors.Is(err, ErrWindowKey) {
			t.Errorf("Delete(%q): %v; want ErrWindowKey", bad, err)
		}
	}
	if err := r.Flush(); err != nil {
		t.Fatal(err)
	}
	want := map[string]int64{wk("alice", 0, 10): 3, wk("carol", 5, 9): 2, wk("erin", 10, 20): 2}
	if got := windowsOf(t, s); !stdmaps.Equal(got, want) {
		t.Errorf("restored windows %v; want %v", got, want)
	}
	checkIndex(t, s)
	if cp, st := checkpoints(t, s); cp != 25 || st != 60 {
		t.Errorf("store checkpoint %d, stream time %d; want 25 and the commit's 60", cp, st)
	}
	if c, cp := contents(t, p), checkpointOf(t, p); !stdmaps.Equal(c, counts) || cp != 5 {
		t.Errorf("counts %v at checkpoint %d; want %v at 5, untouched", c, cp, counts)
	}
	o := windowedOf(t, p, "o")
	if got := windowsOf(t, o); !stdmaps.Equal(got, others) {
		t.Errorf("another store holds %v; want %v", got, others)
	}
	if cp, _ := checkpoints(t, o); cp != 3 {
		t.Errorf("another store's checkpoint %d; want 3", cp)
	}
	// The restored windows expire through their index entries.
	if removed, err := s.ExpireWindows(10); err != nil || removed != 2 {
		t.Errorf("ExpireWindows(10) = %d, %v; want 2", removed, err)
	}
	if got := windowsOf(t, s); !stdmaps.Equal(got, map[string]int64{wk("erin", 10, 20): 2}) {
		t.Errorf("after the expiry: %v", got)
	}
	checkIndex(t, s)
}

// A keep-max restore of a windowed store keeps the larger of the stored
// count and the changelog's, as for counts, reading the store's own
// checkpoint; a tombstone still deletes.
func TestWindowedRestoreKeepingMax(t *testing.T) {
	db := newDB(t, t.TempDir())
	defer db.Close()
	p := db.Partition(1)
	putWindows(t, p, "s", map[string]int64{wk("high", 0, 10): 151, wk("low", 0, 10): 3, wk("gone", 0, 10): 9}, 9)
	s := windowedOf(t, p, "s")
	r, err := s.NewRestorerKeepingMax()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Cancel()
	for k, n := range map[string]int64{wk("high", 0, 10): 127, wk("low", 0, 10): 7, wk("new", 0, 10): 1} {
		if err := r.Put([]byte(k), EncodeCount(n)); err != nil {
			t.Fatal(err)
		}
	}
	if err := r.Delete([]byte(wk("gone", 0, 10))); err != nil {
		t.Fatal(err)
	}
	if err := r.Checkpoint(12); err != nil {
		t.Fatal(err)
	}
	if err := r.Flush(); err != nil {
		t.Fatal(err)
	}
	want := map[string]int64{wk("high", 0, 10): 151, wk("low", 0, 10): 7, wk("new", 0, 10): 1}
	if got := windowsOf(t, s); !stdmaps.Equal(got, want) {
		t.Errorf("windows %v; want %v", got, want)
	}
	checkIndex(t, s)
	if cp, _ := checkpoints(t, s); cp != 12 {
		t.Errorf("store checkpoint %d; want 12", cp)
	}
}

// A restore of a windowed store into a partition that holds nothing else,
// chunk after chunk: the partition is listed, has no count checkpoint,
// and every window has its index entry.
func TestWindowedRestoreAcrossChunks(t *testing.T) {
	db := newDB(t, t.TempDir())
	defer db.Close()
	p := db.Partition(8)
	s := windowedOf(t, p, "s")
	r := s.NewRestorer()
	defer r.Cancel()
	want := map[string]int64{}
	chunks, last := 0, int64(0)
	for i := 0; chunks < 3; i++ {
		k := wk(fmt.Sprintf("key-%08d", i), int64(i), int64(i)+60_000)
		if err := r.Put([]byte(k), EncodeCount(int64(i%7+1))); err != nil {
			t.Fatal(err)
		}
		want[k] = int64(i%7 + 1)
		if r.Full() {
			if err := r.Checkpoint(int64(i)); err != nil {
				t.Fatal(err)
			}
			chunks, last = chunks+1, int64(i)
		}
	}
	if err := r.Flush(); err != nil {
		t.Fatal(err)
	}
	if got := windowsOf(t, s); !stdmaps.Equal(got, want) {
		t.Errorf("%d windows restored; want %d", len(got), len(want))
	}
	checkIndex(t, s)
	if cp := checkpointOf(t, p); cp != NoCheckpoint {
		t.Errorf("count checkpoint %d after a windowed store's restore", cp)
	}
	if cp, _ := checkpoints(t, s); cp != last {
		t.Errorf("store checkpoint %d after three chunks; want %d", cp, last)
	}
	if parts, err := db.Partitions(); err != nil || fmt.Sprint(parts) != "[8]" {
		t.Errorf("Partitions() = %v, %v; want [8]", parts, err)
	}
}

// restorerWrites are r's Put and Delete, failing the test on an error.
func restorerWrites(t *testing.T, r *Restorer) (put func(k string, n int64), del func(k string)) {
	put = func(k string, n int64) {
		t.Helper()
		if err := r.Put([]byte(k), EncodeCount(n)); err != nil {
			t.Fatal(err)
		}
	}
	del = func(k string) {
		t.Helper()
		if err := r.Delete([]byte(k)); err != nil {
			t.Fatal(err)
		}
	}
	return put, del
}
