package store

import (
	"errors"
	"strings"
	"syscall"
	"testing"

	"github.com/abacus-streams/abacus/internal/testkit"
)

// A store on a disk with less free space than its margin refuses every
// write with an error that names the full disk and wraps ENOSPC, and
// writes nothing; once space returns it writes again.
func TestDiskFullRefusesWrites(t *testing.T) {
	db := newDB(t, t.TempDir())
	defer db.Close()
	p := db.Partition(0)
	if err := p.Commit(Batch{Counts: map[string]int64{"a": 1}, Checkpoint: 0}); err != nil {
		t.Fatal(err)
	}
	free := uint64(1 << 20)
	db.space.free = func(string) (uint64, error) { return free, nil }

	full := func(what string, err error) {
		t.Helper()
		var dfe *DiskFullError
		switch {
		case err == nil:
			t.Errorf("%s on a full disk: no error", what)
		case !errors.Is(err, syscall.ENOSPC) || !IsDiskFull(err) || !errors.As(err, &dfe):
			t.Errorf("%s on a full disk: %v, not a DiskFullError wrapping ENOSPC", what, err)
		case !strings.Contains(err.Error(), "no space left on device") || (what != "CheckSpace" && !strings.Contains(err.Error(), "partition 0")):
			t.Errorf("%s on a full disk: %q does not say what and why", what, err)
		case dfe.Free != free || dfe.Need != 2*(16<<20)+defaultSlack:
			t.Errorf("%s on a full disk: free %d need %d", what, dfe.Free, dfe.Need)
		}
	}
	full("Commit", p.Commit(Batch{Counts: map[string]int64{"a": 2, "b": 1}, Checkpoint: 1}))
	full("CheckSpace", db.CheckSpace())
	full("Wipe", p.Wipe())
	r := p.NewRestorer()
	full("restore Put", r.Put([]byte("c"), []byte("3")))
	full("restore Delete", r.Delete([]byte("a")))
	full("restore Checkpoint", r.Checkpoint(5))
	if err := r.Flush(); err != nil {
		t.Fatal(err)
	}
	if n, found, _ := p.Get([]byte("a")); n != 1 || !found {
		t.Errorf("a = %d (found %v) after refused writes, want 1", n, found)
	}
	for _, k := range []string{"b", "c"} {
		if _, found, _ := p.Get([]byte(k)); found {
			t.Errorf("%s was written although the disk was full", k)
		}
	}
	if cp, _ := p.Checkpoint(); cp != 0 {
		t.Errorf("checkpoint %d after refused writes, want 0", cp)
	}

	free = 1 << 30
	if err := p.Commit(Batch{Counts: map[string]int64{"a": 2}, Checkpoint: 1}); err != nil {
		t.Fatalf("commit once space is back: %v", err)
	}
	if n, _, _ := p.Get([]byte("a")); n != 2 {
		t.Errorf("a = %d, want 2", n)
	}
}

// A restore checks the free space again as it writes, not only at its
// first write: the disk filling up mid-restore stops it.
func TestRestoreStopsWhenTheDiskFills(t *testing.T) {
	db := newDB(t, t.TempDir())
	defer db.Close()
	free := uint64(1 << 30)
	db.space.free = func(string) (uint64, error) { return free, nil }
	r := db.Partition(0).NewRestorer()
	defer r.Cancel()
	value := []byte("12345")
	var err error
	for i := 0; err == nil && i < 1_000_000; i++ {
		if i == 1000 {
			free = 0
		}
		err = r.Put([]byte(strings.Repeat("k", 100)+string(rune('a'+i%26))), value)
	}
	if !IsDiskFull(err) {
		t.Fatalf("restore went on writing with the disk full: %v", err)
	}
}

// Open refuses a disk with less free space than the margin, before Badger
// maps a file.
func TestOpenRefusesAFullDisk(t *testing.T) {
	dir := t.TempDir()
	_, err := Open(Config{Dir: dir, MinFreeBytes: 1 << 62})
	if !IsDiskFull(err) || !strings.Contains(err.Error(), "no space left on device") {
		t.Fatalf("Open with too little free space: %v, want a full-disk error", err)
	}
	if files := testkit.ListDir(dir); files != "" {
		t.Errorf("Open wrote %s on a full disk", files)
	}
	db, err := Open(Config{Dir: dir, MinFreeBytes: -1})
	if err != nil {
		t.Fatalf("Open with the check off: %v", err)
	}
	db.Close()
}
