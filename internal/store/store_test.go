package store

import (
	"fmt"
	"testing"
)

func newDB(t *testing.T, dir string) *DB {
	t.Helper()
	db, err := Open(Config{Dir: dir})
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	return db
}

func TestCommitGetCheckpointSurviveReopen(t *testing.T) {
	dir := t.TempDir()
	db := newDB(t, dir)
	p0, p1 := db.Partition(0), db.Partition(1)
	if cp, err := p0.Checkpoint(); err != nil || cp != NoCheckpoint {
		t.Fatalf("fresh checkpoint = %d, %v; want %d", cp, err, NoCheckpoint)
	}
	if err := p0.Commit(Batch{Counts: map[string]int64{"foo": 2, "a b:c": 7, "héllo": 1}, Checkpoint: 41}); err != nil {
		t.Fatal(err)
	}
	if err := p1.Commit(Batch{Counts: map[string]int64{"foo": 9}, Checkpoint: 3}); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	db = newDB(t, dir)
	defer db.Close()
	p0, p1 = db.Partition(0), db.Partition(1)
	for _, tc := range []struct {
		p     *Partition
		key   string
		want  int64
		found bool
	}{{p0, "foo", 2, true}, {p0, "a b:c", 7, true}, {p0, "héllo", 1, true}, {p1, "foo", 9, true}, {p1, "a b:c", 0, false}} {
		got, found, err := tc.p.Get([]byte(tc.key))
		if err != nil || got != tc.want || found != tc.found {
			t.Errorf("partition %d Get(%q) = %d, %v, %v; want %d, %v", tc.p.ID(), tc.key, got, found, err, tc.want, tc.found)
		}
	}
	if cp, _ := p0.Checkpoint(); cp != 41 {
		t.Errorf("checkpoint p0 = %d, want 41", cp)
	}
	parts, err := db.Partitions()
	if err != nil || fmt.Sprint(parts) != "[0 1]" {
		t.Errorf("Partitions() = %v, %v; want [0 1]", parts, err)
	}
	if err := p0.Wipe(); err != nil {
		t.Fatal(err)
	}
	if _, found, _ := p0.Get([]byte("foo")); found {
		t.Error("foo survived wipe of partition 0")
	}
	if cp, _ := p0.Checkpoint(); cp != NoCheckpoint {
		t.Errorf("checkpoint after wipe = %d", cp)
	}
	if n, found, _ := p1.Get([]byte("foo")); !found || n != 9 {
		t.Errorf("wipe of partition 0 touched partition 1: %d %v", n, found)
	}
}

func TestCommitLargerThanOneTransaction(t *testing.T) {
	db := newDB(t, t.TempDir())
	defer db.Close()
	p := db.Partition(3)
	counts := map[string]int64{}
	for i := range 200_000 {
		counts[fmt.Sprintf("key-%07d", i)] = int64(i)
	}
	if err := p.Commit(Batch{Counts: counts, Checkpoint: 199_999}); err != nil {
		t.Fatal(err)
	}
	n := 0
	if err := p.Scan(ScanOptions{}, func(k []byte, v int64) bool {
		if want := counts[string(k)]; v != want {
			t.Errorf("%s = %d, want %d", k, v, want)
			return false
		}
		n++
		return true
	}); err != nil {
		t.Fatal(err)
	}
	if n != 200_000 {
		t.Fatalf("scanned %d keys, want 200000", n)
	}
	if cp, _ := p.Checkpoint(); cp != 199_999 {
		t.Fatalf("checkpoint %d", cp)
	}
}

func TestScanBounds(t *testing.T) {
	db := newDB(t, t.TempDir())
	defer db.Close()
	p := db.Partition(0)
	if err := p.Commit(Batch{Counts: map[string]int64{"us-a": 1, "us-b": 2, "us-c": 3, "uk-a": 4, "v": 5}, Checkpoint: 0}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		o    ScanOptions
		want string
	}{
		{"all", ScanOptions{}, "[uk-a us-a us-b us-c v]"},
		{"prefix", ScanOptions{Prefix: []byte("us-")}, "[us-a us-b us-c]"},
		{"prefix from", ScanOptions{Prefix: []byte("us-"), From: []byte("us-b")}, "[us-b us-c]"},
		{"from to", ScanOptions{From: []byte("us-a"), To: []byte("us-c")}, "[us-a us-b]"},
		{"limit", ScanOptions{Limit: 2}, "[uk-a us-a]"},
	} {
		var keys []string
		if err := p.Scan(tc.o, func(k []byte, _ int64) bool { keys = append(keys, string(k)); return true }); err != nil {
			t.Fatal(err)
		}
		if got := fmt.Sprint(keys); got != tc.want {
			t.Errorf("%s: got %s want %s", tc.name, got, tc.want)
		}
	}
}
