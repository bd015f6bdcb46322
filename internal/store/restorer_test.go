package store

import "testing"

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
	r := p.NewRestorerKeepingMax()
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
