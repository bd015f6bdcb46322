package bench

import (
	"cmp"
	"fmt"
	"io"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"text/tabwriter"
	"time"

	"github.com/abacus-streams/abacus/internal/testkit"
)

// The workload of make bench (BENCHMARKS.md, "Throughput, restore and
// memory"): a million records over 100,000 keys in 4 partitions.
const (
	numRecords    = 1_000_000
	numKeys       = 100_000
	numPartitions = 4

	rssRecords    = 1_000_000 // distinct keys, one record each
	rssPartitions = 12
	rssLimit      = 512 << 20

	inputTopic = "bench-input"
	rssTopic   = "bench-input-12"
	storeName  = "counts-store" // abacus's default store name
)

// Targets, as fractions.
const (
	targetALOS    = 0.5 // at_least_once vs the raw ceiling
	targetEOS     = 0.5 // exactly_once_v2 vs at_least_once
	targetRestore = 0.5 // full restore rate vs the raw ceiling
)

// run is the outcome of one abacus run over an input topic.
type run struct {
	name       string
	records    int64
	startup    time.Duration // process start to first record processed
	processed  time.Duration // first record to every record processed
	elapsed    time.Duration // first record to every input offset committed
	cpu        time.Duration // abacus CPU time within elapsed
	benchCPU   time.Duration // this process's (broker's) CPU time within elapsed
	peakRSS    int64
	output     int64 // records on the output topic
	changelog  int64 // offsets on the changelog topic
	commits    float64
	commitTime float64   // seconds spent committing, from the histogram's sum
	mem        memSample // largest of each figure, sampled every 100 ms
}

func (r run) rate() float64 { return float64(r.records) / r.elapsed.Seconds() }

// appConfig is an instance at abacus's default settings except the
// application's own topics and group (so runs on one broker do not meet).
func appConfig(brokers, app, input string, extra ...string) testkit.InstanceConfig {
	env := map[string]string{
		"ABACUS_APPLICATION_ID": app,
		"ABACUS_INPUT_TOPIC":    input,
		"ABACUS_OUTPUT_TOPIC":   app + "-counts",
	}
	for i := 0; i+1 < len(extra); i += 2 {
		env[extra[i]] = extra[i+1]
	}
	return testkit.InstanceConfig{Name: "abacus-0", Brokers: brokers, Env: env, ServerDefaults: true}
}

func changelogOf(app string) string { return app + "-" + storeName + "-changelog" }

// runAbacus starts an instance of app over input (n records already in
// it), measures from its first processed record until its group has
// committed every input offset, and leaves it running for the caller.
func runAbacus(b *testing.B, admin *kafkaAdmin, name, app, input string, n int64, c testkit.InstanceConfig) (run, *testkit.Instance) {
	b.Helper()
	in := startAbacus(b, app, c)
	r := run{name: name, records: n}
	// The first record: poll tightly, the error of this edge is the poll interval.
	first := poll(b, in, app+": first record processed", 3*time.Minute, 5*time.Millisecond, func() (bool, error) {
		v, err := in.Metric("abacus_records_processed_total")
		return v > 0, err
	})
	cpu0 := cpuTime(b, in)
	self0, err := testkit.CPUTime(os.Getpid())
	if err != nil {
		b.Fatal(err)
	}
	r.startup = first.Sub(in.Started())
	// The end: every input offset committed, asked of the broker every
	// 25 ms; /metrics (progress, memory) only every 100 ms, as scraping
	// costs abacus CPU.
	var processedAt, scraped time.Time
	end := poll(b, in, app+": input fully committed", 5*time.Minute, 25*time.Millisecond, func() (bool, error) {
		if time.Since(scraped) >= 100*time.Millisecond {
			scraped = time.Now()
			if code, body, err := in.Get("/metrics"); err == nil && code == 200 {
				if processedAt.IsZero() && testkit.SumMetric(body, "abacus_records_processed_total") >= float64(n) {
					processedAt = scraped
				}
				if m, err := sampleMemory(in, body); err == nil {
					r.mem = r.mem.max(m)
				}
			}
		}
		c, err := admin.committed(app, input)
		return c >= n, err
	})
	if processedAt.IsZero() {
		processedAt = end
	}
	r.elapsed = end.Sub(first)
	r.processed = processedAt.Sub(first)
	r.cpu = cpuTime(b, in) - cpu0
	self1, _ := testkit.CPUTime(os.Getpid())
	r.benchCPU = self1 - self0
	r.peakRSS = peakRSS(b, in)
	r.commits = testkit.MustMetric(b, in, "abacus_commits_total")
	r.commitTime = testkit.MustMetric(b, in, "abacus_commit_duration_seconds_sum")
	if got := testkit.MustMetric(b, in, "abacus_records_processed_total"); got != float64(n) {
		b.Fatalf("%s: abacus_records_processed_total = %v, want %d", name, got, n)
	}
	return r, in
}

// outputs fills in the record counts of a stopped run's topics.
func (r *run) outputs(admin *kafkaAdmin, app string) {
	r.output = admin.records(app + "-counts")
	r.changelog = admin.records(changelogOf(app))
}

// restoreRun is the full restore of a changelog into an empty state dir.
type restoreRun struct {
	records   int64         // abacus_restored_records_total when ready
	offsets   int64         // offsets in the changelog (>= records after compaction)
	toReady   time.Duration // process start to /readyz 200
	restoring time.Duration // first task's restore start to the last task restored
	peakRSS   int64
}

// rate is records per second of the restore itself, from the first task's
// "restoring task from changelog" to the last "task restored", as the raw
// consumer's is from its first record to its last: neither counts process
// start, nor the group join.
func (r restoreRun) rate() float64 { return float64(r.records) / r.restoring.Seconds() }

// readyRate is records per second from process start to /readyz 200.
func (r restoreRun) readyRate() float64 { return float64(r.records) / r.toReady.Seconds() }

// roundsEnv overrides the number of rounds (default 3): every scenario runs
// once per round, rounds interleaved, and the tables show each scenario's
// median round, so that a burst of load from elsewhere on a shared machine
// moves one round rather than the result.
const roundsEnv = "ABACUS_BENCH_ROUNDS"

// results are every round of every scenario.
type results struct {
	raw     []rawResult
	alos    []run
	eos     []run
	nocache []run
	rss     []run
	restore []restoreRun
}

func BenchmarkCore(b *testing.B) {
	if runtime.GOOS != "linux" {
		b.Skip("reads /proc: Linux only")
	}
	rounds := 3
	if v := os.Getenv(roundsEnv); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			b.Fatalf("%s=%q: want a positive number", roundsEnv, v)
		}
		rounds = n
	}
	testkit.Binary(b) // build before any clock starts
	stall0, psiErr := cpuStall()
	wall0 := time.Now()
	br := testkit.StartBroker(b, numPartitions)
	brokers := br.Addr()
	admin := newAdmin(b, brokers)

	// Produce first, so that consumption is measured alone.
	admin.createTopic(inputTopic, numPartitions)
	began := time.Now()
	testkit.Produce(b, brokers, inputTopic, "murmur2_random", uniformKeys(1, numRecords, numKeys))
	produceTime := time.Since(began)
	admin.createTopic(rssTopic, rssPartitions)
	testkit.Produce(b, brokers, rssTopic, "murmur2_random", uniformKeys(2, rssRecords, rssRecords))
	for topic, want := range map[string]int64{inputTopic: numRecords, rssTopic: rssRecords} {
		if got := admin.records(topic); got != want {
			b.Fatalf("%s holds %d records, want %d", topic, got, want)
		}
	}
	fmt.Printf("produced %d records over %d keys to %s (%d partitions) in %s, and %d distinct keys to %s (%d partitions)\n",
		numRecords, numKeys, inputTopic, numPartitions, produceTime.Round(time.Millisecond), rssRecords, rssTopic, rssPartitions)

	var res results
	for round := 1; round <= rounds; round++ {
		app := func(s string) string { return fmt.Sprintf("bench-%s-%d", s, round) }
		stopped := func(r run, in *testkit.Instance, app string) run {
			in.Stop(time.Minute)
			r.outputs(admin, app)
			fmt.Printf("round %d: %s: %.0f records/s, peak RSS %s\n", round, r.name, r.rate(), mib(r.peakRSS))
			return r
		}

		// (a) the raw ceiling.
		raw := runRaw(b, brokers, inputTopic, app("raw"), numRecords)
		res.raw = append(res.raw, raw)
		fmt.Printf("round %d: (a) raw consumer: %.0f records/s\n", round, raw.rate())

		// (b) at_least_once, default settings.
		r, in := runAbacus(b, admin, "(b) abacus at_least_once", app("alos"), inputTopic, numRecords,
			appConfig(brokers, app("alos"), inputTopic))
		res.alos = append(res.alos, stopped(r, in, app("alos")))

		// (d) full restore of (b)'s changelog: same member, empty state dir.
		rest := runRestore(b, admin, brokers, app("alos"))
		res.restore = append(res.restore, rest)
		fmt.Printf("round %d: (d) restore: %d records at %.0f records/s\n", round, rest.records, rest.rate())

		// (c) exactly_once_v2, default settings.
		r, in = runAbacus(b, admin, "(c) abacus exactly_once_v2", app("eos"), inputTopic, numRecords,
			appConfig(brokers, app("eos"), inputTopic, "ABACUS_PROCESSING_GUARANTEE", "exactly_once_v2"))
		res.eos = append(res.eos, stopped(r, in, app("eos")))

		// The record cache off: every update produced at once.
		r, in = runAbacus(b, admin, "abacus at_least_once, cache off", app("nocache"), inputTopic, numRecords,
			appConfig(brokers, app("nocache"), inputTopic, "ABACUS_CACHE_MAX_BYTES", "0"))
		res.nocache = append(res.nocache, stopped(r, in, app("nocache")))

		// 12 partitions, 1,000,000 distinct keys: peak RSS at default settings.
		r, in = runAbacus(b, admin, "abacus at_least_once, 12 partitions, 1M keys", app("rss12"), rssTopic, rssRecords,
			appConfig(brokers, app("rss12"), rssTopic, "ABACUS_PARTITIONS", strconv.Itoa(rssPartitions)))
		res.rss = append(res.rss, stopped(r, in, app("rss12")))
	}

	pressure := -1.0 // unknown
	if stall1, err := cpuStall(); err == nil && psiErr == nil {
		pressure = float64(stall1-stall0) / float64(time.Since(wall0))
	}
	f := report(os.Stdout, res, pressure)
	b.ReportMetric(f.raw, "raw_rec/s")
	b.ReportMetric(f.alos, "alos_rec/s")
	b.ReportMetric(f.eos, "eos_rec/s")
	b.ReportMetric(f.restore, "restore_rec/s")
	b.ReportMetric(f.nocache, "nocache_rec/s")
	b.ReportMetric(float64(f.alosRSS)/(1<<20), "alos_peak_MiB")
	b.ReportMetric(float64(f.rss12RSS)/(1<<20), "rss12_peak_MiB")
}

// runRestore starts a member of app with an empty state dir and times it
// from process start to /readyz 200: a full restore of app's changelog.
func runRestore(b *testing.B, admin *kafkaAdmin, brokers, app string) restoreRun {
	b.Helper()
	rest := restoreRun{offsets: admin.records(changelogOf(app))}
	in := startAbacus(b, app+"-restore", appConfig(brokers, app, inputTopic))
	readyAt := poll(b, in, app+": /readyz 200 after a full restore", 5*time.Minute, 10*time.Millisecond, func() (bool, error) {
		return ready(in), nil
	})
	rest.toReady = readyAt.Sub(in.Started())
	rest.records = int64(testkit.MustMetric(b, in, "abacus_restored_records_total"))
	rest.peakRSS = peakRSS(b, in)
	rest.restoring = logSpan(b, in.Log(), "restoring task from changelog", "task restored")
	in.Stop(time.Minute)
	if rest.records == 0 {
		b.Fatalf("restore of %s applied no records (changelog holds %d offsets)", app, rest.offsets)
	}
	return rest
}

// median is the element of xs with the median rate (the lower middle one
// of an even count).
func median[T interface{ rate() float64 }](xs []T) T {
	s := slices.Clone(xs)
	slices.SortFunc(s, func(a, b T) int { return cmp.Compare(a.rate(), b.rate()) })
	return s[(len(s)-1)/2]
}

// rates lists the rate of every round, for the spread.
func rates[T interface{ rate() float64 }](xs []T) string {
	var out []string
	for _, x := range xs {
		out = append(out, fmt.Sprintf("%.0f", x.rate()))
	}
	return strings.Join(out, " ")
}

// logSpan is the time from the first log line with msg first to the last
// with msg last (slog's text format: time=<RFC 3339> first on the line).
func logSpan(b *testing.B, log, first, last string) time.Duration {
	b.Helper()
	var from, to time.Time
	for line := range strings.Lines(log) {
		isFirst, isLast := strings.Contains(line, `msg="`+first+`"`), strings.Contains(line, `msg="`+last+`"`)
		if !isFirst && !isLast {
			continue
		}
		stamp, _, _ := strings.Cut(strings.TrimPrefix(line, "time="), " ")
		t, err := time.Parse(time.RFC3339Nano, stamp)
		if err != nil {
			b.Fatalf("log line without a time: %q", line)
		}
		if isFirst && from.IsZero() {
			from = t
		}
		if isLast {
			to = t
		}
	}
	if from.IsZero() || to.Before(from) {
		b.Fatalf("no %q ... %q span in the log", first, last)
	}
	return to.Sub(from)
}

func mib(n int64) string { return fmt.Sprintf("%.0f MiB", float64(n)/(1<<20)) }

func secs(d time.Duration) string { return fmt.Sprintf("%.2f", d.Seconds()) }

func verdict(ok bool) string {
	if ok {
		return "met"
	}
	return "MISSED"
}

// figures are the headline numbers of a report.
type figures struct {
	raw, alos, eos, restore, nocache float64 // records/s, median rounds
	alosRSS, rss12RSS                int64   // peak RSS, the largest of the rounds
}

// cpuStall is the time for which some runnable task of this machine
// waited for a CPU since boot (Linux PSI, /proc/pressure/cpu "some"): its
// growth over the run tells how much else competed for the CPUs.
func cpuStall() (time.Duration, error) {
	raw, err := os.ReadFile("/proc/pressure/cpu")
	if err != nil {
		return 0, err
	}
	for line := range strings.Lines(string(raw)) {
		if !strings.HasPrefix(line, "some ") {
			continue
		}
		for _, f := range strings.Fields(line) {
			if v, ok := strings.CutPrefix(f, "total="); ok {
				us, err := strconv.ParseInt(v, 10, 64)
				return time.Duration(us) * time.Microsecond, err
			}
		}
	}
	return 0, fmt.Errorf("no \"some\" line in /proc/pressure/cpu")
}

// ratios lists a/b of every round, for the spread.
func ratios[A, B interface{ rate() float64 }](as []A, bs []B) string {
	var out []string
	for i := range min(len(as), len(bs)) {
		out = append(out, fmt.Sprintf("%.2f", as[i].rate()/bs[i].rate()))
	}
	return strings.Join(out, " ")
}

// report prints the figures and the ratios against the targets; pressure
// is the share of the run during which some task waited for a CPU (< 0:
// unknown).
func report(w io.Writer, res results, pressure float64) figures {
	raw, alos, eos, nocache, rest := median(res.raw), median(res.alos), median(res.eos), median(res.nocache), median(res.restore)
	largest := func(rs []run) int64 {
		var m int64
		for _, r := range rs {
			m = max(m, r.peakRSS)
		}
		return m
	}
	f := figures{raw: raw.rate(), alos: alos.rate(), eos: eos.rate(), restore: rest.rate(), nocache: nocache.rate(),
		alosRSS: largest(res.alos), rss12RSS: largest(res.rss)}

	mem, _ := os.ReadFile("/proc/meminfo")
	total, _ := statusField(mem, "MemTotal:")
	fmt.Fprintf(w, "\nabacus benchmark: %d CPUs, %.1f GiB, %s; one kfake broker in this process, loopback TCP; %d rounds, median round shown\n",
		runtime.NumCPU(), float64(total)/(1<<30), runtime.Version(), len(res.raw))
	fmt.Fprintf(w, "input: %d records over %d keys, %d partitions; raw consumer: %s\n",
		numRecords, numKeys, numPartitions, rawSettings)
	if pressure >= 0 {
		fmt.Fprintf(w, "machine load: some task waited for a CPU during %.0f%% of the run (PSI cpu some: the benchmark causes some itself; the higher it is, the more other work competed and the noisier the figures)\n", 100*pressure)
	}
	fmt.Fprintln(w)

	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "run\trecords\tseconds\trecords/s\tevery round's records/s\tstartup s\tall processed s\tCPU s\tbroker CPU s\tpeak RSS\toutput recs\tchangelog offs\tcommits\t")
	fmt.Fprintf(tw, "(a) raw consumer\t%d\t%s\t%.0f\t%s\t%s\t-\t%s\t-\t%s\t-\t-\t-\t\n",
		raw.Records, secs(raw.Elapsed), raw.rate(), rates(res.raw), secs(raw.Startup), secs(raw.CPU), mib(raw.PeakRSS))
	for _, rs := range [][]run{res.alos, res.eos, res.nocache, res.rss} {
		r := median(rs)
		fmt.Fprintf(tw, "%s\t%d\t%s\t%.0f\t%s\t%s\t%s\t%s\t%s\t%s\t%d\t%d\t%.0f\t\n",
			r.name, r.records, secs(r.elapsed), r.rate(), rates(rs), secs(r.startup), secs(r.processed),
			secs(r.cpu), secs(r.benchCPU), mib(r.peakRSS), r.output, r.changelog, r.commits)
	}
	fmt.Fprintf(tw, "(d) full restore of (b)'s changelog\t%d\t%s\t%.0f\t%s\t-\t-\t-\t-\t%s\t-\t%d\t-\t\n",
		rest.records, secs(rest.restoring), rest.rate(), rates(res.restore), mib(rest.peakRSS), rest.offsets)
	tw.Flush()

	fmt.Fprintf(w, "\nmemory of the abacus process in the median round (largest of samples every 100 ms, beside VmHWM, the true peak):\n")
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "run\tpeak RSS (VmHWM)\tlargest of the rounds\tVmRSS\tRssAnon\tRssFile\tGo runtime (sys)\tGo heap in use\t")
	for _, rs := range [][]run{res.alos, res.eos, res.nocache, res.rss} {
		r := median(rs)
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t\n", r.name, mib(r.peakRSS), mib(largest(rs)),
			mib(r.mem.rss), mib(r.mem.anon), mib(r.mem.file), mib(r.mem.goSys), mib(r.mem.goHeap))
	}
	tw.Flush()

	fmt.Fprintf(w, "\nseconds: first record processed to every input offset committed (abacus), first to last record (raw), first task's restore start to last task restored (restore)\n")
	fmt.Fprintf(w, "restore: %s s restoring; %s s from process start to /readyz 200 (%.0f records/s, %.2f of raw, counting start-up and the group join)\n",
		secs(rest.restoring), secs(rest.toReady), rest.readyRate(), rest.readyRate()/f.raw)
	fmt.Fprintf(w, "commits: %.0f commits took %.2f s of %s s under at_least_once; %.0f took %.2f s of %s s under exactly_once_v2\n\n",
		alos.commits, alos.commitTime, secs(alos.elapsed), eos.commits, eos.commitTime, secs(eos.elapsed))

	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "target\tratio of medians\ttarget\tresult\tratio in each round")
	rb, rc, rd := f.alos/f.raw, f.eos/f.alos, f.restore/f.raw
	fmt.Fprintf(tw, "(b) at_least_once / (a) raw\t%.2f\t>= %.2f\t%s\t%s\n", rb, targetALOS, verdict(rb >= targetALOS), ratios(res.alos, res.raw))
	fmt.Fprintf(tw, "(c) exactly_once_v2 / (b) at_least_once\t%.2f\t>= %.2f\t%s\t%s\n", rc, targetEOS, verdict(rc >= targetEOS), ratios(res.eos, res.alos))
	fmt.Fprintf(tw, "(d) restore / (a) raw\t%.2f\t>= %.2f\t%s\t%s\n", rd, targetRestore, verdict(rd >= targetRestore), ratios(res.restore, res.raw))
	var each []string
	for _, r := range res.rss {
		each = append(each, mib(r.peakRSS))
	}
	fmt.Fprintf(tw, "peak RSS, 12 partitions, 1M keys (largest round)\t%s\t< %s\t%s\t%s\n", mib(f.rss12RSS), mib(rssLimit), verdict(f.rss12RSS < rssLimit), strings.Join(each, ", "))
	tw.Flush()

	fmt.Fprintf(w, "\nrecord cache (at_least_once): default (10 MiB) %.0f records/s, %d output records; off %.0f records/s, %d output records: with the cache %.2fx the throughput and %.2fx the output records\n",
		alos.rate(), alos.output, nocache.rate(), nocache.output, alos.rate()/nocache.rate(), float64(alos.output)/float64(nocache.output))
	return f
}
