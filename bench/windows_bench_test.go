package bench

import (
	"fmt"
	"os"
	"runtime"
	"testing"
	"time"

	"github.com/abacus-streams/abacus/internal/testkit"
)

// The windowed workload of make bench (BENCHMARKS.md, "Windowed
// stores"): a million records over 1,000 keys (a market's symbols) in 4
// partitions, as a live source writes them at 100,000 records a second:
// timestamps 10 µs apart (10 s of event time), one in ten up to a second
// out of order. The same input runs through the count store alone and
// with each windowed store beside it.
const (
	windowRecords = 1_000_000
	windowKeys    = 1_000
	windowTopic   = "bench-windowed-input"
	// targetHopping is the hopping store's rate against the count store's
	// alone, both at_least_once.
	targetHopping = 0.4
)

// windowRuns are the windowed scenarios, each a store beside the count
// store.
var windowRuns = []struct{ name, spec string }{
	{"hopping 5s/1s", "trades=hopping,size=5s,advance=1s,grace=2s"},
	{"tumbling 5s", "trades=tumbling,size=5s,grace=2s"},
	{"session 3s", "visits=session,size=3s,grace=2s"},
}

// windowedRecords is the windowed workload.
func windowedRecords() []testkit.Record {
	recs := uniformKeys(3, windowRecords, windowKeys)
	base := time.Date(2026, 12, 7, 0, 0, 0, 0, time.UTC)
	for i := range recs {
		ts := base.Add(time.Duration(i) * 10 * time.Microsecond)
		if i%10 == 0 {
			ts = ts.Add(-time.Duration(i%1000) * time.Millisecond)
		}
		recs[i].Timestamp = ts
	}
	return recs
}

func BenchmarkWindows(b *testing.B) {
	if runtime.GOOS != "linux" {
		b.Skip("reads /proc: Linux only")
	}
	testkit.Binary(b)
	br := testkit.StartBroker(b, numPartitions)
	brokers := br.Addr()
	admin := newAdmin(b, brokers)
	admin.createTopic(windowTopic, numPartitions)
	testkit.Produce(b, brokers, windowTopic, "murmur2_random", windowedRecords())
	if got := admin.records(windowTopic); got != windowRecords {
		b.Fatalf("%s holds %d records, want %d", windowTopic, got, windowRecords)
	}

	rounds := 3
	if v := os.Getenv(roundsEnv); v != "" {
		fmt.Sscan(v, &rounds)
	}
	plain := make([]run, 0, rounds)
	windowed := make([][]run, len(windowRuns))
	for round := 1; round <= rounds; round++ {
		app := func(s string) string { return fmt.Sprintf("bench-w%s-%d", s, round) }
		r, in := runAbacus(b, admin, "count store alone", app("plain"), windowTopic, windowRecords,
			appConfig(brokers, app("plain"), windowTopic))
		in.Stop(time.Minute)
		plain = append(plain, r)
		fmt.Printf("round %d: count store alone: %.0f records/s\n", round, r.rate())
		for i, wr := range windowRuns {
			name := fmt.Sprint(i)
			r, in := runAbacus(b, admin, wr.name, app(name), windowTopic, windowRecords,
				appConfig(brokers, app(name), windowTopic, "ABACUS_WINDOWS", wr.spec))
			if late := testkit.MustMetric(b, in, "abacus_records_late_total"); late != 0 {
				b.Errorf("%s: %v late records; the workload is within the grace", wr.name, late)
			}
			in.Stop(time.Minute)
			windowed[i] = append(windowed[i], r)
			fmt.Printf("round %d: %s: %.0f records/s (%.2f x the count store alone)\n", round, wr.name, r.rate(), r.rate()/plain[len(plain)-1].rate())
		}
	}
	p := median(plain)
	fmt.Printf("\nmedian of %d rounds, at_least_once, default settings, %d records over %d keys:\n", rounds, windowRecords, windowKeys)
	fmt.Printf("  count store alone: %.0f records/s, peak RSS %s\n", p.rate(), mib(p.peakRSS))
	for i, wr := range windowRuns {
		m := median(windowed[i])
		ratio := m.rate() / p.rate()
		fmt.Printf("  + %s: %.0f records/s = %.2f x (target %.2f for hopping), peak RSS %s\n", wr.name, m.rate(), ratio, targetHopping, mib(m.peakRSS))
		b.ReportMetric(ratio, "ratio_"+fmt.Sprint(i))
	}
	if ratio := median(windowed[0]).rate() / p.rate(); ratio < targetHopping {
		fmt.Printf("  below target: hopping %.2f x < %.2f x\n", ratio, targetHopping)
	}
}
