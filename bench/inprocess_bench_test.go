package bench

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"runtime/trace"
	"strconv"
	"testing"
	"time"

	"github.com/abacus-streams/abacus/internal/config"
	"github.com/abacus-streams/abacus/internal/processor"
	"github.com/abacus-streams/abacus/internal/store"
	"github.com/abacus-streams/abacus/internal/testkit"
)

// profileEnv names a directory: BenchmarkInProcess then writes a CPU
// profile (<run>.cpu.pprof) and an execution trace (<run>.trace) of the
// measured stretch alone, for `go tool pprof` and `go tool trace`, and the
// heap profile taken when the heap in use was largest (<run>.heap.pprof;
// the broker's heap is in it too: focus on the processor's stacks).
const profileEnv = "ABACUS_BENCH_PROFILE_DIR"

// logEnv, set, sends BenchmarkInProcess's processor log to stderr.
const logEnv = "ABACUS_BENCH_LOG"

// BenchmarkInProcess runs the processor inside the test process, on the
// same workload as BenchmarkCore, so that its hot path can be profiled
// with Go's tools (the abacus binary serves no pprof). The broker shares
// the process, its CPUs and its garbage collector, so its figures are for
// finding where the time goes, not for BENCHMARKS.md. `make bench` does not
// run it:
//
//	ABACUS_BENCH_PROFILE_DIR=/tmp/prof go test -run='^$' -bench=InProcess -benchtime=1x ./bench/
//	go tool pprof -top -focus=runSession /tmp/prof/at_least_once.cpu.pprof
func BenchmarkInProcess(b *testing.B) {
	for _, guarantee := range []string{config.AtLeastOnce, config.ExactlyOnceV2} {
		b.Run(guarantee, func(b *testing.B) { inProcess(b, guarantee, guarantee, numPartitions, numKeys) })
	}
	// The memory case: 12 partitions, every key distinct.
	b.Run("rss12", func(b *testing.B) { inProcess(b, "rss12", config.AtLeastOnce, rssPartitions, rssRecords) })
	// A full restore of the at-least-once run's changelog.
	b.Run("restore", inProcessRestore)
	// BenchmarkWindows' workload with its hopping store.
	b.Run("hopping", inProcessWindows)
}

// inProcessWindows profiles BenchmarkWindows' hopping run.
func inProcessWindows(b *testing.B) {
	br := testkit.StartBroker(b, numPartitions)
	admin := newAdmin(b, br.Addr())
	admin.createTopic(inputTopic, numPartitions)
	testkit.Produce(b, br.Addr(), inputTopic, "murmur2_random", windowedRecords())
	app := "inproc-hopping"
	stop := startInProcess(b, br.Addr(), app, config.AtLeastOnce, numPartitions, "ABACUS_WINDOWS="+windowRuns[0].spec)
	defer stop()
	stopProfile := startProfile(b, "hopping")
	b.ResetTimer()
	began := time.Now()
	testkit.Eventually(b, 10*time.Minute, func() error {
		n, err := admin.committed(app, inputTopic)
		if err == nil && n < windowRecords {
			err = testkit.Errorf("%d of %d input offsets committed", n, windowRecords)
		}
		return err
	})
	elapsed := time.Since(began)
	b.StopTimer()
	stopProfile()
	b.ReportMetric(windowRecords/elapsed.Seconds(), "rec/s")
}

func inProcess(b *testing.B, name, guarantee string, partitions, keys int) {
	br := testkit.StartBroker(b, partitions)
	admin := newAdmin(b, br.Addr())
	admin.createTopic(inputTopic, partitions)
	testkit.Produce(b, br.Addr(), inputTopic, "murmur2_random", uniformKeys(1, numRecords, keys))

	app := "inproc"
	stop := startInProcess(b, br.Addr(), app, guarantee, partitions)
	defer stop()
	// The measured stretch: the processor turns RUNNING (restored, empty)
	// to every input offset committed; the profile covers that alone.
	stopProfile := startProfile(b, name)
	b.ResetTimer()
	began := time.Now()
	waitAllCommitted(b, admin, app)
	elapsed := time.Since(began)
	b.StopTimer()
	stopProfile()
	b.ReportMetric(numRecords/elapsed.Seconds(), "rec/s")
}

// inProcessRestore counts the workload at least once, stops, and profiles
// a member of the same application starting on an empty state dir: a
// full restore of the changelog, from the start of Run to ready.
func inProcessRestore(b *testing.B) {
	br := testkit.StartBroker(b, numPartitions)
	admin := newAdmin(b, br.Addr())
	admin.createTopic(inputTopic, numPartitions)
	testkit.Produce(b, br.Addr(), inputTopic, "murmur2_random", uniformKeys(1, numRecords, numKeys))
	app := "inproc-restore"
	stop := startInProcess(b, br.Addr(), app, config.AtLeastOnce, numPartitions)
	waitAllCommitted(b, admin, app)
	stop()
	records := admin.records(changelogOf(app))

	stopProfile := startProfile(b, "restore")
	b.ResetTimer()
	began := time.Now()
	stop = startInProcess(b, br.Addr(), app, config.AtLeastOnce, numPartitions)
	defer stop()
	elapsed := time.Since(began)
	b.StopTimer()
	stopProfile()
	b.ReportMetric(float64(records)/elapsed.Seconds(), "rec/s")
}

// waitAllCommitted waits until app's group has committed every input
// offset.
func waitAllCommitted(b *testing.B, admin *kafkaAdmin, app string) {
	b.Helper()
	testkit.Eventually(b, 5*time.Minute, func() error {
		n, err := admin.committed(app, inputTopic)
		if err == nil && n < numRecords {
			err = testkit.Errorf("%d of %d input offsets committed", n, numRecords)
		}
		return err
	})
}

// startInProcess runs a processor (member abacus-0, an empty state dir)
// until it is ready; stop cancels it and closes its store.
func startInProcess(b *testing.B, brokers, app, guarantee string, partitions int, env ...string) (stop func()) {
	b.Helper()
	cfg, err := config.Load(nil, append(env,
		"ABACUS_BOOTSTRAP_SERVERS="+brokers,
		"ABACUS_APPLICATION_ID="+app,
		"ABACUS_INPUT_TOPIC="+inputTopic,
		"ABACUS_INSTANCE_ID=abacus-0",
		"ABACUS_STATE_DIR="+b.TempDir(),
		"ABACUS_PROCESSING_GUARANTEE="+guarantee,
		"ABACUS_PARTITIONS="+strconv.Itoa(partitions),
	), io.Discard)
	if err != nil {
		b.Fatal(err)
	}
	db, err := store.Open(store.Config{Dir: store.DirOf(cfg.StateDir, cfg.ApplicationID, cfg.Store)})
	if err != nil {
		b.Fatal(err)
	}
	logger := slog.New(slog.DiscardHandler)
	if os.Getenv(logEnv) != "" {
		logger = slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	proc, err := processor.New(processor.Config{Config: cfg, Logger: logger}, db)
	if err != nil {
		db.Close()
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- proc.Run(ctx) }()
	stop = func() {
		cancel()
		if err := <-done; err != nil {
			b.Error(err)
		}
		db.Close()
	}
	testkit.Eventually(b, 2*time.Minute, func() error {
		if !proc.Ready() {
			return testkit.Errorf("processor not ready: %s", proc.State())
		}
		return nil
	})
	return stop
}

// startProfile starts the CPU profile and the execution trace if
// profileEnv asks for them; the returned function stops both.
func startProfile(b *testing.B, name string) (stop func()) {
	dir := os.Getenv(profileEnv)
	if dir == "" {
		return func() {}
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		b.Fatal(err)
	}
	cpu, err := os.Create(filepath.Join(dir, name+".cpu.pprof"))
	if err != nil {
		b.Fatal(err)
	}
	tr, err := os.Create(filepath.Join(dir, name+".trace"))
	if err != nil {
		b.Fatal(err)
	}
	if err := pprof.StartCPUProfile(cpu); err != nil {
		b.Fatal(err)
	}
	if err := trace.Start(tr); err != nil {
		b.Fatal(err)
	}
	// The heap profile at the largest heap in use, sampled every 200 ms.
	stopHeap := make(chan struct{})
	heapDone := make(chan struct{})
	go func() {
		defer close(heapDone)
		var largest uint64
		var best bytes.Buffer
		tick := time.NewTicker(200 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stopHeap:
				if err := os.WriteFile(filepath.Join(dir, name+".heap.pprof"), best.Bytes(), 0o644); err != nil {
					b.Error(err)
				}
				return
			case <-tick.C:
			}
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			if ms.HeapInuse > largest {
				largest = ms.HeapInuse
				best.Reset()
				_ = pprof.Lookup("heap").WriteTo(&best, 0)
			}
		}
	}()
	return func() {
		close(stopHeap)
		<-heapDone
		trace.Stop()
		pprof.StopCPUProfile()
		cpu.Close()
		tr.Close()
	}
}
