package subscribe

import (
	"encoding/json"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/abacus-streams/abacus/internal/abacus"
)

// benchSubscribers opens n key streams over keys distinct keys, each read
// by a goroutine that records the last value seen, and returns those.
func benchSubscribers(b *testing.B, th *testHub, n, keys int) []atomic.Int64 {
	b.Helper()
	last := make([]atomic.Int64, n)
	conns := make([]*sseConn, n)
	var wg sync.WaitGroup
	b.Cleanup(func() {
		for _, c := range conns {
			c.close()
		}
		wg.Wait()
	})
	for i := range n {
		conns[i] = subscribeWith(b, plainClient, th.url(keyQuery(benchKey(i%keys))), nil)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for f := range conns[i].frames {
				var d countData
				if f.Event == EventCount && json.Unmarshal([]byte(f.Data), &d) == nil {
					last[i].Store(d.Value)
				}
			}
		}()
	}
	eventually(b, "every stream to open", func() bool { return th.admitted.Load() == int64(n) })
	return last
}

func benchKey(i int) string { return fmt.Sprintf("key-%05d", i) }

// BenchmarkPublish measures one Publish of 10,000 updates (100 of whose
// keys have 10 subscribers each) with 1,000 streams open: the time the
// processor's commit spends handing updates over.
func BenchmarkPublish(b *testing.B) {
	th := newTestHub(b)
	benchSubscribers(b, th, 1000, 100)
	ups := make([]abacus.Update, 10_000)
	for i := range ups {
		ups[i] = abacus.Update{Key: benchKey(i), Partition: int32(i % 4)}
	}
	b.ResetTimer()
	var worst time.Duration
	for i := 0; b.Loop(); i++ {
		for j := range ups {
			ups[j].Value, ups[j].Offset = int64(i+1), int64(i+1)
		}
		start := time.Now()
		th.Publish(ups)
		worst = max(worst, time.Since(start))
	}
	b.ReportMetric(float64(worst.Microseconds()), "worst-µs")
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(len(ups)), "ns/update")
}

// BenchmarkFanOut measures end-to-end throughput with 1,000 streams: b.N
// commits of 100 updates, one per key followed by 10 streams, timed until
// every stream has been sent the last value of its key.
func BenchmarkFanOut(b *testing.B) {
	const subs, keys = 1000, 100
	th := newTestHub(b)
	last := benchSubscribers(b, th, subs, keys)
	ups := make([]abacus.Update, keys)
	b.ResetTimer()
	n := 0
	for range b.N { // not b.Loop: the timer must run on through the wait
		n++
		for j := range ups {
			ups[j] = abacus.Update{Key: benchKey(j), Value: int64(n), Partition: int32(j % 4), Offset: int64(n)}
		}
		th.Publish(ups)
	}
	eventually(b, "every stream to get the last value", func() bool {
		for i := range last {
			if last[i].Load() != int64(n) {
				return false
			}
		}
		return true
	})
	b.StopTimer()
	secs := b.Elapsed().Seconds()
	b.ReportMetric(float64(n*keys)/secs, "updates/s")
	b.ReportMetric(metric(b, th.reg, "abacus_sse_events_sent_total")/secs, "events/s")
}

// BenchmarkFanOutPaced measures the hub's fan-out of one commit of 100
// updates to 1,000 streams (10 per key), with no coalescing: each commit
// is published once the hub has handed the previous one to the streams.
func BenchmarkFanOutPaced(b *testing.B) {
	const subs, keys = 1000, 100
	th := newTestHub(b)
	benchSubscribers(b, th, subs, keys)
	ups := make([]abacus.Update, keys)
	n := 0
	for b.Loop() {
		n++
		for j := range ups {
			ups[j] = abacus.Update{Key: benchKey(j), Value: int64(n), Partition: int32(j % 4), Offset: int64(n)}
		}
		th.Publish(ups)
		for th.fanned.Load() < th.published.Load() {
			runtime.Gosched()
		}
	}
	b.ReportMetric(float64(n*subs)/b.Elapsed().Seconds(), "offers/s")
}

// BenchmarkFanOutLoop measures the loop's own work for one commit of 100
// updates to 1,000 key streams, without HTTP: index lookups and offers.
func BenchmarkFanOutLoop(b *testing.B) {
	const subs, keys = 1000, 100
	h := New(Config{})
	for i := range subs {
		h.register(newStream(Query{Key: benchKey(i % keys)}, DefaultBuffer))
	}
	work := make([]queued, keys)
	n := 0
	for b.Loop() {
		n++
		for j := range work {
			work[j] = queued{Update: abacus.Update{Key: benchKey(j), Value: int64(n)}, batch: uint64(n), order: uint64(n*keys + j)}
		}
		h.fanOut(work)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(n*subs), "ns/offer")
}
