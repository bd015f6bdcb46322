package bench

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/abacus-streams/abacus/internal/testkit"
)

// startAbacus starts an abacus process with c (at abacus's own defaults,
// see appConfig) and, when perfEnv asks, records it with perf under label.
// The process is killed when the benchmark ends.
func startAbacus(b testing.TB, label string, c testkit.InstanceConfig) *testkit.Instance {
	b.Helper()
	in := testkit.StartInstance(b, c)
	stopPerf := perfRecord(b, in, label)
	b.Cleanup(func() {
		in.Kill() // perf ends when the process does
		stopPerf()
	})
	return in
}

// perfEnv names a directory: when set, every abacus process is recorded by
// `perf record -g` into <dir>/<label>.perf.data for `perf report` (the
// binary serves no pprof; perf also sees librdkafka's own threads).
const perfEnv = "ABACUS_BENCH_PERF_DIR"

// perfRecord starts perf on the process if perfEnv asks for it, and
// returns what waits for perf to write its file (perf ends by itself when
// the process does).
func perfRecord(b testing.TB, in *testkit.Instance, label string) (wait func()) {
	dir := os.Getenv(perfEnv)
	if dir == "" {
		return func() {}
	}
	out := filepath.Join(dir, label+".perf.data")
	cmd := exec.Command("perf", "record", "-F", "499", "-g", "-o", out, "-p", strconv.Itoa(in.Pid()))
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Start(); err != nil {
		b.Logf("%s: perf record: %v", label, err)
		return func() {}
	}
	return func() { _ = cmd.Wait() }
}

// logTail is the last n bytes of the instance's log.
func logTail(in *testkit.Instance, n int) string {
	log := in.Log()
	return log[max(0, len(log)-n):]
}

// ready reports whether /readyz answers 200.
func ready(in *testkit.Instance) bool {
	code, _, err := in.Get("/readyz")
	return err == nil && code == 200
}

// peakRSS is the process's VmHWM (peak resident set) in bytes.
func peakRSS(b testing.TB, in *testkit.Instance) int64 {
	b.Helper()
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", in.Pid()))
	if err != nil {
		b.Fatalf("%s: read status: %v", in.Name, err)
	}
	v, err := statusField(raw, "VmHWM:")
	if err != nil {
		b.Fatalf("%s: %v", in.Name, err)
	}
	return v
}

// statusField reads a "Name:   123 kB" line of /proc/<pid>/status, in bytes.
func statusField(status []byte, field string) (int64, error) {
	for line := range bytes.Lines(status) {
		if !bytes.HasPrefix(line, []byte(field)) {
			continue
		}
		f := strings.Fields(string(line[len(field):]))
		if len(f) != 2 || f[1] != "kB" {
			return 0, fmt.Errorf("unexpected %s line %q", field, line)
		}
		kb, err := strconv.ParseInt(f[0], 10, 64)
		return kb << 10, err
	}
	return 0, fmt.Errorf("no %s in /proc status", field)
}

// cpuTime is the user+system CPU time the process has used so far.
func cpuTime(b testing.TB, in *testkit.Instance) time.Duration {
	b.Helper()
	d, err := testkit.CPUTime(in.Pid())
	if err != nil {
		b.Fatalf("%s: %v", in.Name, err)
	}
	return d
}

// poll calls cond every interval until it returns true or within passes;
// it fails the benchmark on a timeout or when the process dies. It returns
// when cond first held.
func poll(b testing.TB, in *testkit.Instance, what string, within, interval time.Duration, cond func() (bool, error)) time.Time {
	b.Helper()
	deadline := time.Now().Add(within)
	var last error
	for {
		if in.Exited() {
			b.Fatalf("%s exited unexpectedly; log tail:\n%s", in.Name, logTail(in, 4096))
		}
		ok, err := cond()
		if ok && err == nil {
			return time.Now()
		}
		if err != nil {
			last = err
		}
		if time.Now().After(deadline) {
			b.Fatalf("%s: %s not reached within %s (last error: %v); log tail:\n%s", in.Name, what, within, last, logTail(in, 4096))
		}
		time.Sleep(interval)
	}
}

// memSample is where a process's memory is at one moment: its resident
// set split into anonymous and file-backed pages (Badger maps its tables
// and memtable logs), and what the Go runtime holds, from /metrics.
type memSample struct {
	rss, anon, file int64 // /proc/<pid>/status VmRSS, RssAnon, RssFile
	goSys, goHeap   int64 // go_memstats_sys_bytes, go_memstats_heap_inuse_bytes
}

// sampleMemory reads the process's resident set now, and the Go runtime's
// figures from a /metrics body.
func sampleMemory(in *testkit.Instance, metrics []byte) (memSample, error) {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", in.Pid()))
	if err != nil {
		return memSample{}, err
	}
	var s memSample
	for _, f := range []struct {
		name string
		v    *int64
	}{{"VmRSS:", &s.rss}, {"RssAnon:", &s.anon}, {"RssFile:", &s.file}} {
		if *f.v, err = statusField(raw, f.name); err != nil {
			return memSample{}, err
		}
	}
	s.goSys = int64(testkit.SumMetric(metrics, "go_memstats_sys_bytes"))
	s.goHeap = int64(testkit.SumMetric(metrics, "go_memstats_heap_inuse_bytes"))
	return s, nil
}

// max keeps the largest of each figure.
func (s memSample) max(o memSample) memSample {
	return memSample{
		rss: max(s.rss, o.rss), anon: max(s.anon, o.anon), file: max(s.file, o.file),
		goSys: max(s.goSys, o.goSys), goHeap: max(s.goHeap, o.goHeap),
	}
}
