package store

import (
	"fmt"
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
	put := func(k string, n int64) {
		t.Helper()
		if err := r.Put([]byte(k), EncodeCount(n)); err != nil {
			t.Fatal(err)
		}
	}
	del := func(k string) {
		t.Helper()
		if err := r.Delete([]byte(k)); err != nil {
			t.Fatal(err)
		}
	}
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
	put := func(k string, n int64) {
		t.Helper()
		if err := r.Put([]byte(k), EncodeCount(n)); err != nil {
			t.Fatal(err)
		}
	}
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
