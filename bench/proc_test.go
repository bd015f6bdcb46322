package bench

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/abacus-streams/abacus/internal/testkit"
)

// clockTicks is USER_HZ, the unit of utime and stime in /proc/<pid>/stat;
// 100 on every Linux architecture Go supports.
const clockTicks = 100

// proc is one abacus process started by the benchmark itself (testkit's
// Instance does not expose the pid, which VmHWM and CPU time need).
type proc struct {
	b       testing.TB
	name    string
	url     string
	logPath string
	cmd     *exec.Cmd
	exited  chan struct{}
	started time.Time
}

var httpClient = &http.Client{Timeout: 10 * time.Second}

// startProc runs the abacus binary with the given ABACUS_* settings on a
// free loopback port. ABACUS_* variables of the caller's environment are
// not inherited, so a developer's shell cannot skew the run. The process
// is killed when the benchmark ends.
func startProc(b testing.TB, name string, env map[string]string) *proc {
	b.Helper()
	bin := testkit.Binary(b)
	addr := "127.0.0.1:" + strconv.Itoa(testkit.FreePort(b))
	var environ []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "ABACUS_") {
			environ = append(environ, kv)
		}
	}
	environ = append(environ, "ABACUS_HTTP_ADDR="+addr)
	for k, v := range env {
		environ = append(environ, k+"="+v)
	}
	p := &proc{b: b, name: name, url: "http://" + addr, logPath: filepath.Join(b.TempDir(), name+".log")}
	logf, err := os.Create(p.logPath)
	if err != nil {
		b.Fatal(err)
	}
	p.cmd = exec.Command(bin)
	p.cmd.Env = environ
	p.cmd.Stdout = logf
	p.cmd.Stderr = logf
	p.started = time.Now()
	if err := p.cmd.Start(); err != nil {
		b.Fatal(err)
	}
	p.exited = make(chan struct{})
	go func() {
		_ = p.cmd.Wait()
		logf.Close()
		close(p.exited)
	}()
	stopPerf := p.perfRecord()
	b.Cleanup(func() {
		p.kill()
		stopPerf()
		if b.Failed() {
			b.Logf("log of %s (last 4 KiB):\n%s", p.name, p.logTail(4096))
		}
	})
	return p
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

// perfEnv names a directory: when set, every abacus process is recorded by
// `perf record -g` into <dir>/<name>.perf.data for `perf report` (the
// binary serves no pprof; perf also sees librdkafka's own threads).
const perfEnv = "ABACUS_BENCH_PERF_DIR"

// perfRecord starts perf on the process if perfEnv asks for it, and
// returns what waits for perf to write its file (perf ends by itself when
// the process does).
func (p *proc) perfRecord() (wait func()) {
	dir := os.Getenv(perfEnv)
	if dir == "" {
		return func() {}
	}
	out := filepath.Join(dir, p.name+".perf.data")
	cmd := exec.Command("perf", "record", "-F", "499", "-g", "-o", out, "-p", strconv.Itoa(p.pid()))
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Start(); err != nil {
		p.b.Logf("%s: perf record: %v", p.name, err)
		return func() {}
	}
	return func() { _ = cmd.Wait() }
}

func (p *proc) hasExited() bool {
	select {
	case <-p.exited:
		return true
	default:
		return false
	}
}

// alive fails the benchmark if the process ended.
func (p *proc) alive() {
	p.b.Helper()
	if p.hasExited() {
		p.b.Fatalf("%s exited unexpectedly; log tail:\n%s", p.name, p.logTail(4096))
	}
}

func (p *proc) kill() {
	if p.cmd.Process != nil {
		_ = p.cmd.Process.Signal(syscall.SIGKILL)
	}
	<-p.exited
}

// stop sends SIGTERM and waits for a clean exit.
func (p *proc) stop(within time.Duration) {
	p.b.Helper()
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(within):
		p.b.Fatalf("%s did not stop within %s", p.name, within)
	}
	if code := p.cmd.ProcessState.ExitCode(); code != 0 {
		p.b.Fatalf("%s exited with %d; log tail:\n%s", p.name, code, p.logTail(4096))
	}
}

func (p *proc) logTail(n int64) string {
	f, err := os.Open(p.logPath)
	if err != nil {
		return err.Error()
	}
	defer f.Close()
	if st, err := f.Stat(); err == nil && st.Size() > n {
		_, _ = f.Seek(st.Size()-n, io.SeekStart)
	}
	b, _ := io.ReadAll(f)
	return string(b)
}

func (p *proc) log() string {
	b, _ := os.ReadFile(p.logPath)
	return string(b)
}

func (p *proc) get(path string) (int, []byte, error) {
	resp, err := httpClient.Get(p.url + path)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp.StatusCode, body, err
}

// metric sums the samples of a metric family whose labels contain labels.
func (p *proc) metric(name string, labels ...string) (float64, error) {
	code, body, err := p.get("/metrics")
	if err != nil {
		return 0, err
	}
	if code != 200 {
		return 0, fmt.Errorf("/metrics answered %d", code)
	}
	return testkit.SumMetric(body, name, labels...), nil
}

// mustMetric is metric, failing the benchmark on an error.
func (p *proc) mustMetric(name string, labels ...string) float64 {
	p.b.Helper()
	v, err := p.metric(name, labels...)
	if err != nil {
		p.b.Fatalf("%s: read %s: %v", p.name, name, err)
	}
	return v
}

// ready reports whether /readyz answers 200.
func (p *proc) ready() bool {
	code, _, err := p.get("/readyz")
	return err == nil && code == 200
}

// peakRSS is the process's VmHWM (peak resident set) in bytes.
func (p *proc) peakRSS() int64 {
	p.b.Helper()
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.pid()))
	if err != nil {
		p.b.Fatalf("%s: read status: %v", p.name, err)
	}
	v, err := statusField(raw, "VmHWM:")
	if err != nil {
		p.b.Fatalf("%s: %v", p.name, err)
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
func (p *proc) cpuTime() time.Duration {
	p.b.Helper()
	d, err := cpuTimeOf(strconv.Itoa(p.pid()))
	if err != nil {
		p.b.Fatalf("%s: %v", p.name, err)
	}
	return d
}

// cpuTimeOf reads utime+stime of /proc/<pid>/stat ("self" for this process).
func cpuTimeOf(pid string) (time.Duration, error) {
	raw, err := os.ReadFile("/proc/" + pid + "/stat")
	if err != nil {
		return 0, err
	}
	// The command name (field 2) may hold spaces; fields after its ')' are plain.
	i := bytes.LastIndexByte(raw, ')')
	if i < 0 {
		return 0, fmt.Errorf("unexpected /proc/%s/stat", pid)
	}
	f := strings.Fields(string(raw[i+1:]))
	// After ')' come state (field 3) ... utime is field 14, stime field 15.
	if len(f) < 13 {
		return 0, fmt.Errorf("short /proc/%s/stat", pid)
	}
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("parse /proc/%s/stat: %v %v", pid, err1, err2)
	}
	return time.Duration(ut+st) * time.Second / clockTicks, nil
}

// poll calls cond every interval until it returns true or within passes;
// it fails the benchmark on a timeout or when the process dies. It returns
// when cond first held.
func (p *proc) poll(what string, within, interval time.Duration, cond func() (bool, error)) time.Time {
	p.b.Helper()
	deadline := time.Now().Add(within)
	var last error
	for {
		p.alive()
		ok, err := cond()
		if ok && err == nil {
			return time.Now()
		}
		if err != nil {
			last = err
		}
		if time.Now().After(deadline) {
			p.b.Fatalf("%s: %s not reached within %s (last error: %v); log tail:\n%s", p.name, what, within, last, p.logTail(4096))
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
func (p *proc) sampleMemory(metrics []byte) (memSample, error) {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.pid()))
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
