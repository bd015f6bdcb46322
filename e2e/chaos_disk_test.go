package e2e

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/abacus-streams/abacus/internal/store"
	"github.com/abacus-streams/abacus/internal/testkit"
	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
)

// smallDisk mounts a tmpfs of size bytes for the test, or skips the test
// where the machine does not allow it (not root, no CAP_SYS_ADMIN).
func smallDisk(t *testing.T, size string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "small-disk")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size, "tmpfs", dir).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a %s tmpfs to fill (needs root and CAP_SYS_ADMIN): %v %s", size, err, strings.TrimSpace(string(out)))
	}
	// Registered before the instance starts, so it runs after the
	// instance is killed.
	t.Cleanup(func() {
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			t.Logf("umount %s: %v %s", dir, err, out)
			_ = exec.Command("umount", "-l", dir).Run()
		}
	})
	return dir
}

// fillDisk writes a file until the file system has no byte left.
func fillDisk(t *testing.T, dir string) (path string, written int64) {
	t.Helper()
	path = filepath.Join(dir, "filler")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, chunk := range []int{1 << 20, 4 << 10, 1} {
		buf := make([]byte, chunk)
		for {
			n, err := f.Write(buf)
			written += int64(n)
			if err != nil {
				if !errors.Is(err, syscall.ENOSPC) {
					t.Fatalf("filling the disk: %v", err)
				}
				break
			}
		}
	}
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err == nil && st.Bavail != 0 {
		t.Logf("the disk still has %d blocks free", st.Bavail)
	}
	return path, written
}

// committedOffsets reads the group's committed input offsets with a
// consumer that never joins it.
func committedOffsets(t *testing.T, brokers string, partitions int) (sum int64, per []int64) {
	t.Helper()
	c, err := kafka.NewConsumer(&kafka.ConfigMap{"bootstrap.servers": brokers, "group.id": "counts-app", "log_level": 3, "enable.metrics.push": false})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	topic := input
	tps := make([]kafka.TopicPartition, partitions)
	for i := range tps {
		tps[i] = kafka.TopicPartition{Topic: &topic, Partition: int32(i)}
	}
	got, err := c.Committed(tps, 10_000)
	if err != nil {
		t.Fatalf("committed offsets: %v", err)
	}
	for _, tp := range got {
		off := max(int64(tp.Offset), 0)
		per = append(per, off)
		sum += off
	}
	return sum, per
}

// storedCounts opens a copy of an instance's store (the instance is down)
// and sums the counts in it, with each partition's checkpoint.
func storedCounts(t *testing.T, stateDir string) (sum int64, checkpoints map[int32]int64) {
	t.Helper()
	src := filepath.Join(stateDir, "counts-app", storeName)
	dst := filepath.Join(t.TempDir(), storeName)
	testkit.CopyDir(t, src, dst)
	db, err := store.Open(store.Config{Dir: dst})
	if err != nil {
		t.Fatalf("open a copy of the store: %v", err)
	}
	defer db.Close()
	parts, err := db.Partitions()
	if err != nil {
		t.Fatal(err)
	}
	checkpoints = map[int32]int64{}
	for _, p := range parts {
		part := db.Partition(p)
		checkpoints[p], _ = part.Checkpoint()
		if err := part.Scan(store.ScanOptions{}, func(_ []byte, v int64) bool { sum += v; return true }); err != nil {
			t.Fatalf("scan partition %d: %v", p, err)
		}
	}
	return sum, checkpoints
}

// changelogSum adds the last committed count of every key on the changelog.
func changelogSum(t *testing.T, brokers string) int64 {
	t.Helper()
	last, _ := testkit.LastValues(t, brokers, changelog, "read_committed")
	var sum int64
	for _, v := range last {
		var n int64
		fmt.Sscan(v, &n)
		sum += n
	}
	return sum
}

// diskObservation is what an instance shows while its disk is full.
type diskObservation struct {
	exited           bool
	states           []string // distinct states, in order
	reasons          []string // distinct /readyz and status errors
	readyWhileFull   int      // /readyz 200 answers after the disk filled
	lookups503, ok   int
	firstNotReady    time.Duration
	diskErrorInState bool // an ERROR state whose reason names the full disk
}

func (o *diskObservation) String() string {
	return fmt.Sprintf("exited %v; states %v; reasons %q; /readyz 200 %d times; first not ready after %s; lookups 503 %d, 200 %d",
		o.exited, o.states, o.reasons, o.readyWhileFull, o.firstNotReady.Round(100*time.Millisecond), o.lookups503, o.ok)
}

// observeFullDisk polls an instance for d, recording what it reports. With
// settled > 0 it stops sooner, once the instance has reported state ERROR
// naming the full disk for that long.
func observeFullDisk(in *testkit.Instance, d, settled time.Duration, key string) *diskObservation {
	o := &diskObservation{}
	began := time.Now()
	var reported time.Time
	for time.Since(began) < d {
		if settled > 0 && !reported.IsZero() && time.Since(reported) >= settled {
			return o
		}
		if in.Exited() {
			o.exited = true
			return o
		}
		code, body, err := in.Get("/readyz")
		if err == nil {
			if code == 200 {
				o.readyWhileFull++
			} else if o.firstNotReady == 0 {
				o.firstNotReady = time.Since(began)
			}
			if r := errorField(body); r != "" && !contains(o.reasons, r) {
				o.reasons = append(o.reasons, r)
			}
		}
		st := statusOf(in)
		if st.State != "" && (len(o.states) == 0 || o.states[len(o.states)-1] != st.State) {
			o.states = append(o.states, st.State)
		}
		if st.Error != "" && !contains(o.reasons, st.Error) {
			o.reasons = append(o.reasons, st.Error)
		}
		if st.State == "ERROR" && strings.Contains(st.Error, "no space left on device") {
			o.diskErrorInState = true
			if reported.IsZero() {
				reported = time.Now()
			}
		}
		if _, code, err := in.Count(storeName, key); err == nil {
			switch code {
			case 200:
				o.ok++
			case 503:
				o.lookups503++
			}
		}
		time.Sleep(250 * time.Millisecond)
	}
	return o
}

func errorField(body []byte) string {
	for _, f := range []string{`"error":"`, `"reason":"`} {
		if i := strings.Index(string(body), f); i >= 0 {
			rest := string(body)[i+len(f):]
			if j := strings.IndexByte(rest, '"'); j >= 0 {
				return rest[:j]
			}
		}
	}
	return ""
}

func contains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

// TestChaosDiskFull fills the file system of an exactly-once instance's
// state dir while input flows. The instance must say so (not ready, state
// ERROR with the reason), commit nothing that its store and changelog do
// not hold, stay up, and recover by itself, exactly, once space returns.
// A second fill ends with a kill -9 so the store on disk can be compared
// with the group's committed offsets, and a restart on the still-full disk
// (as Kubernetes would restart it), which must not exit either.
func TestChaosDiskFull(t *testing.T) {
	seed := chaosSeed(t, 7006)
	// Room for the store's margin (twice the 16 MiB memtable plus 8 MiB,
	// internal/store/space.go) beside what it holds.
	disk := smallDisk(t, "96m")
	b := testkit.StartBroker(t, 4)
	in := testkit.StartInstance(t, testkit.InstanceConfig{Name: "abacus-0", Brokers: b.Addr(), StateDir: disk,
		Env: map[string]string{"ABACUS_PROCESSING_GUARANTEE": "exactly_once_v2"}})
	in.WaitReady(time.Minute)
	w := skewed(seed, 20_000, 2_000)
	testkit.Produce(t, b.Addr(), input, "murmur2_random", w.records)
	waitCounts(t, 2*time.Minute, []*testkit.Instance{in}, w.truth, false)
	hot := string(w.records[0].Key)
	// The short version stops watching once the instance has reported
	// the full disk for a few seconds; the long one watches it all along.
	observe, settled := 30*time.Second, 5*time.Second
	if chaosLong() {
		observe, settled = 40*time.Second, 0
	}

	for round := 1; round <= 2; round++ {
		logFrom := len(in.Log())
		filler, written := fillDisk(t, disk)
		more := skewed(seed+uint64(round), 10_000, 2_000)
		testkit.Produce(t, b.Addr(), input, "murmur2_random", more.records)
		w = w.add(more)
		o := observeFullDisk(in, observe, settled, hot)
		t.Logf("round %d: disk full (%d MiB of filler), %d more records: %s", round, written>>20, len(more.records), o)
		if log := in.Log()[min(logFrom, len(in.Log())):]; strings.Contains(log, "no space left on device") {
			i := strings.Index(log, "no space left on device")
			t.Logf("round %d: first mention of the full disk in the log: %s", round, firstLines(log[max(0, strings.LastIndex(log[:i], "\n")+1):], 1))
		}
		if o.exited {
			t.Errorf("round %d: the instance exited when its disk filled: %s", round, crashReason(in.Log()))
			if round == 1 {
				// As Kubernetes would: start it again on the full disk.
				in.Restart()
				again := observeFullDisk(in, observe/2, settled, hot)
				t.Logf("round %d: restarted on the full disk: %s; %s\nits log ends:\n%s", round, again, crashReason(in.Log()), tail(in.Log(), 6))
				if again.exited {
					t.Errorf("round %d: it exits again on the full disk: a crash loop until space returns", round)
				}
			}
		} else {
			if o.readyWhileFull > 2 {
				t.Errorf("round %d: /readyz answered 200 %d times with the disk full", round, o.readyWhileFull)
			}
			if !o.diskErrorInState {
				t.Errorf("round %d: the instance never reported state ERROR naming the full disk (states %v, reasons %q)", round, o.states, o.reasons)
			}
		}
		// The group's committed offsets against what is durable: under
		// exactly-once the changelog's committed counts cover exactly the
		// committed input records, whatever the local store managed to write.
		committed, per := committedOffsets(t, b.Addr(), 4)
		cl := changelogSum(t, b.Addr())
		t.Logf("round %d: committed input offsets %v (%d records), changelog (read_committed) counts sum to %d, produced %d", round, per, committed, cl, len(w.records))
		if cl != committed {
			t.Errorf("round %d: the changelog's counts sum to %d but the group committed %d input records", round, cl, committed)
		}
		if round == 2 {
			in.Kill()
			stored, cps := storedCounts(t, in.StateDir)
			committed, _ = committedOffsets(t, b.Addr(), 4)
			t.Logf("round %d: after kill -9, the store on disk holds counts summing to %d (checkpoints %v); the group committed %d input records", round, stored, cps, committed)
			if stored > committed {
				t.Errorf("the store holds %d counts, more than the %d committed input records", stored, committed)
			}
			// As Kubernetes would: start it again on the still-full disk.
			in.Restart()
			again := observeFullDisk(in, observe, settled, hot)
			t.Logf("round %d: restarted on the full disk: %s", round, again)
			switch {
			case again.exited:
				t.Errorf("round %d: it exits when restarted on the full disk (a crash loop until space returns): %s\nits log ends:\n%s", round, crashReason(in.Log()), tail(in.Log(), 6))
			case !again.diskErrorInState:
				t.Errorf("round %d: restarted on the full disk, it never reported state ERROR naming the full disk (states %v, reasons %q)", round, again.states, again.reasons)
			case again.readyWhileFull > 0:
				t.Errorf("round %d: restarted on the full disk, /readyz answered 200 %d times", round, again.readyWhileFull)
			}
		}
		if err := os.Remove(filler); err != nil {
			t.Fatal(err)
		}
		began := time.Now()
		if in.Exited() {
			in.Restart()
		}
		waitCounts(t, 3*time.Minute, []*testkit.Instance{in}, w.truth, false)
		t.Logf("round %d: space back: every key exact %s later", round, time.Since(began).Round(100*time.Millisecond))
	}
}

// crashReason is the first line of a Go crash in a log.
func crashReason(log string) string {
	for _, marker := range []string{"fatal error:", "panic:", "unexpected signal", "SIGBUS", "signal "} {
		if i := strings.Index(log, marker); i >= 0 {
			return firstLines(log[i:], 2)
		}
	}
	return "no crash message"
}
