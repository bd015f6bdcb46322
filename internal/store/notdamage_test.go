package store

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

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

// storeWithEveryFile makes the directory of a store as a crash leaves it:
// a MANIFEST, a table, and its last commit only in a write-ahead log
// (.mem), copied while the store was open.
func storeWithEveryFile(t *testing.T) string {
	t.Helper()
	live := smallStore(t)
	db := openSmall(t, live)
	if err := db.Partition(0).Commit(Batch{Counts: map[string]int64{"b": 1}, Checkpoint: 10}); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "counts-store")
	testkit.CopyDir(t, live, dir)
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	for _, glob := range []string{"MANIFEST", "*.sst", "*.mem"} {
		if len(testkit.FilesBySize(dir, glob)) == 0 {
			t.Fatalf("no %s in the store: %s", glob, testkit.ListDir(dir))
		}
	}
	return dir
}

// childResult is what Open returned in the child process: opened, or the
// error's text; or the child's output if it ended before Open returned.
type childResult struct {
	opened bool
	err    string
	died   string
}

// openInChild runs Open on dir in a child process of the test binary
// (TestOpenInChild), with env set, and returns what it returned.
func openInChild(t *testing.T, dir string, env ...string) childResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestOpenInChild$", "-test.v")
	cmd.Env = append(append(os.Environ(), "ABACUS_STORE_CHILD_DIR="+dir), env...)
	// A child that hangs dumps its goroutines (SIGQUIT) before it is killed.
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGQUIT) }
	cmd.WaitDelay = 10 * time.Second
	out, err := cmd.CombinedOutput()
	for _, line := range strings.Split(string(out), "\n") {
		switch {
		case line == "OPENED":
			return childResult{opened: true}
		case strings.HasPrefix(line, "OPEN-ERROR: "):
			return childResult{err: strings.TrimPrefix(line, "OPEN-ERROR: ")}
		}
	}
	return childResult{died: fmt.Sprintf("%v: %s", err, out)}
}

// fillers keeps the descriptors TestOpenInChild fills gaps with open.
var fillers []*os.File

// TestOpenInChild is the child process of openInChild: it becomes the user
// ABACUS_STORE_CHILD_UID, or lowers its limit of open files to
// ABACUS_STORE_CHILD_NOFILE more than it has open, then opens the store.
func TestOpenInChild(t *testing.T) {
	dir := os.Getenv("ABACUS_STORE_CHILD_DIR")
	if dir == "" {
		t.Skip("only run as the child process of a test of Open")
	}
	if s := os.Getenv("ABACUS_STORE_CHILD_UID"); s != "" {
		id, _ := strconv.Atoi(s)
		if err := syscall.Setgroups(nil); err != nil {
			t.Fatal(err)
		}
		if err := syscall.Setgid(id); err != nil {
			t.Fatal(err)
		}
		if err := syscall.Setuid(id); err != nil {
			t.Fatal(err)
		}
	}
	if s := os.Getenv("ABACUS_STORE_CHILD_NOFILE"); s != "" {
		more, _ := strconv.Atoi(s)
		// A new descriptor takes the lowest number free, and the limit
		// bounds that number: fill every gap below the highest descriptor
		// open, so that exactly more can open under a limit of the next
		// number plus more. (The first file opened starts the runtime's
		// poller, which takes descriptors of its own: done before counting.)
		if f, err := os.Open(os.DevNull); err == nil {
			f.Close()
		}
		fds, err := os.ReadDir("/proc/self/fd")
		if err != nil {
			t.Fatal(err)
		}
		highest := 0
		for _, e := range fds {
			n, _ := strconv.Atoi(e.Name())
			highest = max(highest, n)
		}
		next := 0
		for next <= highest {
			f, err := os.Open(os.DevNull)
			if err != nil {
				t.Fatal(err)
			}
			if next = int(f.Fd()); next > highest {
				f.Close()
				break
			}
			fillers = append(fillers, f)
		}
		var lim syscall.Rlimit
		if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
			t.Fatal(err)
		}
		lim.Cur = uint64(next + more)
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
			t.Fatal(err)
		}
	}
	_, err := Open(Config{Dir: dir, MemTableSize: 8 << 20, BlockCacheSize: 1 << 20})
	if err != nil {
		fmt.Println("OPEN-ERROR: " + strings.ReplaceAll(err.Error(), "\n", " "))
	} else {
		fmt.Println("OPENED")
	}
	os.Exit(0) // no Close: the test is what Open did
}

// TestOpenLeavesAnUnreadableStoreAlone makes one file of a store unreadable
// (no permission for the user opening it, or a directory where the file
// should be) and opens it in a child process: Open must fail naming the
// file and the system's reason, and leave the store where and as it was.
// The child runs as the user nobody when the test runs as root (root reads
// a file whatever its mode), owning every file but the one made
// unreadable, and the directory above the store, so that the store could
// be moved aside.
func TestOpenLeavesAnUnreadableStoreAlone(t *testing.T) {
	const nobody = 65534
	root := os.Geteuid() == 0
	src := storeWithEveryFile(t)
	for _, tc := range []struct {
		name, glob string
		// dir: replace the file by a directory; else deny reading it.
		dir  bool
		want string
	}{
		{"MANIFEST not readable", "MANIFEST", false, "permission denied"},
		{"a table not readable", "*.sst", false, "permission denied"},
		{"a write-ahead log not readable", "*.mem", false, "permission denied"},
		{"MANIFEST a directory", "MANIFEST", true, "is a directory"},
		{"a table a directory", "*.sst", true, "is a directory"},
		{"a write-ahead log a directory", "*.mem", true, "is a directory"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// A directory of its own, not t.TempDir's (mode 0700 and
			// root's): nobody must reach the store.
			base, err := os.MkdirTemp("", "abacus-store-")
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { os.RemoveAll(base) })
			if err := os.Chmod(base, 0o755); err != nil {
				t.Fatal(err)
			}
			dir := filepath.Join(base, "state", "counts-store")
			testkit.CopyDir(t, src, dir)
			path := testkit.FilesBySize(dir, tc.glob)[0]
			var env []string
			if root {
				env = append(env, fmt.Sprintf("ABACUS_STORE_CHILD_UID=%d", nobody))
				err := filepath.WalkDir(filepath.Join(base, "state"), func(p string, _ os.DirEntry, err error) error {
					if err != nil {
						return err
					}
					return os.Lchown(p, nobody, nobody)
				})
				if err != nil {
					t.Fatal(err)
				}
			}
			if tc.dir {
				if err := os.Remove(path); err != nil {
					t.Fatal(err)
				}
				if err := os.Mkdir(path, 0o755); err != nil {
					t.Fatal(err)
				}
			} else if err := os.Chmod(path, 0); err != nil {
				t.Fatal(err)
			}
			before := testkit.ListDir(dir)
			res := openInChild(t, dir, env...)
			if res.opened || res.died != "" {
				t.Fatalf("Open with %s: %+v, want an error", tc.name, res)
			}
			for _, want := range []string{dir, filepath.Base(path), tc.want, "no proof of damage"} {
				if !strings.Contains(res.err, want) {
					t.Errorf("the error does not say %q: %s", want, res.err)
				}
			}
			assertLeftAlone(t, dir, before)
		})
	}
}

// TestOpenLeavesAStoreWithoutFileDescriptorsAlone opens a store in child
// processes allowed one more open file each time, from none on: the open
// fails with "too many open files" and the store's files as they were,
// taking the lock, then listing the store's files, and then in Badger's
// open, whose error is no damage either. It stops there: further on,
// Badger short of descriptors may end the process from a goroutine of its
// own (y.Check's log.Fatal) or hang, which is not Open's to decide.
func TestOpenLeavesAStoreWithoutFileDescriptorsAlone(t *testing.T) {
	src := storeWithEveryFile(t)
	var stages []string
	for more := 0; ; more++ {
		if more == 16 {
			t.Fatalf("Badger's open was not reached with 16 more files than the child had open: %v", stages)
		}
		dir := filepath.Join(t.TempDir(), "counts-store")
		testkit.CopyDir(t, src, dir)
		before := testkit.ListDir(dir)
		res := openInChild(t, dir, fmt.Sprintf("ABACUS_STORE_CHILD_NOFILE=%d", more))
		t.Logf("%d more files: %+v", more, res)
		if res.opened || res.died != "" {
			t.Fatalf("%d more files: the open did not fail before Badger's open: %+v", more, res)
		}
		if !strings.Contains(res.err, "too many open files") || !strings.Contains(res.err, dir) {
			t.Errorf("%d more files: the error does not say the limit and the store: %s", more, res.err)
		}
		if _, err := os.Lstat(dir + ".damaged"); err == nil {
			t.Fatalf("%d more files: the store was moved aside", more)
		}
		var stage string
		switch {
		case strings.Contains(res.err, "to lock it"):
			stage = "lock"
		case strings.Contains(res.err, "list the store's files"):
			stage = "list"
		case strings.HasPrefix(res.err, "open badger at "):
			stage = "badger"
		default:
			t.Fatalf("%d more files: an error of no known stage: %s", more, res.err)
		}
		if stage != "badger" {
			assertLeftAlone(t, dir, before)
		}
		if len(stages) == 0 || stages[len(stages)-1] != stage {
			stages = append(stages, stage)
		}
		if stage == "badger" {
			break
		}
	}
	if want := []string{"lock", "list", "badger"}; !slices.Equal(stages, want) {
		t.Errorf("the open failed in stages %v as the limit rose, want %v", stages, want)
	}
}
