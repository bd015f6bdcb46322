package store

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"log/slog"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/abacus-streams/abacus/internal/testkit"
	"github.com/dgraph-io/badger/v4"
)

// history is what a test wrote to a store: the state of every partition
// after each of its checkpoints, so that whatever survives a damage can be
// checked to be one consistent committed state.
type history struct {
	// states[p][cp] is partition p's full content once checkpoint cp was written.
	states map[int32]map[int64]map[string]int64
}

// workloadBatches makes n batches of counts over 4 partitions, enough to
// flush several tables, and the history of states they commit.
func workloadBatches(n int) ([]Batch, history) {
	h := history{states: map[int32]map[int64]map[string]int64{}}
	r := rand.New(rand.NewPCG(7, 7))
	cur := map[int32]map[string]int64{}
	for p := range int32(4) {
		cur[p] = map[string]int64{}
		h.states[p] = map[int64]map[string]int64{}
	}
	var out []Batch
	for b := range n {
		p := int32(b % 4)
		batch := Batch{Counts: map[string]int64{}, Checkpoint: int64(b)}
		for range 600 {
			// Long keys fill the 8 MiB memtables (the least Badger takes
			// with its 1 MiB value threshold) with few entries.
			id := r.IntN(3_000)
			k := fmt.Sprintf("key-%05d-%s", id, strings.Repeat("x", 900+id%200))
			cur[p][k]++
			batch.Counts[k] = cur[p][k]
		}
		out = append(out, batch)
		h.states[p][int64(b)] = maps(cur[p])
	}
	return out, h
}

const fillBatches = 64

func openSmall(t *testing.T, dir string) *DB {
	t.Helper()
	db, err := Open(Config{Dir: dir, MemTableSize: 8 << 20, BlockCacheSize: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	return db
}

func fill(t *testing.T, db *DB, batches []Batch) {
	t.Helper()
	for i, b := range batches {
		if err := db.Partition(int32(i % 4)).Commit(b); err != nil {
			t.Fatal(err)
		}
	}
}

// fillStore fills a store in dir and closes it cleanly, or, with crash,
// fills it in a child process that is then killed with SIGKILL, leaving
// the files exactly as a crash does.
func fillStore(t *testing.T, dir string, crash bool) history {
	t.Helper()
	batches, h := workloadBatches(fillBatches)
	if !crash {
		db := openSmall(t, dir)
		fill(t, db, batches)
		if err := db.Close(); err != nil {
			t.Fatal(err)
		}
		return h
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestFillAndHang$", "-test.v")
	cmd.Env = append(os.Environ(), "ABACUS_STORE_FILL_DIR="+dir)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(out)
	filled := false
	for sc.Scan() {
		if sc.Text() == "filled" {
			filled = true
			break
		}
	}
	_ = cmd.Process.Kill()
	_ = cmd.Wait()
	if !filled {
		t.Fatal("the filling process ended before it filled the store")
	}
	return h
}

// TestFillAndHang is the child process of fillStore: it fills the store,
// says so and waits to be killed.
func TestFillAndHang(t *testing.T) {
	dir := os.Getenv("ABACUS_STORE_FILL_DIR")
	if dir == "" {
		t.Skip("only run as the child process of a crash test")
	}
	batches, _ := workloadBatches(fillBatches)
	db := openSmall(t, dir)
	fill(t, db, batches)
	fmt.Println("filled")
	time.Sleep(time.Minute)
}

func maps(m map[string]int64) map[string]int64 {
	out := make(map[string]int64, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// damage is one way a store's files can be broken while the process is down.
type damage struct {
	name string
	// glob picks the files damaged (the largest match, or the first in name order).
	glob string
	do   func(t testing.TB, path string)
}

var damages = []damage{
	{"delete MANIFEST", "MANIFEST", testkit.DeleteFile},
	{"truncate MANIFEST to half", "MANIFEST", testkit.HalveFile},
	{"empty MANIFEST", "MANIFEST", func(t testing.TB, p string) { _ = os.Truncate(p, 0) }},
	{"garbage in MANIFEST", "MANIFEST", testkit.Scribble(0.5)},
	{"delete KEYREGISTRY", "KEYREGISTRY", testkit.DeleteFile},
	{"garbage in KEYREGISTRY", "KEYREGISTRY", testkit.Scribble(0)},
	{"truncate an .sst to half", "*.sst", testkit.HalveFile},
	{"garbage in an .sst", "*.sst", testkit.Scribble(0.5)},
	{"garbage at an .sst's start", "*.sst", testkit.Scribble(0)},
	{"garbage at an .sst's end", "*.sst", testkit.Scribble(1)},
	{"delete an .sst", "*.sst", testkit.DeleteFile},
	{"delete every .sst", "*.sst*", nil},
	{"truncate a .vlog to half", "*.vlog", testkit.HalveFile},
	{"garbage in a .vlog", "*.vlog", testkit.Scribble(0.5)},
	{"delete a .vlog", "*.vlog", testkit.DeleteFile},
	{"truncate a .mem to half", "*.mem", testkit.HalveFile},
	{"garbage in a .mem", "*.mem", testkit.Scribble(0.01)},
	{"cut a .mem inside its last transaction", "*.mem", cutInsideLastTxn},
}

// cutInsideLastTxn truncates a write-ahead log between two entries of its
// last complete transaction: every entry left checks out, but the
// transaction is torn. (A cut at half the file lands there once in about
// a thousand runs.) It stays here, not with the other damages in testkit,
// because it finds the entries with this package's log parser.
func cutInsideLastTxn(t testing.TB, path string) {
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	committed, _ := walReplayEnd(data)
	var starts []int
	for off := walHeaderBytes; off < committed; {
		_, n, ok := walEntry(data[off:])
		if !ok {
			t.Fatalf("entry at %d of %s does not check out", off, path)
		}
		starts = append(starts, off)
		off += n
	}
	if len(starts) < 2 {
		t.Skipf("%s holds no transaction to cut", filepath.Base(path))
	}
	// The last entry is the commit; the one before it belongs to the transaction.
	if err := os.Truncate(path, int64(starts[len(starts)-2])); err != nil {
		t.Fatal(err)
	}
}

// TestOpenDamagedStore damages a store while it is closed (after a clean
// close, and as a crash leaves it) and checks that Open either moves it
// aside and starts empty, or keeps a state that is one committed state of
// each partition exactly: never a mix, never garbage, never an error.
func TestOpenDamagedStore(t *testing.T) {
	for _, crashed := range []bool{false, true} {
		src := filepath.Join(t.TempDir(), "src")
		h := fillStore(t, src, crashed)
		snapshot := func(to string) { testkit.CopyDir(t, src, to) }
		for _, d := range damages {
			mode := "closed"
			if crashed {
				mode = "crashed"
			}
			t.Run(mode+"/"+d.name, func(t *testing.T) {
				dir := filepath.Join(t.TempDir(), "counts-store")
				snapshot(dir)
				files := testkit.FilesBySize(dir, d.glob)
				if len(files) == 0 {
					t.Skipf("no %s in a %s store (%s)", d.glob, mode, testkit.ListDir(dir))
				}
				if d.do == nil {
					for _, f := range files {
						testkit.DeleteFile(t, f)
					}
				} else {
					d.do(t, files[0])
				}
				var logs testkit.LogBuffer
				opened, err := Open(Config{Dir: dir, MemTableSize: 8 << 20, BlockCacheSize: 1 << 20,
					Logger: slog.New(slog.NewTextHandler(&logs, nil))})
				if err != nil {
					t.Fatalf("Open after %s: %v (a damaged store must be moved aside, not fail the start)", d.name, err)
				}
				defer opened.Close()
				_, statErr := os.Stat(dir + ".damaged")
				movedAside := statErr == nil
				verdict := checkConsistent(t, opened, h)
				t.Logf("%s: moved aside %v; %s", d.name, movedAside, verdict)
				if movedAside && !strings.Contains(logs.String(), "state store damaged") {
					t.Errorf("moved aside without saying why: %s", logs.String())
				}
			})
		}
	}
}

// checkConsistent fails the test unless every partition either has no
// checkpoint (a full restore rewrites it) or holds exactly the state of
// its checkpoint, readable without errors.
func checkConsistent(t *testing.T, db *DB, h history) string {
	t.Helper()
	var out []string
	for p := range int32(4) {
		part := db.Partition(p)
		cp, err := part.Checkpoint()
		if err != nil {
			t.Errorf("partition %d: checkpoint unreadable: %v", p, err)
			continue
		}
		got := map[string]int64{}
		if err := part.Scan(ScanOptions{}, func(k []byte, v int64) bool { got[string(k)] = v; return true }); err != nil {
			t.Errorf("partition %d: scan: %v", p, err)
			continue
		}
		if cp == NoCheckpoint {
			out = append(out, fmt.Sprintf("p%d: no checkpoint, %d keys", p, len(got)))
			continue
		}
		want, ok := h.states[p][cp]
		if !ok {
			t.Errorf("partition %d: checkpoint %d was never written", p, cp)
			continue
		}
		bad, i := 0, 0
		for k, v := range want {
			if got[k] != v {
				if bad++; bad <= 3 {
					t.Errorf("partition %d at checkpoint %d: %.24q... = %d, want %d", p, cp, k, got[k], v)
				}
			}
			// Point reads (a sample) must agree with the scan.
			if i++; i%64 != 0 {
				continue
			}
			if n, found, err := part.Get([]byte(k)); err != nil || (found && n != got[k]) {
				if bad++; bad <= 3 {
					t.Errorf("partition %d: Get(%.24q...) = %d %v %v, scan said %d", p, k, n, found, err, got[k])
				}
			}
		}
		for k := range got {
			if _, ok := want[k]; !ok {
				if bad++; bad <= 3 {
					t.Errorf("partition %d at checkpoint %d: key %.24q... was not written by then", p, cp, k)
				}
			}
		}
		if bad > 0 {
			t.Errorf("partition %d: %d keys wrong: the store serves a state that was never committed", p, bad)
		}
		out = append(out, fmt.Sprintf("p%d: checkpoint %d, %d keys", p, cp, len(got)))
	}
	return strings.Join(out, "; ")
}

// TestDamageAfterOpen damages the tables under an open store (as a failing
// disk does) in a child process that then reads every key: a read of the
// damaged part must fail (an error, or a panic of Badger's table code),
// never return a wrong count. Badger's compactions may also panic on the
// damage and take the process down, as they would the instance's. The
// next Open must then find the damage and move the store aside.
func TestDamageAfterOpen(t *testing.T) {
	for _, where := range []float64{0.5, 0.97} {
		t.Run(fmt.Sprintf("garbage at %.0f%%", where*100), func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "counts-store")
			fillStore(t, dir, false)
			cmd := exec.Command(os.Args[0], "-test.run=^TestReadDamaged$", "-test.v")
			cmd.Env = append(os.Environ(), "ABACUS_STORE_DAMAGE_DIR="+dir, fmt.Sprintf("ABACUS_STORE_DAMAGE_AT=%v", where))
			out, _ := cmd.CombinedOutput()
			var report string
			for _, line := range strings.Split(string(out), "\n") {
				if strings.HasPrefix(line, "WRONG ") {
					t.Errorf("a read of the damaged store returned a wrong count: %s", line)
				}
				if strings.HasPrefix(line, "REPORT ") {
					report = line
				}
			}
			if report == "" {
				report = "the process crashed before it read every key (" + crashCause(string(out)) + ")"
			} else if strings.Contains(report, " failed=0 ") {
				t.Errorf("no read failed: the damage was never read (test broken?): %s", report)
			}
			t.Logf("reads under the damaged open store: %s", report)

			openMovedAside(t, dir).Close()
		})
	}
}

// openMovedAside opens the damaged store in dir and fails the test unless
// Open moved it aside, saying so in its log, and opened an empty one.
func openMovedAside(t *testing.T, dir string) *DB {
	t.Helper()
	var logs testkit.LogBuffer
	db, err := Open(Config{Dir: dir, MemTableSize: 8 << 20, BlockCacheSize: 1 << 20,
		Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatalf("reopen: %v (a damaged store must be moved aside, not fail the start)", err)
	}
	if _, err := os.Stat(dir + ".damaged"); err != nil || !strings.Contains(logs.String(), "state store damaged") {
		t.Errorf("reopening the damaged store did not move it aside: %v; log: %s", err, logs.String())
	}
	if parts, _ := db.Partitions(); len(parts) != 0 {
		t.Errorf("the reopened store holds partitions %v, want none (all restored from the changelog)", parts)
	}
	return db
}

func crashCause(out string) string {
	for _, line := range strings.Split(out, "\n") {
		if strings.HasPrefix(line, "panic: ") {
			return line
		}
	}
	return "no panic message"
}

// TestReadDamaged is the child process of TestDamageAfterOpen.
func TestReadDamaged(t *testing.T) {
	dir := os.Getenv("ABACUS_STORE_DAMAGE_DIR")
	if dir == "" {
		t.Skip("only run as the child process of TestDamageAfterOpen")
	}
	var where float64
	fmt.Sscan(os.Getenv("ABACUS_STORE_DAMAGE_AT"), &where)
	_, h := workloadBatches(fillBatches)
	db := openSmall(t, dir)
	for _, f := range testkit.FilesBySize(dir, "*.sst") {
		testkit.ScribbleAt(t, f, where)
	}
	wrong, failed, panicked, right := 0, 0, 0, 0
	get := func(part *Partition, k string) (n int64, found bool, err error) {
		defer func() {
			if r := recover(); r != nil {
				err = fmt.Errorf("panic: %v", r)
				panicked++
			}
		}()
		return part.Get([]byte(k))
	}
	for p := range int32(4) {
		part := db.Partition(p)
		for k, want := range h.states[p][int64(fillBatches-4+int(p))] {
			n, found, err := get(part, k)
			switch {
			case err != nil:
				failed++
			case !found || n != want:
				wrong++
				fmt.Printf("WRONG partition %d: %.24q... = %d (found %v), want %d\n", p, k, n, found, want)
			default:
				right++
			}
		}
	}
	fmt.Printf("REPORT right=%d failed=%d panicked=%d wrong=%d \n", right, failed, panicked, wrong)
	os.Exit(0) // no Close: its compactions may panic on the damage
}

// walBytes builds a write-ahead log as Badger writes one: a 20-byte header
// and transactions of three entries and a commit each, an entry being meta,
// user meta, uvarint key and value lengths and expiry, key (with its
// version), value and CRC-32C, in a file preallocated with zeros. It
// returns where each entry starts, and where the last one ends.
func walBytes(txns int, size int) ([]byte, []int) {
	data := make([]byte, size)
	off := walHeaderBytes
	var starts []int
	put := func(meta byte, key, value []byte) {
		e := []byte{meta, 0}
		e = binary.AppendUvarint(e, uint64(len(key)))
		e = binary.AppendUvarint(e, uint64(len(value)))
		e = binary.AppendUvarint(e, 0)
		e = append(append(e, key...), value...)
		e = binary.BigEndian.AppendUint32(e, crc32.Checksum(e, crc32.MakeTable(crc32.Castagnoli)))
		starts = append(starts, off)
		off += copy(data[off:], e)
	}
	withTs := func(key string, ts uint64) []byte {
		return binary.BigEndian.AppendUint64([]byte(key), math.MaxUint64-ts)
	}
	for i := range txns {
		ts := uint64(i + 1)
		for j := range 3 {
			put(walBitTxn, withTs(fmt.Sprintf("\x00\x00\x00\x01kkey-%04d", 3*i+j), ts), []byte(fmt.Sprint(i)))
		}
		put(walBitFinTxn, withTs("!badger!txn", 0), []byte(fmt.Sprint(ts)))
	}
	return data, append(starts, off)
}

func TestCheckWAL(t *testing.T) {
	for _, tc := range []struct {
		name    string
		newest  bool
		damage  func(data []byte, starts []int)
		damaged bool
	}{
		{"clean", true, func([]byte, []int) {}, false},
		{"clean older log", false, func([]byte, []int) {}, false},
		{"torn last entry (a crash mid-write)", true, func(d []byte, s []int) {
			clear(d[s[len(s)-2]+12 : s[len(s)-1]])
		}, false},
		{"torn last entry of an older log", false, func(d []byte, s []int) {
			clear(d[s[len(s)-2]+12 : s[len(s)-1]])
		}, true},
		{"garbage in the middle", true, func(d []byte, s []int) {
			copy(d[s[50]+3:], "garbage!")
		}, true},
		{"an entry in the middle zeroed", true, func(d []byte, s []int) {
			clear(d[s[50]:s[51]])
		}, true},
		{"garbage over the last entries (as a torn write: harmless)", true, func(d []byte, s []int) {
			copy(d[s[98]+3:], "garbage!garbage!garbage!garbage!garbage!garbage!garbage!")
		}, false},
		{"garbage past the end (harmless)", true, func(d []byte, s []int) {
			copy(d[s[len(s)-1]+4096:], "garbage!")
		}, false},
		{"damaged header", true, func(d []byte, s []int) {
			copy(d[2:], "garbage!")
		}, true},
		// A cut between two entries of a transaction leaves every entry
		// before it sound; Badger drops the transaction it tore.
		{"cut inside the last transaction", true, func(d []byte, s []int) {
			clear(d[s[len(s)-3]:])
		}, false},
		{"cut inside the last transaction of an older log", false, func(d []byte, s []int) {
			clear(d[s[len(s)-3]:])
		}, true},
		{"cut after the last transaction's commit of an older log", false, func(d []byte, s []int) {
			clear(d[s[len(s)-1]:])
		}, false},
		{"a transaction in the middle zeroed", true, func(d []byte, s []int) {
			clear(d[s[48]:s[52]])
		}, true},
		{"a commit in the middle zeroed", true, func(d []byte, s []int) {
			clear(d[s[51]:s[52]])
		}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			data, starts := walBytes(25, 64<<10)
			tc.damage(data, starts)
			path := filepath.Join(t.TempDir(), "00001.mem")
			if err := os.WriteFile(path, data, 0o644); err != nil {
				t.Fatal(err)
			}
			err := checkWAL(path, tc.newest)
			if (err != nil) != tc.damaged {
				t.Errorf("checkWAL = %v; want damage %v", err, tc.damaged)
			}
		})
	}
}

// TestOpenMovesAsideDamageOnlyBadgerFinds damages a store where checkFiles
// does not look and Badger's open does: the store must still be moved
// aside. It pins isDamage's typed check of badger.ErrEncryptionKeyMismatch
// and each text of badgerDamageTexts against the Badger in go.mod.
func TestOpenMovesAsideDamageOnlyBadgerFinds(t *testing.T) {
	src := filepath.Join(t.TempDir(), "src")
	fillStore(t, src, false)
	for _, tc := range []struct {
		name   string
		damage func(t *testing.T, dir string)
		// badger is how Badger's open error says it.
		badger func(err error) bool
	}{
		{"the KEYREGISTRY's sanity text garbled", func(t *testing.T, dir string) {
			overwrite(t, filepath.Join(dir, badger.KeyRegistryFileName), 16, []byte("Hello Dagger"))
		}, func(err error) bool { return errors.Is(err, badger.ErrEncryptionKeyMismatch) }},
		{"a KEYREGISTRY data key failing its checksum", func(t *testing.T, dir string) {
			path := filepath.Join(dir, badger.KeyRegistryFileName)
			fi, err := os.Stat(path)
			if err != nil {
				t.Fatal(err)
			}
			// An entry is its length, its CRC-32C and its bytes.
			overwrite(t, path, fi.Size(), []byte{0, 0, 0, 4, 0, 0, 0, 0, 'k', 'e', 'y', '!'})
		}, func(err error) bool { return strings.Contains(err.Error(), badgerDamageTexts[1].text) }},
		{"the tables of one level overlapping", func(t *testing.T, dir string) {
			moveTablesToLevel(t, dir, 6)
		}, func(err error) bool { return strings.Contains(err.Error(), badgerDamageTexts[0].text) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "counts-store")
			testkit.CopyDir(t, src, dir)
			tc.damage(t, dir)
			opts := badger.DefaultOptions(dir).WithLogger(nil)
			if err := checkFiles(dir, opts); err != nil {
				t.Fatalf("checkFiles found the damage (%v): the test no longer reaches Badger's open", err)
			}
			_, err := openBadger(opts)
			if err == nil || !tc.badger(err) || !isDamage(err) {
				t.Fatalf("Badger's open = %v; want the error this case pins, taken for damage", err)
			}
			openMovedAside(t, dir).Close()
		})
	}
}

// overwrite writes b at off of the file at path.
func overwrite(t *testing.T, path string, off int64, b []byte) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
}

// moveTablesToLevel appends a change set to the MANIFEST that moves every
// table to level, a DELETE and a CREATE each, framed as Badger frames one
// (manifest.go: length, CRC-32C, then the protobuf ManifestChangeSet, here
// written field by field).
func moveTablesToLevel(t *testing.T, dir string, level int) {
	t.Helper()
	path := filepath.Join(dir, badger.ManifestFilename)
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	m, _, err := badger.ReplayManifestFile(f, 0, badger.DefaultOptions(dir))
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Tables) < 2 {
		t.Fatalf("%d tables: none can overlap", len(m.Tables))
	}
	varint := func(b []byte, field int, v uint64) []byte {
		return binary.AppendUvarint(append(b, byte(field<<3)), v)
	}
	var set []byte
	for id, tm := range m.Tables {
		del := varint(varint(nil, 1, id), 2, 1) // Id, Op DELETE
		create := varint(varint(nil, 1, id), 3, uint64(level))
		if tm.Compression != 0 {
			create = varint(create, 6, uint64(tm.Compression))
		}
		for _, change := range [][]byte{del, create} {
			set = append(binary.AppendUvarint(append(set, 1<<3|2), uint64(len(change))), change...)
		}
	}
	entry := binary.BigEndian.AppendUint32(nil, uint32(len(set)))
	entry = binary.BigEndian.AppendUint32(entry, crc32.Checksum(set, crc32.MakeTable(crc32.Castagnoli)))
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	overwrite(t, path, fi.Size(), append(entry, set...))
}
