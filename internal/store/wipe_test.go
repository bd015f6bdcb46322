package store

import (
	"fmt"
	"sync"
	"testing"
)

// While Badger drops a prefix it refuses every other write of the
// database. A restore wipes a task store whose seeding failed, most often
// with nothing in it: such a wipe must not fail the commits and restores
// of the other tasks.
func TestWipeOfAnEmptyPartitionBlocksNoWriter(t *testing.T) {
	db := newDB(t, t.TempDir())
	defer db.Close()
	var wg sync.WaitGroup
	for p := range int32(8) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 50 {
				if err := db.Partition(p + 1).Wipe(); err != nil {
					t.Errorf("wipe of empty partition %d: %v", p+1, err)
					return
				}
			}
		}()
	}
	for i := range 200 {
		if err := db.Partition(0).Commit(Batch{Counts: map[string]int64{"k": int64(i + 1)}, Checkpoint: int64(i)}); err != nil {
			t.Fatalf("commit %d while empty partitions were wiped: %v", i, err)
		}
	}
	wg.Wait()
}

// A wipe of a partition full of keys blocks no writer of another
// partition: commits go on while it deletes.
func TestWipeBlocksNoWriter(t *testing.T) {
	db := newDB(t, t.TempDir())
	defer db.Close()
	for p := range int32(4) {
		counts := map[string]int64{}
		for i := range 20_000 {
			counts[fmt.Sprintf("key-%d", i)] = 1
		}
		if err := db.Partition(p + 1).Commit(Batch{Counts: counts, Checkpoint: 5}); err != nil {
			t.Fatal(err)
		}
	}
	done := make(chan error, 4)
	for p := range int32(4) {
		go func() { done <- db.Partition(p + 1).Wipe() }()
	}
	for i := 0; ; i++ {
		if err := db.Partition(0).Commit(Batch{Counts: map[string]int64{"k": int64(i + 1)}, Checkpoint: int64(i)}); err != nil {
			t.Fatalf("commit %d while other partitions were wiped: %v", i, err)
		}
		if i >= 50 && len(done) == 4 {
			break
		}
	}
	for range 4 {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	for p := range int32(4) {
		if empty, err := db.Partition(p + 1).empty(); err != nil || !empty {
			t.Errorf("partition %d after its wipe: empty %v, %v", p+1, empty, err)
		}
	}
}

// Wipes of several partitions at once each delete all of their own.
func TestConcurrentWipes(t *testing.T) {
	db := newDB(t, t.TempDir())
	defer db.Close()
	for p := range int32(8) {
		counts := map[string]int64{}
		for i := range 1000 {
			counts[fmt.Sprintf("key-%d", i)] = 1
		}
		if err := db.Partition(p).Commit(Batch{Counts: counts, Checkpoint: 5}); err != nil {
			t.Fatal(err)
		}
	}
	var wg sync.WaitGroup
	for p := range int32(8) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := db.Partition(p).Wipe(); err != nil {
				t.Errorf("wipe of partition %d: %v", p, err)
			}
		}()
	}
	wg.Wait()
	for p := range int32(8) {
		if empty, err := db.Partition(p).empty(); err != nil || !empty {
			t.Errorf("partition %d after its wipe: empty %v, %v", p, empty, err)
		}
	}
}
