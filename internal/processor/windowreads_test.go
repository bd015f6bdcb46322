package processor

import (
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/abacus-streams/abacus/internal/abacus"
	"github.com/abacus-streams/abacus/internal/config"
	"github.com/abacus-streams/abacus/internal/store"
	"github.com/abacus-streams/abacus/internal/window"
)

// The reads a windowed subscription starts with: a key's windows, or a
// partition's windows with a prefix, each with the store's checkpoint,
// expired windows left out (before the limit), and abacus's errors where
// the task cannot answer.
func TestWindowReadsWithTheirCheckpoint(t *testing.T) {
	db, err := store.Open(store.Config{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	cfg := config.Default()
	cfg.Windows = []window.Spec{{Store: "s", Kind: window.Tumbling, Size: time.Second, Retention: 10 * time.Second}}
	p, err := New(Config{Config: cfg}, db)
	if err != nil {
		t.Fatal(err)
	}
	p.numPartitions.Store(1)
	tv := &taskView{partition: 0, store: db.Partition(0)}
	publish(p, tv)
	key := func(k string, start int64) string {
		return string(store.EncodeWindowKey(store.Window{Key: []byte(k), Start: start, End: start + 1000}))
	}
	// Stream time 20 s: windows ending at or before 10 s are expired.
	if err := tv.store.Commit(store.Batch{Checkpoint: 3, Windowed: map[string]store.WindowedBatch{"s": {
		Puts:       map[string]int64{key("a", 0): 1, key("a", 15_000): 2, key("a", 19_000): 3, key("ab", 19_000): 4, key("b", 19_000): 5},
		Checkpoint: 41, StreamTime: 20_000,
	}}}); err != nil {
		t.Fatal(err)
	}
	if _, _, _, err := p.GetWindowsAt("s", []byte("a")); !errors.Is(err, abacus.ErrRestoring) {
		t.Fatalf("a restoring task: %v; want ErrRestoring", err)
	}
	tv.active.Store(true)
	part, ws, cp, err := p.GetWindowsAt("s", []byte("a"))
	if err != nil || part != 0 || cp != 41 {
		t.Fatalf("GetWindowsAt: partition %d, checkpoint %d, %v; want 0, 41", part, cp, err)
	}
	starts := func(ws []store.WindowCount) (out []int64) {
		for _, w := range ws {
			out = append(out, w.Start)
		}
		return out
	}
	if got := starts(ws); !slices.Equal(got, []int64{15_000, 19_000}) {
		t.Errorf("a's windows start at %v; want 15000 and 19000 (the one at 0 expired)", got)
	}
	ws, cp, err = p.ScanWindowsPartitionAt("s", 0, store.WindowScanOptions{Prefix: []byte("a"), Limit: 2})
	if err != nil || cp != 41 || len(ws) != 2 || string(ws[0].Key) != "a" || string(ws[1].Key) != "a" {
		t.Fatalf("ScanWindowsPartitionAt: %v, checkpoint %d, %v; want a's two live windows at 41", ws, cp, err)
	}
	if ws, _, _ = p.ScanWindowsPartitionAt("s", 0, store.WindowScanOptions{Prefix: []byte("a")}); len(ws) != 3 {
		t.Errorf("prefix a: %d windows; want 3", len(ws))
	}
	if _, _, err := p.ScanWindowsPartitionAt("s", 1, store.WindowScanOptions{}); !errors.Is(err, abacus.ErrNotOwned) {
		t.Errorf("a partition not here: %v; want ErrNotOwned", err)
	}
	if _, _, _, err := p.GetWindowsAt("nope", []byte("a")); !errors.Is(err, abacus.ErrUnknownStore) {
		t.Errorf("an unknown store: %v; want ErrUnknownStore", err)
	}
}
