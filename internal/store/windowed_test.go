package store

import (
	"bytes"
	"fmt"
	stdmaps "maps"
	"slices"
	"strings"
	"testing"

	"github.com/dgraph-io/badger/v4"
)

// wk is the window key of key's window from start to end, as a string.
func wk(key string, start, end int64) string {
	return string(EncodeWindowKey(Window{Key: []byte(key), Start: start, End: end}))
}

func windowedOf(t *testing.T, p *Partition, name string) *WindowedStore {
	t.Helper()
	s, err := p.Windowed(name)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// windowsOf is every window of the store, by window key.
func windowsOf(t *testing.T, s *WindowedStore) map[string]int64 {
	t.Helper()
	out := map[string]int64{}
	if err := s.ScanWindows(WindowScanOptions{}, func(wc WindowCount) bool {
		out[string(EncodeWindowKey(wc.Window))] = wc.Count
		return true
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

// checkIndex fails the test unless the store's expiry index holds exactly
// one entry per window, under the window's end.
func checkIndex(t *testing.T, s *WindowedStore) {
	t.Helper()
	index := map[string]bool{}
	err := s.p.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: s.indexPrefix})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			index[string(it.Item().Key())] = true
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	windows := windowsOf(t, s)
	for k := range windows {
		if !index[string(s.indexKey([]byte(k)))] {
			t.Errorf("%s: window %q has no index entry", s.name, k)
		}
	}
	if len(index) != len(windows) {
		t.Errorf("%s: %d index entries for %d windows", s.name, len(index), len(windows))
	}
}

func checkpoints(t *testing.T, s *WindowedStore) (cp, streamTime int64) {
	t.Helper()
	cp, err := s.Checkpoint()
	if err != nil {
		t.Fatal(err)
	}
	if streamTime, err = s.StreamTime(); err != nil {
		t.Fatal(err)
	}
	return cp, streamTime
}

// A commit writes counts and the windows of several stores with their
// checkpoints and stream times; each store reads back its own, with an
// index entry per window, after a reopen too. A later commit's deletes
// take windows and their index entries away; a store the batch does not
// name keeps its checkpoint.
func TestWindowedCommitAndReadBack(t *testing.T) {
	dir := t.TempDir()
	db := newDB(t, dir)
	p := db.Partition(4)
	sessions := map[string]int64{wk("alice", 100, 180): 3, wk("alice", 500, 500): 1, wk("bob", 120, 400): 7, wk("", 0, 9): 2}
	minutes := map[string]int64{wk("alice", 60_000, 120_000): 4, wk("\x00bin\xff", 0, 60_000): 5}
	counts := map[string]int64{"alice": 4, "bob": 7}
	if err := p.Commit(Batch{Counts: counts, Checkpoint: 17, Windowed: map[string]WindowedBatch{
		"sessions":   {Puts: sessions, Checkpoint: 33, StreamTime: 500},
		"per-minute": {Puts: minutes, Checkpoint: 8, StreamTime: 119_000},
	}}); err != nil {
		t.Fatal(err)
	}
	check := func(p *Partition, sessions, minutes map[string]int64, sessionsCP, sessionsTime int64) {
		t.Helper()
		if c := contents(t, p); !stdmaps.Equal(c, counts) {
			t.Errorf("counts %v; want %v", c, counts)
		}
		if cp := checkpointOf(t, p); cp != 17 {
			t.Errorf("count checkpoint %d; want 17", cp)
		}
		for _, tc := range []struct {
			name     string
			want     map[string]int64
			cp, time int64
		}{{"sessions", sessions, sessionsCP, sessionsTime}, {"per-minute", minutes, 8, 119_000}, {"never-written", map[string]int64{}, NoCheckpoint, NoStreamTime}} {
			s := windowedOf(t, p, tc.name)
			if got := windowsOf(t, s); !stdmaps.Equal(got, tc.want) {
				t.Errorf("%s holds %v; want %v", tc.name, got, tc.want)
			}
			if cp, st := checkpoints(t, s); cp != tc.cp || st != tc.time {
				t.Errorf("%s: checkpoint %d, stream time %d; want %d, %d", tc.name, cp, st, tc.cp, tc.time)
			}
			checkIndex(t, s)
		}
	}
	check(p, sessions, minutes, 33, 500)
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	db = newDB(t, dir)
	defer db.Close()
	p = db.Partition(4)
	check(p, sessions, minutes, 33, 500)

	// A session merged into a longer one: the old ones deleted, the new put.
	if err := p.Commit(Batch{Checkpoint: 17, Windowed: map[string]WindowedBatch{
		"sessions": {Puts: map[string]int64{wk("alice", 100, 500): 4}, Deletes: []string{wk("alice", 100, 180), wk("alice", 500, 500)}, Checkpoint: 35, StreamTime: 510},
	}}); err != nil {
		t.Fatal(err)
	}
	merged := map[string]int64{wk("alice", 100, 500): 4, wk("bob", 120, 400): 7, wk("", 0, 9): 2}
	check(p, merged, minutes, 35, 510)
	if parts, err := db.Partitions(); err != nil || fmt.Sprint(parts) != "[4]" {
		t.Errorf("Partitions() = %v, %v; want [4]", parts, err)
	}
}

// A commit with an invalid windowed store name, window key, checkpoint or
// stream time fails and moves no checkpoint.
func TestWindowedCommitRefusesInvalidWrites(t *testing.T) {
	db := newDB(t, t.TempDir())
	defer db.Close()
	p := db.Partition(0)
	commitCounts(t, p, map[string]int64{"a": 1}, 5)
	good := WindowedBatch{Puts: map[string]int64{wk("k", 1, 2): 1}, Checkpoint: 3}
	for name, b := range map[string]map[string]WindowedBatch{
		"empty name":        {"": good},
		"name too long":     {strings.Repeat("n", MaxWindowedStoreName+1): good},
		"bad window key":    {"w": {Puts: map[string]int64{"not a window key": 1}, Checkpoint: 3}},
		"bad deleted key":   {"w": {Deletes: []string{wk("k", 5, 4)}, Checkpoint: 3}},
		"no checkpoint":     {"w": {Puts: good.Puts, Checkpoint: NoCheckpoint}},
		"stream time < -1":  {"w": {Puts: good.Puts, Checkpoint: 3, StreamTime: -2}},
		"one bad of two ok": {"v": good, "w": {Puts: map[string]int64{wk("k", 1, 2) + "x": 1}, Checkpoint: 3}},
	} {
		if err := p.Commit(Batch{Counts: map[string]int64{"a": 2}, Checkpoint: 6, Windowed: b}); err == nil {
			t.Errorf("%s: the commit went through", name)
		}
		if cp := checkpointOf(t, p); cp != 5 {
			t.Errorf("%s: count checkpoint %d after a refused commit; want 5", name, cp)
		}
		for _, store := range []string{"v", "w"} {
			if cp, _ := checkpoints(t, windowedOf(t, p, store)); cp != NoCheckpoint {
				t.Errorf("%s: store %s has checkpoint %d after a refused commit", name, store, cp)
			}
		}
	}
	if _, err := p.Windowed(strings.Repeat("n", MaxWindowedStoreName)); err != nil {
		t.Errorf("a name of %d bytes: %v", MaxWindowedStoreName, err)
	}
}

// fixedWindows are n windows whose keys and counts all have the same
// length.
func fixedWindows(n int) map[string]int64 {
	out := make(map[string]int64, n)
	for i := range n {
		out[wk(fmt.Sprintf("key-%07d", i/3), int64(i%3)*60_000, int64(i%3+1)*60_000)] = int64(1_000_000 + i)
	}
	return out
}

// A commit too big for one transaction writes every count and window,
// every index entry and every checkpoint.
func TestWindowedCommitLargerThanOneTransaction(t *testing.T) {
	db := openSmall(t, t.TempDir())
	defer db.Close()
	p := db.Partition(3)
	counts := map[string]int64{}
	for i := range 20_000 {
		counts[fmt.Sprintf("key-%07d", i)] = int64(i)
	}
	a, b := fixedWindows(30_000), fixedWindows(20_000)
	if err := p.Commit(Batch{Counts: counts, Checkpoint: 9, Windowed: map[string]WindowedBatch{
		"a": {Puts: a, Checkpoint: 29_999, StreamTime: 180_000},
		"b": {Puts: b, Checkpoint: 19_999, StreamTime: 120_000},
	}}); err != nil {
		t.Fatal(err)
	}
	if c := contents(t, p); !stdmaps.Equal(c, counts) {
		t.Errorf("%d counts read back; want the %d committed", len(c), len(counts))
	}
	for _, tc := range []struct {
		name     string
		want     map[string]int64
		cp, time int64
	}{{"a", a, 29_999, 180_000}, {"b", b, 19_999, 120_000}} {
		s := windowedOf(t, p, tc.name)
		if got := windowsOf(t, s); !stdmaps.Equal(got, tc.want) {
			t.Errorf("%s: %d windows read back; want the %d committed", tc.name, len(got), len(tc.want))
		}
		if cp, st := checkpoints(t, s); cp != tc.cp || st != tc.time {
			t.Errorf("%s: checkpoint %d, stream time %d; want %d, %d", tc.name, cp, st, tc.cp, tc.time)
		}
		checkIndex(t, s)
	}
	if cp := checkpointOf(t, p); cp != 9 {
		t.Errorf("count checkpoint %d; want 9", cp)
	}
}

// latestVersions is the commit timestamp of the latest version of each key
// under prefix, deletions included.
func latestVersions(t *testing.T, db *DB, prefix []byte) map[string]uint64 {
	t.Helper()
	out := map[string]uint64{}
	err := db.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix, AllVersions: true})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			if k := string(it.Item().Key()); out[k] == 0 {
				out[k] = it.Item().Version() // the newest comes first
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// A commit's checkpoints and stream times go in its last transaction, all
// in the same one, after every value: even when the values fill the
// transaction up to where the checkpoints would no longer all fit. The
// window counts are picked so that written one after the other the
// checkpoints would straddle two transactions.
func TestCommitWritesTheCheckpointsTogetherLast(t *testing.T) {
	db := openSmall(t, t.TempDir())
	defer db.Close()
	stores := []string{"s1", "s2", "s3"}
	// Where Badger would cut a commit of n windows written one entry
	// after the other (Txn.checkSize: an entry is its key, its value and
	// 12 bytes): the index entries are empty, the counts, checkpoints and
	// stream times have 7, 7 and 6 digits.
	p0 := db.Partition(0)
	meta := []int64{int64(len(p0.checkpointKey) + 7 + 12)}
	for _, name := range stores {
		s := windowedOf(t, p0, name)
		meta = append(meta, int64(len(s.checkpointKey)+7+12), int64(len(s.streamTimeKey)+6+12))
	}
	one, k := windowedOf(t, p0, stores[0]), []byte(wk("key-0000000", 0, 60_000))
	index, data := int64(len(one.indexKey(k))+12), int64(len(one.dataKey(k))+7+12)
	maxCount, maxSize := db.db.MaxBatchCount(), db.db.MaxBatchSize()
	cutIn := func(n int) int { // the index of the checkpoint entry Badger refuses first, -1 for none
		var sizes []int64
		for range n {
			sizes = append(sizes, index, data)
		}
		sizes = append(sizes, meta...)
		var count, size int64
		for i, s := range sizes {
			if count+1 >= maxCount || size+s >= maxSize {
				if i > len(sizes)-len(meta) {
					return i - (len(sizes) - len(meta))
				}
				count, size = 0, 0
			}
			count, size = count+1, size+s
		}
		return -1
	}
	var tried []int
	for n := 3; n < 3*int(maxCount) && len(tried) < 2; n += 3 {
		if cutIn(n) > 0 {
			tried = append(tried, n)
		}
	}
	if len(tried) == 0 {
		t.Fatal("no window count makes Badger cut the checkpoints apart")
	}
	for i, n := range tried {
		p := db.Partition(int32(i + 1))
		batch := Batch{Checkpoint: 1_000_000, Windowed: map[string]WindowedBatch{}}
		for _, name := range stores {
			puts := map[string]int64{}
			for j := range n / len(stores) {
				puts[wk(fmt.Sprintf("key-%07d", j), 0, 60_000)] = 1_000_000 + int64(j%9)
			}
			batch.Windowed[name] = WindowedBatch{Puts: puts, Checkpoint: 1_000_000, StreamTime: 100_000}
		}
		if err := p.Commit(batch); err != nil {
			t.Fatal(err)
		}
		versions := latestVersions(t, db, p.keyPrefix[:4])
		var last, newestValue uint64
		for k, v := range versions {
			if k[4] == metaTag {
				if last != 0 && v != last {
					t.Fatalf("%d windows: the checkpoints were written in different transactions", n)
				}
				last = v
			} else {
				newestValue = max(newestValue, v)
			}
		}
		if newestValue > last || newestValue == 0 {
			t.Errorf("%d windows: a value was written after the checkpoints (%d > %d)", n, newestValue, last)
		}
	}
	t.Logf("window counts tried: %v", tried)
}

// Each window's index entry is written no later than the window, and
// removed no earlier, across the transactions of a commit too big for
// one, of an expiry, and of a wipe.
func TestWindowIndexEntryNeverFollowsItsWindow(t *testing.T) {
	db := openSmall(t, t.TempDir())
	defer db.Close()
	p := db.Partition(1)
	s := windowedOf(t, p, "w")
	windows := fixedWindows(24_000)
	if err := p.Commit(Batch{Checkpoint: 1, Windowed: map[string]WindowedBatch{"w": {Puts: windows, Checkpoint: 1}}}); err != nil {
		t.Fatal(err)
	}
	check := func(what string, indexFirst bool) {
		t.Helper()
		data, index := latestVersions(t, db, s.dataPrefix), latestVersions(t, db, s.indexPrefix)
		transactions := map[uint64]bool{}
		for k := range windows {
			d, i := data[string(s.dataKey([]byte(k)))], index[string(s.indexKey([]byte(k)))]
			transactions[d] = true
			if d == 0 || i == 0 {
				t.Fatalf("%s: window %q has no version", what, k)
			}
			if indexFirst && i > d || !indexFirst && i < d {
				t.Fatalf("%s: window %q at version %d, its index entry at %d", what, k, d, i)
			}
		}
		if len(transactions) < 2 {
			t.Fatalf("%s in %d transactions; the test wants several", what, len(transactions))
		}
	}
	check("commit", true)
	deletes := slices.Collect(stdmaps.Keys(windows))
	if err := p.Commit(Batch{Checkpoint: 2, Windowed: map[string]WindowedBatch{"w": {Deletes: deletes, Checkpoint: 2}}}); err != nil {
		t.Fatal(err)
	}
	check("commit of deletes", false)
	for _, remove := range []func() error{
		func() error { _, err := s.ExpireWindows(1 << 40); return err },
		p.Wipe,
	} {
		if err := p.Commit(Batch{Checkpoint: 3, Windowed: map[string]WindowedBatch{"w": {Puts: windows, Checkpoint: 3}}}); err != nil {
			t.Fatal(err)
		}
		if err := remove(); err != nil {
			t.Fatal(err)
		}
		check("expiry or wipe", false)
	}
}

// putWindows commits windows to store name of p, with a checkpoint.
func putWindows(t *testing.T, p *Partition, name string, windows map[string]int64, checkpoint int64) {
	t.Helper()
	cp := checkpointOf(t, p)
	if err := p.Commit(Batch{Checkpoint: max(cp, 0), Windowed: map[string]WindowedBatch{name: {Puts: windows, Checkpoint: checkpoint, StreamTime: NoStreamTime}}}); err != nil {
		t.Fatal(err)
	}
}

func describe(wcs []WindowCount) string {
	var b strings.Builder
	for _, wc := range wcs {
		fmt.Fprintf(&b, "[%q %d-%d:%d]", wc.Key, wc.Start, wc.End, wc.Count)
	}
	return b.String()
}

// GetWindows takes the windows of one key whose start lies in [from, to),
// in the order of start then end, and no window of a key it is a prefix
// of, or of a neighbouring key.
func TestGetWindowsRange(t *testing.T) {
	db := newDB(t, t.TempDir())
	defer db.Close()
	p := db.Partition(2)
	putWindows(t, p, "s", map[string]int64{
		wk("a", 0, 5): 1, wk("a", 10, 20): 2, wk("a", 10, 15): 3, wk("a", 20, 20): 4, wk("a", 30, 40): 5,
		wk("", 10, 11): 6, wk("a\x00", 10, 11): 7, wk("ab", 10, 11): 8, wk("`", 10, 11): 9, wk("b", 0, 1): 10,
	}, 1)
	putWindows(t, p, "other", map[string]int64{wk("a", 10, 11): 11}, 1)
	s := windowedOf(t, p, "s")
	for _, tc := range []struct {
		key      string
		from, to int64
		want     string
	}{
		{"a", 10, 30, `["a" 10-15:3]["a" 10-20:2]["a" 20-20:4]`},
		{"a", 0, 1 << 62, `["a" 0-5:1]["a" 10-15:3]["a" 10-20:2]["a" 20-20:4]["a" 30-40:5]`},
		{"a", 11, 30, `["a" 20-20:4]`},
		{"a", 10, 11, `["a" 10-15:3]["a" 10-20:2]`},
		{"a", 10, 10, ``},
		{"a", 30, 10, ``},
		{"a", -5, 1, `["a" 0-5:1]`},
		{"a", 31, 1 << 62, ``},
		{"", 0, 100, `["" 10-11:6]`},
		{"a\x00", 0, 100, `["a\x00" 10-11:7]`},
		{"c", 0, 100, ``},
	} {
		got, err := s.GetWindows([]byte(tc.key), tc.from, tc.to)
		if err != nil {
			t.Fatal(err)
		}
		if d := describe(got); d != tc.want {
			t.Errorf("GetWindows(%q, %d, %d) = %s; want %s", tc.key, tc.from, tc.to, d, tc.want)
		}
	}

	// Through a snapshot: as of its first read, until Refresh.
	snap := db.Snapshot()
	defer snap.Refresh()
	if got, err := s.GetWindowsIn(snap, []byte("b"), 0, 10); err != nil || describe(got) != `["b" 0-1:10]` {
		t.Errorf("GetWindowsIn = %s, %v", describe(got), err)
	}
	putWindows(t, p, "s", map[string]int64{wk("b", 0, 1): 12}, 2)
	if got, _ := s.GetWindowsIn(snap, []byte("b"), 0, 10); describe(got) != `["b" 0-1:10]` {
		t.Errorf("GetWindowsIn saw a later commit: %s", describe(got))
	}
	snap.Refresh()
	if got, _ := s.GetWindowsIn(snap, []byte("b"), 0, 10); describe(got) != `["b" 0-1:12]` {
		t.Errorf("GetWindowsIn after Refresh = %s", describe(got))
	}
}

// scanModel is what ScanWindows must pass for o, from the windows held:
// the same filter over a sorted list.
func scanModel(windows map[string]int64, o WindowScanOptions) []WindowCount {
	var out []WindowCount
	for _, k := range slices.Sorted(stdmaps.Keys(windows)) {
		w, _ := DecodeWindowKey([]byte(k))
		switch {
		case !bytes.HasPrefix(w.Key, o.Prefix),
			bytes.Compare(w.Key, o.From) < 0,
			len(o.To) > 0 && bytes.Compare(w.Key, o.To) >= 0,
			w.Start < o.StartFrom,
			o.StartTo > 0 && w.Start >= o.StartTo,
			len(o.After) > 0 && k <= string(o.After):
			continue
		}
		out = append(out, WindowCount{Window: w, Count: windows[k]})
		if o.Limit > 0 && len(out) == o.Limit {
			break
		}
	}
	return out
}

func scanAll(t *testing.T, s *WindowedStore, o WindowScanOptions) []WindowCount {
	t.Helper()
	var out []WindowCount
	if err := s.ScanWindows(o, func(wc WindowCount) bool { out = append(out, wc); return true }); err != nil {
		t.Fatal(err)
	}
	return out
}

// scanWindows are windows of keys that are prefixes of each other and
// hold 0x00, 0x01 and 0xFF, several per key.
func scanWindows() map[string]int64 {
	windows := map[string]int64{}
	n := int64(0)
	for _, key := range []string{"", "\x00", "\x00\xff", "\x01", "u", "us", "us\x00", "us\x00a", "us-a", "us-b", "us-c", "uk-a", "v", "\xff", "\xff\xff"} {
		for _, tm := range [][2]int64{{0, 10}, {10, 20}, {10, 15}, {20, 20}, {30, 90}, {1 << 40, 1<<40 + 5}} {
			n++
			windows[wk(key, tm[0], tm[1])] = n
		}
	}
	return windows
}

// ScanWindows passes windows in the order of (key, start, end), within
// its key bounds, start bounds and cursor, up to its limit: the same as
// a filter over the sorted windows.
func TestScanWindowsOrderAndBounds(t *testing.T) {
	db := newDB(t, t.TempDir())
	defer db.Close()
	p := db.Partition(6)
	windows := scanWindows()
	putWindows(t, p, "s", windows, 1)
	putWindows(t, p, "r", map[string]int64{wk("us-a", 10, 20): 1000}, 1) // another store
	putWindows(t, db.Partition(7), "s", map[string]int64{wk("us-a", 10, 20): 1000}, 1)
	commitCounts(t, db.Partition(5), map[string]int64{"us-a": 1000}, 1)
	s := windowedOf(t, p, "s")
	for _, tc := range []struct {
		name string
		o    WindowScanOptions
	}{
		{"all", WindowScanOptions{}},
		{"prefix", WindowScanOptions{Prefix: []byte("us")}},
		{"prefix with 0x00", WindowScanOptions{Prefix: []byte("us\x00")}},
		{"prefix 0x00", WindowScanOptions{Prefix: []byte("\x00")}},
		{"prefix 0xff", WindowScanOptions{Prefix: []byte("\xff")}},
		{"prefix matching nothing", WindowScanOptions{Prefix: []byte("w")}},
		{"from", WindowScanOptions{From: []byte("us-")}},
		{"from a key held", WindowScanOptions{From: []byte("us")}},
		{"to", WindowScanOptions{To: []byte("us")}},
		{"from to", WindowScanOptions{From: []byte("u"), To: []byte("us-b")}},
		{"prefix from to", WindowScanOptions{Prefix: []byte("us"), From: []byte("us\x00"), To: []byte("us-c")}},
		{"start from", WindowScanOptions{StartFrom: 10}},
		{"start to", WindowScanOptions{StartTo: 20}},
		{"start from to", WindowScanOptions{StartFrom: 10, StartTo: 30}},
		{"start from to, one start", WindowScanOptions{StartFrom: 20, StartTo: 21}},
		{"start from to, empty", WindowScanOptions{StartFrom: 21, StartTo: 21}},
		{"start from past all", WindowScanOptions{StartFrom: 1 << 41}},
		{"keys and starts", WindowScanOptions{Prefix: []byte("us"), From: []byte("us\x00a"), StartFrom: 10, StartTo: 25}},
		{"limit", WindowScanOptions{Limit: 7}},
		{"limit with starts", WindowScanOptions{StartFrom: 10, StartTo: 11, Limit: 5}},
		{"after", WindowScanOptions{After: []byte(wk("us", 10, 15))}},
		{"after a window not held", WindowScanOptions{After: []byte(wk("us", 11, 12))}},
		{"after, prefix", WindowScanOptions{Prefix: []byte("us"), After: []byte(wk("u", 30, 90))}},
		{"after, starts", WindowScanOptions{After: []byte(wk("us\x00", 10, 20)), StartFrom: 10, StartTo: 11}},
		{"after the last", WindowScanOptions{After: []byte(wk("\xff\xff", 1<<40, 1<<40+5))}},
	} {
		got, want := scanAll(t, s, tc.o), scanModel(windows, tc.o)
		if describe(got) != describe(want) {
			t.Errorf("%s: got %s\nwant %s", tc.name, describe(got), describe(want))
		}
		if tc.name == "all" && len(got) != len(windows) {
			t.Errorf("all: %d windows; want %d", len(got), len(windows))
		}
	}
	// fn stops the scan.
	n := 0
	if err := s.ScanWindows(WindowScanOptions{}, func(WindowCount) bool { n++; return n < 3 }); err != nil || n != 3 {
		t.Errorf("a scan fn that stops at its third window was called %d times (%v)", n, err)
	}
}

// Pages of any size, each after the last window of the one before, pass
// every window of the whole scan once, in order.
func TestScanWindowsPages(t *testing.T) {
	db := newDB(t, t.TempDir())
	defer db.Close()
	p := db.Partition(0)
	windows := scanWindows()
	putWindows(t, p, "s", windows, 1)
	s := windowedOf(t, p, "s")
	for _, bounds := range []WindowScanOptions{
		{},
		{Prefix: []byte("us")},
		{StartFrom: 10, StartTo: 30},
		{From: []byte("\x00\xff"), To: []byte("v"), StartFrom: 20},
	} {
		whole := describe(scanAll(t, s, bounds))
		for _, limit := range []int{1, 2, 3, 5, 6, 7, 1000} {
			var pages strings.Builder
			o := bounds
			o.Limit = limit
			for i := 0; ; i++ {
				page := scanAll(t, s, o)
				if len(page) > limit {
					t.Fatalf("a page of %d windows, over the limit %d", len(page), limit)
				}
				pages.WriteString(describe(page))
				if len(page) < limit {
					break
				}
				o.After = EncodeWindowKey(page[len(page)-1].Window)
				if i > len(windows) {
					t.Fatal("the pages never end")
				}
			}
			if pages.String() != whole {
				t.Errorf("bounds %+v, pages of %d: %s\nwant %s", bounds, limit, pages.String(), whole)
			}
		}
	}
}

// ExpireWindows removes exactly the windows that end at or before the
// cutoff, with their index entries, and nothing else: not the store's
// other windows, not another store's, not the counts or checkpoints.
func TestExpireWindows(t *testing.T) {
	db := openSmall(t, t.TempDir())
	defer db.Close()
	p := db.Partition(9)
	counts := map[string]int64{"a": 1, "b": 2}
	ends := []int64{0, 1, 99, 100, 101, 5_000, 1 << 40}
	windows := map[string]int64{}
	for i, end := range ends {
		for _, key := range []string{"a", "b\x00", "c"} {
			windows[wk(key, end/2, end)] = int64(i + 1)
			windows[wk(key, end, end)] = int64(i + 1)
		}
	}
	// Many more, ending before the cutoff, for several transactions.
	for i := range 10_000 {
		windows[wk(fmt.Sprintf("many-%06d", i), 0, int64(i%100))] = 1
	}
	others := map[string]int64{wk("a", 0, 1): 1}
	if err := p.Commit(Batch{Counts: counts, Checkpoint: 12, Windowed: map[string]WindowedBatch{
		"s": {Puts: windows, Checkpoint: 40, StreamTime: 3_000}, "o": {Puts: others, Checkpoint: 41, StreamTime: 7},
	}}); err != nil {
		t.Fatal(err)
	}
	s := windowedOf(t, p, "s")
	for _, cutoff := range []int64{-1, 0, 100, 100, 4_999, 1 << 41} {
		want := map[string]int64{}
		for k, n := range windows {
			if windowKeyEnd(k) > cutoff {
				want[k] = n
			}
		}
		removed, err := s.ExpireWindows(cutoff)
		if err != nil {
			t.Fatal(err)
		}
		got := windowsOf(t, s)
		if !stdmaps.Equal(got, want) {
			t.Errorf("cutoff %d: %d windows left; want %d", cutoff, len(got), len(want))
		}
		if removed != len(windows)-len(want) {
			t.Errorf("cutoff %d: removed %d; want %d", cutoff, removed, len(windows)-len(want))
		}
		checkIndex(t, s)
		windows = want
	}
	if len(windows) != 0 {
		t.Errorf("%d windows left past the last cutoff", len(windows))
	}
	if cp, st := checkpoints(t, s); cp != 40 || st != 3_000 {
		t.Errorf("expiry moved the store's checkpoint or stream time: %d, %d", cp, st)
	}
	o := windowedOf(t, p, "o")
	if got := windowsOf(t, o); !stdmaps.Equal(got, others) {
		t.Errorf("another store holds %v after the expiry; want %v", got, others)
	}
	if c, cp := contents(t, p), checkpointOf(t, p); !stdmaps.Equal(c, counts) || cp != 12 {
		t.Errorf("counts %v at checkpoint %d after the expiry; want %v at 12", c, cp, counts)
	}
}

// A wipe removes the windows, index, checkpoints and stream times of every
// windowed store of the partition, and nothing of another partition; the
// checkpoints go last.
func TestWipeRemovesWindowedStores(t *testing.T) {
	db := openSmall(t, t.TempDir())
	defer db.Close()
	for _, id := range []int32{2, 3, 4} {
		if err := db.Partition(id).Commit(Batch{Counts: map[string]int64{"a": 1}, Checkpoint: 1, Windowed: map[string]WindowedBatch{
			"s": {Puts: fixedWindows(12_000), Checkpoint: 2, StreamTime: 3},
			"t": {Puts: map[string]int64{wk("a", 1, 2): 1}, Checkpoint: 4, StreamTime: 5},
		}}); err != nil {
			t.Fatal(err)
		}
	}
	p := db.Partition(3)
	if err := p.Wipe(); err != nil {
		t.Fatal(err)
	}
	if empty, err := p.empty(); err != nil || !empty {
		t.Errorf("partition after its wipe: empty %v, %v", empty, err)
	}
	for _, name := range []string{"s", "t"} {
		s := windowedOf(t, p, name)
		if cp, st := checkpoints(t, s); cp != NoCheckpoint || st != NoStreamTime {
			t.Errorf("%s after the wipe: checkpoint %d, stream time %d", name, cp, st)
		}
		if w := windowsOf(t, s); len(w) != 0 {
			t.Errorf("%s after the wipe holds %d windows", name, len(w))
		}
	}
	var lastMeta, lastOther uint64
	for k, v := range latestVersions(t, db, p.keyPrefix[:4]) {
		if k[4] == metaTag {
			lastMeta = max(lastMeta, v)
		} else {
			lastOther = max(lastOther, v)
		}
	}
	if lastMeta < lastOther {
		t.Errorf("the wipe deleted a value (version %d) after the checkpoints (%d)", lastOther, lastMeta)
	}
	for _, id := range []int32{2, 4} {
		s := windowedOf(t, db.Partition(id), "s")
		if w := windowsOf(t, s); len(w) != 12_000 {
			t.Errorf("partition %d holds %d windows after the wipe of partition 3", id, len(w))
		}
		if cp, _ := checkpoints(t, s); cp != 2 {
			t.Errorf("partition %d: checkpoint %d after the wipe of partition 3", id, cp)
		}
	}
	if parts, err := db.Partitions(); err != nil || fmt.Sprint(parts) != "[2 4]" {
		t.Errorf("Partitions() = %v, %v; want [2 4]", parts, err)
	}
}

// WindowsEndingIn passes exactly the windows whose end lies in (after,
// upTo], in the order of their ends, skips an index entry left without
// its window, and stops when fn says so.
func TestWindowsEndingIn(t *testing.T) {
	db := openSmall(t, t.TempDir())
	defer db.Close()
	p := db.Partition(2)
	windows := map[string]int64{}
	for _, key := range []string{"a", "b"} {
		for _, end := range []int64{0, 5, 10, 15, 20} {
			windows[wk(key, max(end-5, 0), end)] = end + 1
		}
	}
	if err := p.Commit(Batch{Checkpoint: 3, Windowed: map[string]WindowedBatch{"s": {Puts: windows, Checkpoint: 9, StreamTime: 20}}}); err != nil {
		t.Fatal(err)
	}
	s := windowedOf(t, p, "s")
	// An index entry without its window, as a crash can leave one.
	orphan := []byte(wk("c", 8, 12))
	if err := db.db.Update(func(txn *badger.Txn) error { return txn.Set(s.indexKey(orphan), nil) }); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		after, upTo int64
		want        []string
	}{
		{-1, 0, []string{"a0-0=1", "b0-0=1"}},
		{0, 10, []string{"a0-5=6", "b0-5=6", "a5-10=11", "b5-10=11"}},
		{10, 12, nil},
		{12, 100, []string{"a10-15=16", "b10-15=16", "a15-20=21", "b15-20=21"}},
		{20, 20, nil},
		{15, 10, nil},
	} {
		var got []string
		snap := db.Snapshot()
		err := s.WindowsEndingIn(snap, c.after, c.upTo, func(wc WindowCount) bool {
			got = append(got, fmt.Sprintf("%s%d-%d=%d", wc.Key, wc.Start, wc.End, wc.Count))
			return true
		})
		snap.Refresh()
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(got, c.want) {
			t.Errorf("(%d, %d]: %v; want %v", c.after, c.upTo, got, c.want)
		}
	}
	n := 0
	snap := db.Snapshot()
	defer snap.Refresh()
	if err := s.WindowsEndingIn(snap, -1, 100, func(WindowCount) bool { n++; return n < 3 }); err != nil || n != 3 {
		t.Errorf("stopped after %d windows (%v); want 3", n, err)
	}
}

// RaiseStreamTime only ever raises the stored stream time.
func TestRaiseStreamTime(t *testing.T) {
	db := openSmall(t, t.TempDir())
	defer db.Close()
	s := windowedOf(t, db.Partition(1), "s")
	for _, c := range []struct{ raise, want int64 }{{-1, NoStreamTime}, {50, 50}, {40, 50}, {60, 60}} {
		if err := s.RaiseStreamTime(c.raise); err != nil {
			t.Fatal(err)
		}
		if got, err := s.StreamTime(); err != nil || got != c.want {
			t.Errorf("after raising to %d: %d (%v); want %d", c.raise, got, err, c.want)
		}
	}
}

// SessionsIn finds exactly the sessions of a key that start at or before
// to and end at or after from, and no other key's.
func TestSessionsIn(t *testing.T) {
	db := openSmall(t, t.TempDir())
	defer db.Close()
	p := db.Partition(0)
	sessions := [][2]int64{{0, 0}, {10, 20}, {30, 30}, {40, 55}, {1 << 40, 1<<40 + 5}}
	puts := map[string]int64{}
	for i, s := range sessions {
		puts[wk("a", s[0], s[1])] = int64(i + 1)
		puts[wk("a\x00", s[0]+1, s[1]+1)] = 100
		puts[wk("", s[0]+2, s[1]+2)] = 200
	}
	puts[wk("b", 25, 26)] = 300
	if err := p.Commit(Batch{Checkpoint: 1, Windowed: map[string]WindowedBatch{"s": {Puts: puts, Checkpoint: 1, StreamTime: 1}}}); err != nil {
		t.Fatal(err)
	}
	s := windowedOf(t, p, "s")
	for _, c := range []struct {
		from, to int64
		want     string
	}{
		{0, 0, "0-0=1"},
		{-5, 5, "0-0=1"},
		{1, 9, ""},
		{5, 25, "10-20=2"},
		{20, 30, "10-20=2 30-30=3"},
		{21, 29, ""},
		{0, 100, "0-0=1 10-20=2 30-30=3 40-55=4"},
		{50, 1 << 41, "40-55=4 1099511627776-1099511627781=5"},
		{60, 10, ""},
	} {
		snap := db.Snapshot()
		got, err := s.SessionsIn(snap, []byte("a"), c.from, c.to)
		snap.Refresh()
		if err != nil {
			t.Fatal(err)
		}
		var parts []string
		for _, wc := range got {
			if string(wc.Key) != "a" {
				t.Errorf("[%d, %d]: a window of key %q", c.from, c.to, wc.Key)
			}
			parts = append(parts, fmt.Sprintf("%d-%d=%d", wc.Start, wc.End, wc.Count))
		}
		if g := strings.Join(parts, " "); g != c.want {
			t.Errorf("[%d, %d]: %q; want %q", c.from, c.to, g, c.want)
		}
	}
}

// GetWindowsAt and ScanWindowsAt read the windows and the Mark in one
// view: while commits go on, each setting every window and the
// checkpoint to the same number, a read never sees a window ahead of or
// behind its checkpoint, nor another key's window in a key's answer.
func TestWindowsAtReadOneView(t *testing.T) {
	db := newDB(t, t.TempDir())
	defer db.Close()
	p := db.Partition(2)
	s := windowedOf(t, p, "sessions")
	if ws, m, err := s.GetWindowsAt([]byte("a")); err != nil || len(ws) != 0 || m != (Mark{NoCheckpoint, NoStreamTime}) {
		t.Fatalf("before any commit: %v, %+v, %v; want no windows and no mark", ws, m, err)
	}
	const commits = 300
	done := make(chan error, 1)
	go func() {
		for i := int64(1); i <= commits; i++ {
			puts := map[string]int64{wk("a", 0, 10): i, wk("a", 20, 30): i, wk("ab", 0, 10): i}
			if err := p.Commit(Batch{Checkpoint: i, Windowed: map[string]WindowedBatch{"sessions": {Puts: puts, Checkpoint: i, StreamTime: 1000 + i}}}); err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	check := func(ws []WindowCount, m Mark, n int) {
		t.Helper()
		if m.Checkpoint >= 1 && len(ws) != n {
			t.Fatalf("%d windows at checkpoint %d; want %d", len(ws), m.Checkpoint, n)
		}
		for _, w := range ws {
			if w.Count != m.Checkpoint || m.StreamTime != 1000+m.Checkpoint {
				t.Fatalf("window %s %d-%d = %d with the mark %+v: not one view", w.Key, w.Start, w.End, w.Count, m)
			}
		}
	}
	for reads := 0; ; reads++ {
		ws, m, err := s.GetWindowsAt([]byte("a"))
		if err != nil {
			t.Fatal(err)
		}
		check(ws, m, 2)
		var all []WindowCount
		m, err = s.ScanWindowsAt(WindowScanOptions{Prefix: []byte("a")}, func(_ Mark, wc WindowCount) bool { all = append(all, wc); return true })
		if err != nil {
			t.Fatal(err)
		}
		check(all, m, 3)
		select {
		case err := <-done:
			if err != nil {
				t.Fatal(err)
			}
			if ws, m, err = s.GetWindowsAt([]byte("a")); err != nil || m.Checkpoint != commits {
				t.Fatalf("after the last commit: mark %+v, %v; want checkpoint %d", m, err, commits)
			}
			check(ws, m, 2)
			t.Logf("%d reads", reads)
			return
		default:
		}
	}
}
