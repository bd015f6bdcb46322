package store

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/abacus-streams/abacus/internal/testkit"
)

// The tests here make Open fail for reasons that are no proof of damage
// and check that the store is left exactly where and as it was, with an
// error that says what failed on which file.

// smallStore makes a closed store with a few commits in a new directory.
func smallStore(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "counts-store")
	db := openSmall(t, dir)
	for i := range 4 {
		if err := db.Partition(int32(i)).Commit(Batch{Counts: map[string]int64{"a": int64(i + 1)}, Checkpoint: int64(i)}); err != nil {
			t.Fatal(err)
		}
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	return dir
}

// assertLeftAlone fails the test if the store in dir was moved aside or its
// files changed since before (a ListDir of it).
func assertLeftAlone(t *testing.T, dir, before string) {
	t.Helper()
	if _, err := os.Lstat(dir + ".damaged"); err == nil {
		t.Errorf("the store was moved aside (%s.damaged: %s)", dir, testkit.ListDir(dir+".damaged"))
	}
	if after := testkit.ListDir(dir); after != before {
		t.Errorf("the store's files changed:\nbefore %s\nafter  %s", before, after)
	}
}

// TestOpenLeavesALockedStoreAlone: a store whose directory another process
// has locked (as Badger does) is neither checked nor moved aside, though
// its MANIFEST is damaged: the other process may be writing it. Open fails
// saying so; once the lock is gone the damage is found and the store moved
// aside. A second Open of an open store fails the same way.
func TestOpenLeavesALockedStoreAlone(t *testing.T) {
	dir := smallStore(t)
	testkit.ScribbleAt(t, filepath.Join(dir, "MANIFEST"), 0)
	f, err := os.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		t.Fatal(err)
	}
	before := testkit.ListDir(dir)
	_, err = Open(Config{Dir: dir})
	if err == nil || !errors.Is(err, syscall.EWOULDBLOCK) || !strings.Contains(err.Error(), "in use") || !strings.Contains(err.Error(), dir) {
		t.Fatalf("Open of a store locked elsewhere = %v, want an error saying it is in use (EWOULDBLOCK)", err)
	}
	assertLeftAlone(t, dir, before)
	f.Close()

	db, err := Open(Config{Dir: dir})
	if err != nil {
		t.Fatalf("Open once the lock is gone: %v", err)
	}
	if _, err := os.Stat(dir + ".damaged"); err != nil {
		t.Errorf("the damaged MANIFEST was not found once the lock was gone: %v", err)
	}
	_, err = Open(Config{Dir: dir})
	if !errors.Is(err, syscall.EWOULDBLOCK) {
		t.Errorf("a second Open of an open store = %v, want EWOULDBLOCK", err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	db, err = Open(Config{Dir: dir})
	if err != nil {
		t.Fatalf("Open after Close: %v", err)
	}
	db.Close()
}
