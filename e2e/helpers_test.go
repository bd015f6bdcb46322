package e2e

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/abacus-streams/abacus/internal/testkit"
)

const (
	input     = "input-topic"
	output    = "counts-topic"
	changelog = "counts-app-counts-store-changelog"
	dlq       = "counts-app-dlq"
	storeName = "counts-store"
)

// workload is a set of records and the true count per key.
type workload struct {
	records []testkit.Record
	truth   map[string]int64
}

// hottest is the workload's key with the most records, and their number.
func (w workload) hottest() (key string, most int64) {
	for k, n := range w.truth {
		if n > most || n == most && k < key {
			key, most = k, n
		}
	}
	return key, most
}

// skewed makes n records over k keys: a few very hot keys, many cold ones,
// with spaces, colons, slashes, percent signs and UTF-8 among the keys.
func skewed(seed uint64, n, k int) workload {
	r := rand.New(rand.NewPCG(seed, 1))
	keys := make([]string, k)
	shapes := []string{"user-%d", "user %d", "a:b:%d", "héllo-wörld-%d", "日本-%d", "x/y %d%%", "k%d"}
	for i := range keys {
		keys[i] = fmt.Sprintf(shapes[i%len(shapes)], i)
	}
	w := workload{truth: map[string]int64{}}
	zipf := rand.NewZipf(r, 1.2, 2, uint64(k-1))
	for i := range n {
		key := keys[zipf.Uint64()]
		if i < k {
			key = keys[i] // every key at least once
		}
		w.records = append(w.records, testkit.Record{Key: []byte(key), Value: []byte(strconv.Itoa(i))})
		w.truth[key]++
	}
	return w
}

func (w workload) add(o workload) workload {
	out := workload{truth: map[string]int64{}}
	out.records = append(append(out.records, w.records...), o.records...)
	for k, v := range w.truth {
		out.truth[k] += v
	}
	for k, v := range o.truth {
		out.truth[k] += v
	}
	return out
}

// lookup asks the instances in turn for key and returns the first 200
// answer (any member answers, routing to the owner), or the last status.
func lookup(instances []*testkit.Instance, key string) (testkit.KeyCount, int, error) {
	last := 0
	for _, in := range instances {
		kc, code, err := in.Count(storeName, key)
		if err != nil {
			return kc, 0, err
		}
		if code == 200 {
			return kc, 200, nil
		}
		last = code
	}
	return testkit.KeyCount{}, last, nil
}

// waitCounts waits until the instances answer every key of truth with its
// count compared by cmp (exact equality, or at least for at_least_once).
func waitCounts(t *testing.T, within time.Duration, instances []*testkit.Instance, truth map[string]int64, atLeast bool) {
	t.Helper()
	pending := make(map[string]int64, len(truth))
	for k, v := range truth {
		pending[k] = v
	}
	testkit.Eventually(t, within, func() error {
		var firstErr error
		lookupEach(instances, slices.Collect(maps.Keys(pending)), func(key string, kc testkit.KeyCount, code int, err error) {
			switch {
			case err != nil:
				firstErr = err
			case code != 200:
				firstErr = fmt.Errorf("key %q: status %d (%d keys pending)", key, code, len(pending))
			case kc.Value == pending[key] || (atLeast && kc.Value > pending[key]):
				delete(pending, key)
			case kc.Value > pending[key]:
				t.Errorf("key %q counted %d, more than the true %d", key, kc.Value, pending[key])
				delete(pending, key)
			default:
				firstErr = fmt.Errorf("key %q: %d, want %d (%d keys pending)", key, kc.Value, pending[key], len(pending))
			}
		})
		if len(pending) == 0 {
			return nil
		}
		return firstErr
	})
}

// lookupEach looks every key up (see lookup), eight at a time, and hands
// each answer to fn, one call at a time.
func lookupEach(instances []*testkit.Instance, keys []string, fn func(key string, kc testkit.KeyCount, code int, err error)) {
	var mu sync.Mutex
	ch := make(chan string)
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for key := range ch {
				kc, code, err := lookup(instances, key)
				mu.Lock()
				fn(key, kc, code, err)
				mu.Unlock()
			}
		}()
	}
	for _, k := range keys {
		ch <- k
	}
	close(ch)
	wg.Wait()
}

// checkTopic checks the last value per key of a topic against the truth.
func checkTopic(t *testing.T, brokers, topic, isolation string, truth map[string]int64, atLeast bool) {
	t.Helper()
	last, _ := testkit.LastValues(t, brokers, topic, isolation)
	bad := 0
	for k, want := range truth {
		got, err := strconv.ParseInt(last[k], 10, 64)
		if err != nil || got < want || (!atLeast && got != want) {
			if bad++; bad <= 5 {
				t.Errorf("%s: last value of %q = %q, want %d", topic, k, last[k], want)
			}
		}
	}
	if len(last) != len(truth) {
		t.Errorf("%s holds %d keys, want %d", topic, len(last), len(truth))
	}
	if bad > 5 {
		t.Errorf("%s: %d keys wrong in all", topic, bad)
	}
}

var metric = testkit.MustMetric

// atLeastMetric is a condition: the metric has reached min.
func atLeastMetric(in *testkit.Instance, name string, min float64) error {
	v, err := in.Metric(name)
	if err != nil {
		return err
	}
	if v < min {
		return fmt.Errorf("%s of %s is %v, waiting for %v", name, in.Name, v, min)
	}
	return nil
}

// steady are settings for tests that count exactly under at_least_once,
// which holds only while no member is thrown out of the group: the 6 s
// session timeout testkit sets for failover tests can expire on a loaded
// machine (missed heartbeats), and a rejoin replays uncommitted records.
func steady(env map[string]string) map[string]string {
	out := map[string]string{"ABACUS_KAFKA_SESSION_TIMEOUT_MS": "45000", "ABACUS_KAFKA_HEARTBEAT_INTERVAL_MS": "3000"}
	for k, v := range env {
		out[k] = v
	}
	return out
}

// every calls step every interval (waiting before each call) on a
// goroutine of its own until halt, which returns once step no longer runs:
// what step wrote can then be read without the lock it took.
func every(interval time.Duration, step func()) (halt func()) {
	stop, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			case <-time.After(interval):
			}
			step()
		}
	}()
	return func() {
		close(stop)
		<-done
	}
}
