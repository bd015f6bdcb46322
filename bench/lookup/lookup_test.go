package lookup

import (
	"fmt"
	"io"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/abacus-streams/abacus/internal/partitioner"
	"github.com/abacus-streams/abacus/internal/testkit"
)

// Knobs, all optional:
//
//	LOOKUP_DURATION   measured time of each run (default 10s)
//	LOOKUP_WARMUP     unmeasured time before it, same connections (default 2s)
//	LOOKUP_CONNS      comma-separated concurrencies of the closed-loop runs
//	                  (default "32,64"; "none": no closed-loop runs)
//	LOOKUP_SCENARIOS  comma-separated subset of healthz,local,local-true,forwarded,mixed
//	LOOKUP_RATE       comma-separated total req/s of the fixed-rate runs
//	                  (default "5000"; "none": no fixed-rate runs)
//	LOOKUP_RATE_CONNS connections of the fixed-rate runs (default 32)
//	LOOKUP_RATE_SCENARIOS  scenarios run at the fixed rate (default local,forwarded,mixed)
//	LOOKUP_RECORDS    input records (default 100000)
//	LOOKUP_KEYS       distinct keys (default 10000)
//	LOOKUP_QUIET_WAIT before each run, wait up to this long (default 20s) for
//	                  the rest of the machine to use less than LOOKUP_QUIET_CORES
//	                  (default 0.3) cores over a second; then run anyway
//	LOOKUP_PERF_DIR   if set, `perf record -g` every member during each
//	                  measured window into <dir>/<scenario>-c<N>[-r<rate>]-<member>.perf.data
//	                  (perf's own overhead then skews the figures: profile only)
//	LOOKUP_OUT        if set, the markdown table is also written to this file
const (
	storeName  = "counts-store"
	inputTopic = "input-topic"
	partitions = 6
	members    = 3
	asked      = 0 // the member every request goes to: abacus-0 on 127.0.0.1
)

// The targets the benchmark checks, on the 2-core reference machine
// (BENCHMARKS.md, "Key lookups").
const (
	targetLocalRPS = 20_000
	targetLocalP99 = 5 * time.Millisecond
)

// envInts reads a comma-separated list of integers in [lo, hi]; "none"
// is an empty list.
func envInts(b *testing.B, name, def string, lo, hi int) []int {
	v := cmpOr(os.Getenv(name), def)
	if v == "none" {
		return nil
	}
	var out []int
	for _, s := range strings.Split(v, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < lo || n > hi {
			b.Fatalf("%s: %q is not an integer in [%d, %d] (or say none)", name, s, lo, hi)
		}
		out = append(out, n)
	}
	return out
}

func envDuration(b *testing.B, name string, def time.Duration) time.Duration {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 || d > 10*time.Minute {
		b.Fatalf("%s=%q: want a duration in (0, 10m]", name, v)
	}
	return d
}

func envInt(b *testing.B, name string, def, lo, hi int) int {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < lo || n > hi {
		b.Fatalf("%s=%q: want an integer in [%d, %d]", name, v, lo, hi)
	}
	return n
}

type member struct {
	in   *testkit.Instance
	host string // host:port
}

// ownersOf reads a member's view: partition -> member name.
func ownersOf(in *testkit.Instance) (map[int32]string, error) {
	v, code, err := in.Cluster()
	if err != nil || code != 200 {
		return nil, fmt.Errorf("cluster of %s: %d %v", in.Name, code, err)
	}
	out := map[int32]string{}
	for _, m := range v.Members {
		for _, p := range m.Partitions {
			out[p] = m.Member
		}
	}
	if len(v.Members) != members || v.Partitions != partitions || len(out) != partitions {
		return nil, fmt.Errorf("%s sees %d members owning %d of %d partitions", in.Name, len(v.Members), len(out), v.Partitions)
	}
	return out, nil
}

// scenario is one kind of request asked of the asked member.
type scenario struct {
	name, what string
	reqs       []request
}

// row is one measured run.
type row struct {
	scenario string
	conns    int
	rate     int // 0: closed loop
	res      loadResult
	cpu      cpuUse
	alloc    []float64 // bytes allocated by each member in the window
	gcs      []float64 // GC cycles of each member in the window
}

func BenchmarkLookups(b *testing.B) {
	duration := envDuration(b, "LOOKUP_DURATION", 10*time.Second)
	warmup := envDuration(b, "LOOKUP_WARMUP", 2*time.Second)
	nRecords := envInt(b, "LOOKUP_RECORDS", 100_000, 1, 10_000_000)
	nKeys := envInt(b, "LOOKUP_KEYS", 10_000, members*partitions, nRecords)
	concs := envInts(b, "LOOKUP_CONNS", "32,64", 1, 1024)
	quietWait := envDuration(b, "LOOKUP_QUIET_WAIT", 20*time.Second)
	rates := envInts(b, "LOOKUP_RATE", "5000", 1, 1_000_000)
	rateConns := envInt(b, "LOOKUP_RATE_CONNS", 32, 1, 1024)
	quietCores := 0.3
	if v := os.Getenv("LOOKUP_QUIET_CORES"); v != "" {
		f, err := strconv.ParseFloat(v, 64)
		if err != nil || f <= 0 {
			b.Fatalf("LOOKUP_QUIET_CORES=%q: want a positive number", v)
		}
		quietCores = f
	}

	// One broker, three members bound to 127.0.0.1/.2/.3 on one port, as
	// three pods of a StatefulSet behind their DNS names.
	br := testkit.StartBroker(b, partitions)
	var ms []member
	for _, in := range testkit.StartMembers(b, br.Addr(), members, map[string]string{"ABACUS_PARTITIONS": strconv.Itoa(partitions)}) {
		ms = append(ms, member{in: in, host: strings.TrimPrefix(in.URL, "http://")})
	}
	for _, m := range ms {
		testkit.Eventually(b, time.Minute, func() error { _, err := ownersOf(m.in); return err })
	}

	// ~nRecords records over nKeys keys, 1 to 19 records a key.
	truth := make(map[string]int64, nKeys)
	keys := make([]string, nKeys)
	for i := range keys {
		keys[i] = fmt.Sprintf("key-%06d", i)
	}
	var records []testkit.Record
	for round := 0; len(records) < nRecords && round < 1000; round++ {
		for i, k := range keys {
			if len(records) == nRecords {
				break
			}
			if round < 1+(i*7919)%19 || round >= 19 {
				records = append(records, testkit.Record{Key: []byte(k), Value: []byte("x")})
				truth[k]++
			}
		}
	}
	t0 := time.Now()
	testkit.Produce(b, br.Addr(), inputTopic, "murmur2_random", records)
	b.Logf("produced %d records over %d keys in %s", len(records), len(truth), time.Since(t0).Round(time.Millisecond))

	owners, err := ownersOf(ms[0].in)
	if err != nil {
		b.Fatal(err)
	}
	ownerOf := func(k string) string { return owners[partitioner.Murmur2([]byte(k), partitions)] }
	byName := map[string]*member{}
	for i := range ms {
		byName[ms[i].in.Name] = &ms[i]
	}

	// Counted and committed: no lag anywhere, and every key's owner answers
	// the exact count from its store.
	testkit.Eventually(b, 3*time.Minute, func() error {
		for _, m := range ms {
			lag, err := m.in.Metric("abacus_consumer_lag")
			if err != nil {
				return err
			}
			if lag != 0 {
				return fmt.Errorf("%s: lag %v", m.in.Name, lag)
			}
		}
		for _, k := range keys {
			var kc testkit.KeyCount
			code, _, err := byName[ownerOf(k)].in.GetJSON("/api/v1/stores/"+storeName+"/keys/"+url.PathEscape(k)+"?local=true", &kc)
			if err != nil || code != 200 || kc.Value != truth[k] {
				return fmt.Errorf("%s from its owner %s: %d %+v %v; want %d", k, ownerOf(k), code, kc, err, truth[k])
			}
		}
		return nil
	})
	b.Logf("all %d keys counted and committed after %s", len(keys), time.Since(t0).Round(time.Millisecond))
	// The metadata route agrees with the ownership used below.
	for _, k := range keys[:20] {
		var md struct{ Owner string }
		code, _, err := ms[asked].in.GetJSON("/api/v1/stores/"+storeName+"/keys/"+url.PathEscape(k)+"/metadata", &md)
		if err != nil || code != 200 || md.Owner != ownerOf(k) {
			b.Fatalf("metadata of %s: %d %+v %v; cluster view says %s", k, code, md, err, ownerOf(k))
		}
	}

	// Requests, all to the asked member.
	me := ms[asked]
	// The answer's beginning: the position that follows depends on the
	// partition's offsets.
	body := func(k, servedBy string) []byte {
		return fmt.Appendf(nil, `{"key":%q,"value":%d,"partition":%d,"served_by":%q,"position":{`, k, truth[k], partitioner.Murmur2([]byte(k), partitions), servedBy)
	}
	path := func(k string) string { return "/api/v1/stores/" + storeName + "/keys/" + url.PathEscape(k) }
	var sLocal, sLocalTrue, sForwarded, sMixed, sHealth []request
	sHealth = append(sHealth, newRequest(me.host, "/healthz", []byte(`"status":"ok"`)))
	for _, k := range keys {
		own := ownerOf(k)
		r := newRequest(me.host, path(k), body(k, own))
		m := r
		m.kind = kindLocal
		if own != me.in.Name {
			m.kind = kindForwarded
		}
		sMixed = append(sMixed, m)
		if own == me.in.Name {
			sLocal = append(sLocal, r)
			sLocalTrue = append(sLocalTrue, newRequest(me.host, path(k)+"?local=true", body(k, own)))
		} else {
			sForwarded = append(sForwarded, r)
		}
	}
	all := map[string]scenario{
		"healthz":    {"healthz", "GET /healthz of the asked member: the HTTP floor (echo + JSON, no store)", sHealth},
		"local":      {"local", fmt.Sprintf("keys the asked member owns (%d keys)", len(sLocal)), sLocal},
		"local-true": {"local-true", "the same keys with ?local=true", sLocalTrue},
		"forwarded":  {"forwarded", fmt.Sprintf("keys the two other members own (%d keys), forwarded once", len(sForwarded)), sForwarded},
		"mixed":      {"mixed", fmt.Sprintf("all %d keys, uniformly (about 1/3 local); its local and forwarded requests are also reported apart (mixed:local, mixed:forwarded), measured under the same conditions at the same time", len(sMixed)), sMixed},
	}
	pick := func(env, list string) []scenario {
		var out []scenario
		for _, w := range strings.Split(list, ",") {
			s, ok := all[strings.TrimSpace(w)]
			if !ok {
				b.Fatalf("%s: unknown scenario %q", env, w)
			}
			if len(s.reqs) == 0 {
				b.Fatalf("scenario %s has no keys", s.name)
			}
			out = append(out, s)
		}
		return out
	}
	scenarios := pick("LOOKUP_SCENARIOS", cmpOr(os.Getenv("LOOKUP_SCENARIOS"), "healthz,local,local-true,forwarded,mixed"))
	// The runs: every scenario closed-loop at every concurrency, then the
	// fixed-rate ones.
	type plan struct {
		s     scenario
		conns int
		rate  int
	}
	var plans []plan
	for _, c := range concs {
		for _, s := range scenarios {
			plans = append(plans, plan{s, c, 0})
		}
	}
	for _, rate := range rates {
		for _, s := range pick("LOOKUP_RATE_SCENARIOS", cmpOr(os.Getenv("LOOKUP_RATE_SCENARIOS"), "local,forwarded,mixed")) {
			plans = append(plans, plan{s, rateConns, rate})
		}
	}

	// CPU accounting: the three members and this process (load generator
	// and the kfake broker).
	watch := cpuWatch{}
	for _, m := range ms {
		watch.names = append(watch.names, m.in.Name)
		watch.pids = append(watch.pids, m.in.Pid())
	}
	watch.names = append(watch.names, "bench")
	watch.pids = append(watch.pids, os.Getpid())
	idleA := watch.snap()
	time.Sleep(2 * time.Second)
	idle := watch.between(idleA, watch.snap())

	perfDir := os.Getenv("LOOKUP_PERF_DIR")
	var rows []row
	for _, pl := range plans {
		s, conns := pl.s, pl.conns
		label := fmt.Sprintf("%s-c%d", s.name, conns)
		if pl.rate > 0 {
			label += fmt.Sprintf("-r%d", pl.rate)
		}
		if others, waited := waitQuiet(watch, quietWait, quietCores); others >= quietCores {
			b.Logf("%s: the machine stayed busy (%.2f other cores) for %s; running anyway", label, others, waited.Round(time.Second))
		}
		var a, z cpuSnap
		var allocA, allocZ, gcA, gcZ []float64
		var perfs []*exec.Cmd
		spec := loadSpec{
			addr: me.host, reqs: s.reqs, conns: conns, warmup: warmup, duration: duration, rate: float64(pl.rate),
			onWindow: func(start bool) {
				if start {
					allocA, gcA = memStats(ms)
					perfs = startPerf(b, perfDir, label, ms)
					a = watch.snap()
					return
				}
				z = watch.snap()
				stopPerf(perfs)
				allocZ, gcZ = memStats(ms)
			},
		}
		res, err := runLoad(spec)
		if err != nil {
			b.Errorf("%s: %v", label, err)
		}
		r := row{scenario: s.name, conns: conns, rate: pl.rate, res: res, cpu: watch.between(a, z)}
		for i := range ms {
			r.alloc = append(r.alloc, allocZ[i]-allocA[i])
			r.gcs = append(r.gcs, gcZ[i]-gcA[i])
		}
		rows = append(rows, r)
		b.Logf("%-22s %8.0f req/s  p50 %6s  p99 %6s  others %.2f cores  errors %d %s", label, res.rps(),
			ms2(res.pct(50)), ms2(res.pct(99)), r.cpu.cores(r.cpu.others()), res.errors(), res.sample)
		for _, m := range ms {
			if m.in.Exited() {
				b.Fatalf("%s exited during %s:\n%s", m.in.Name, label, m.in.Log())
			}
		}
	}
	// Ownership did not move during the runs (it would show as errors too).
	if after, err := ownersOf(ms[0].in); err != nil || !mapsEqual(after, owners) {
		b.Errorf("ownership changed during the runs: %v -> %v (%v)", owners, after, err)
	}

	var described []scenario
	for _, pl := range plans {
		if !slices.ContainsFunc(described, func(d scenario) bool { return d.name == pl.s.name }) {
			described = append(described, pl.s)
		}
	}
	report := render(rows, described, watch, idle, duration, warmup, len(records), len(keys))
	fmt.Print(report)
	if out := os.Getenv("LOOKUP_OUT"); out != "" {
		if err := os.WriteFile(out, []byte(report), 0o644); err != nil {
			b.Error(err)
		}
	}
	for _, r := range rows {
		b.ReportMetric(r.res.rps(), r.label()+"_req/s")
		b.ReportMetric(float64(r.res.pct(99))/1e6, r.label()+"_p99_ms")
	}
	for _, r := range rows {
		if r.res.errors() > 0 {
			b.Errorf("%s: %d errors (non-200 %v, wrong body %d, I/O %d), e.g. %s", r.label(),
				r.res.errors(), r.res.non200, r.res.wrongBody, r.res.ioErrors, r.res.sample)
		}
	}
}

func (r row) label() string {
	l := fmt.Sprintf("%s_c%d", r.scenario, r.conns)
	if r.rate > 0 {
		l += fmt.Sprintf("_r%d", r.rate)
	}
	return l
}

func (r row) mode() string {
	if r.rate > 0 {
		return fmt.Sprintf("%d/s", r.rate)
	}
	return "closed"
}

// waitQuiet waits, at most for max, for a second in which the processes
// not watched used fewer than cores CPUs; it returns the last reading.
func waitQuiet(w cpuWatch, max time.Duration, cores float64) (float64, time.Duration) {
	start := time.Now()
	for {
		a := w.snap()
		time.Sleep(time.Second)
		u := w.between(a, w.snap())
		others := u.cores(u.others())
		if others < cores || time.Since(start) >= max {
			return others, time.Since(start)
		}
	}
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

func mapsEqual(a, b map[int32]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// memStats reads each member's bytes allocated so far and GC cycles.
func memStats(ms []member) (alloc, gcs []float64) {
	for _, m := range ms {
		a, _ := m.in.Metric("go_memstats_alloc_bytes_total")
		g, _ := m.in.Metric("go_gc_duration_seconds_count")
		alloc = append(alloc, a)
		gcs = append(gcs, g)
	}
	return alloc, gcs
}

// startPerf records every member with perf while the window lasts.
func startPerf(b *testing.B, dir, label string, ms []member) []*exec.Cmd {
	if dir == "" {
		return nil
	}
	var cmds []*exec.Cmd
	for _, m := range ms {
		out := filepath.Join(dir, label+"-"+m.in.Name+".perf.data")
		cmd := exec.Command("perf", "record", "-F", "999", "-g", "-o", out, "-p", strconv.Itoa(m.in.Pid()))
		cmd.Stdout, cmd.Stderr = io.Discard, io.Discard
		if err := cmd.Start(); err != nil {
			b.Logf("perf record: %v", err)
			return cmds
		}
		cmds = append(cmds, cmd)
	}
	return cmds
}

func stopPerf(cmds []*exec.Cmd) {
	for _, c := range cmds {
		_ = c.Process.Signal(syscall.SIGINT)
	}
	for _, c := range cmds {
		done := make(chan struct{})
		go func() { _ = c.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			_ = c.Process.Kill()
			<-done
		}
	}
}

func ms2(d time.Duration) string { return strconv.FormatFloat(float64(d)/1e6, 'f', 2, 64) }

// render is the report: the figures, the CPU split and the targets.
func render(rows []row, scenarios []scenario, w cpuWatch, idle cpuUse, duration, warmup time.Duration, nRecords, nKeys int) string {
	var sb strings.Builder
	p := func(format string, a ...any) { fmt.Fprintf(&sb, format, a...) }
	host, _ := os.Hostname()
	p("\n## Key lookups under load (bench/lookup)\n\n")
	p("%d records over %d keys, %d partitions, %d members (abacus-0..2 on 127.0.0.1..3, one port); every request goes to abacus-0.\n",
		nRecords, nKeys, partitions, members)
	p("One request in flight per keep-alive connection, %s warm-up then %s measured per run; mode \"closed\" sends the next request as soon as the answer is in, \"N/s\" sends N requests/s in all on a fixed schedule. ",
		warmup, duration)
	p("Machine: %s, %d CPUs, %s.\n\n", host, numCPU(), time.Now().UTC().Format("2006-01-02 15:04 MST"))
	for _, s := range scenarios {
		p("- **%s**: %s\n", s.name, s.what)
	}
	p("\n| scenario | mode | conns | req/s | p50 ms | p90 ms | p99 ms | p99.9 ms | max ms | errors | late sends |\n|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, r := range rows {
		late := "–"
		if r.rate > 0 && r.res.requests > 0 {
			late = fmt.Sprintf("%d (%.1f%%)", r.res.late, 100*float64(r.res.late)/float64(r.res.requests))
		}
		p("| %s | %s | %d | %.0f | %s | %s | %s | %s | %s | %d | %s |\n", r.scenario, r.mode(), r.conns, r.res.rps(),
			ms2(r.res.pct(50)), ms2(r.res.pct(90)), ms2(r.res.pct(99)), ms2(r.res.pct(99.9)), ms2(r.res.pct(100)), r.res.errors(), late)
		for _, k := range []kind{kindLocal, kindForwarded} {
			l := r.res.byKind[k]
			if len(l) == 0 {
				continue
			}
			p("| %s:%s | %s | %d | %.0f | %s | %s | %s | %s | %s | – | – |\n", r.scenario, kindName(k), r.mode(), r.conns,
				float64(len(l))/max(r.res.window.Seconds(), 1e-9), ms2(l.pct(50)), ms2(l.pct(90)), ms2(l.pct(99)), ms2(l.pct(99.9)), ms2(l.pct(100)))
		}
	}
	p("\nCPU in each measured window, in cores (1.00 = one core busy the whole window; the machine has %d). ", numCPU())
	p("\"bench\" is this process: the load generator plus the idle kfake broker. \"others\" is the rest of the machine's busy time (other tenants, kernel work not charged to a process). ")
	p("µs/req is CPU time per request served: of the asked member (abacus-0), of the two owners together, and of the load generator; alloc is bytes allocated per request by all members (go_memstats_alloc_bytes_total), GCs their GC cycles in the window.\n\n")
	p("| scenario | mode | conns |")
	for _, n := range w.names {
		p(" %s |", n)
	}
	p(" others | steal | µs/req asked | µs/req owners | µs/req bench | alloc B/req | GCs |\n|---|---|---:|")
	for range w.names {
		p("---:|")
	}
	p("---:|---:|---:|---:|---:|---:|---:|\n")
	line := func(name, mode, conns string, u cpuUse, reqs int, alloc, gcs []float64) {
		p("| %s | %s | %s |", name, mode, conns)
		for i := range w.names {
			p(" %.2f |", u.cores(u.procs[i]))
		}
		p(" %.2f | %.2f |", u.cores(u.others()), u.cores(u.host.steal))
		if reqs == 0 {
			p(" – | – | – | – | – |\n")
			return
		}
		per := func(d time.Duration) float64 { return float64(d.Microseconds()) / float64(reqs) }
		var a, g float64
		for i := range alloc {
			a += alloc[i]
			g += gcs[i]
		}
		n := len(u.procs)
		p(" %.1f | %.1f | %.1f | %.0f | %.0f |\n", per(u.procs[asked]), per(u.procs[1]+u.procs[2]), per(u.procs[n-1]), a/float64(reqs), g)
	}
	line("idle, before", "–", "–", idle, 0, nil, nil)
	for _, r := range rows {
		line(r.scenario, r.mode(), strconv.Itoa(r.conns), r.cpu, r.res.requests, r.alloc, r.gcs)
	}

	p("\nTargets (local >= %d req/s with p99 <= %s; forwarded p99 <= 2 x local p99 + 2 ms, at the same mode and concurrency):\n\n", targetLocalRPS, targetLocalP99)
	verdict := func(ok bool) string {
		if ok {
			return "met"
		}
		return "MISSED"
	}
	for _, l := range rows {
		if l.scenario != "local" {
			continue
		}
		what := fmt.Sprintf("%s, %d conns", l.mode(), l.conns)
		if l.rate == 0 {
			p("- local (%s): %.0f req/s (%s), p99 %s ms (%s)\n", what, l.res.rps(), verdict(l.res.rps() >= targetLocalRPS),
				ms2(l.res.pct(99)), verdict(l.res.pct(99) <= targetLocalP99))
		} else {
			p("- local (%s): p99 %s ms (%s)\n", what, ms2(l.res.pct(99)), verdict(l.res.pct(99) <= targetLocalP99))
		}
		i := slices.IndexFunc(rows, func(f row) bool { return f.scenario == "forwarded" && f.conns == l.conns && f.rate == l.rate })
		if i >= 0 {
			f := rows[i]
			bound := 2*l.res.pct(99) + 2*time.Millisecond
			p("- forwarded (%s): p99 %s ms vs bound %s ms (%s)\n", what, ms2(f.res.pct(99)), ms2(bound), verdict(f.res.pct(99) <= bound))
		}
	}
	for _, r := range rows {
		l, f := r.res.byKind[kindLocal], r.res.byKind[kindForwarded]
		if len(l) == 0 || len(f) == 0 {
			continue
		}
		bound := 2*l.pct(99) + 2*time.Millisecond
		p("- forwarded vs local within one %s run (%s, %d conns): p99 %s ms vs bound %s ms from its local p99 %s ms (%s)\n",
			r.scenario, r.mode(), r.conns, ms2(f.pct(99)), ms2(bound), ms2(l.pct(99)), verdict(f.pct(99) <= bound))
	}
	return sb.String()
}

func kindName(k kind) string {
	switch k {
	case kindLocal:
		return "local"
	case kindForwarded:
		return "forwarded"
	}
	return "other"
}

func numCPU() int { return runtime.NumCPU() }
