package e2e

import (
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/abacus-streams/abacus/internal/partitioner"
	"github.com/abacus-streams/abacus/internal/testkit"
	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
)

// boundedAnswer is a key lookup's body with ?max_lag.
type boundedAnswer struct {
	Value    int64  `json:"value"`
	ServedBy string `json:"served_by"`
	Lag      *int64 `json:"lag"`
	Stale    *bool  `json:"stale"`
	Position *struct {
		Partition int32 `json:"partition"`
		Offset    int64 `json:"offset"`
	} `json:"position"`
}

// lookupProbe asks keys through the survivors over and over, with and
// without ?max_lag, and keeps what a reader would check.
type lookupProbe struct {
	mu sync.Mutex
	// bounded lookups: answers by status, stale answers, examples of
	// failures
	boundedCodes map[int]int
	staleAnswers int
	// bounded scans: answers by status, stale pages
	scanCodes  map[int]int
	staleScans int
	failures   []string
	// the highest committed count an unbounded (or not stale) answer gave
	last map[string]int64
}

// A bounded lookup (?max_lag) answers through the takeover of a member
// lost with its disk, from the standby of its tasks while the group has
// not moved them and while they restore: every such lookup is a 200, and
// those not served by the owner's committed state say stale. So does a
// bounded scan, whose page holds every key counted before the kill. A lookup
// without max_lag answers 503 or a committed count: never one lower than
// an earlier answer, never above what was produced (exactly_once_v2).
func TestBoundedLookupsThroughATakeover(t *testing.T) {
	b := testkit.StartBroker(t, 6)
	pods := trio(t, b.Addr(), standbyEnv("exactly_once_v2"))
	first := skewed(111, 3_000, 300)
	testkit.Produce(t, b.Addr(), input, "murmur2_random", first.records)
	waitCounts(t, 2*time.Minute, pods, first.truth, false)
	pl := awaitStandbys(t, pods, 6, 1)

	victim, survivors := pods[1], []*testkit.Instance{pods[0], pods[2]}
	var probeKeys []string
	for k := range first.truth {
		if pl.Active[partitioner.Murmur2([]byte(k), 6)] == victim.Name && len(probeKeys) < 16 {
			probeKeys = append(probeKeys, k)
		}
	}
	slices.Sort(probeKeys)
	more := skewed(112, 30_000, 300)
	f := startFeeder(t, b.Addr(), more, 1_500)
	probe := &lookupProbe{boundedCodes: map[int]int{}, scanCodes: map[int]int{}, last: map[string]int64{}}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		probe.run(t, survivors, probeKeys, first, f, stop)
	}()
	waitProgress(t, f, 0.3)
	victim.Kill()
	if err := os.RemoveAll(victim.StateDir); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	<-f.done
	f.check(t)
	all := first.add(more)
	waitCounts(t, 2*time.Minute, survivors, all.truth, false)
	close(stop)
	wg.Wait()

	probe.mu.Lock()
	defer probe.mu.Unlock()
	t.Logf("bounded lookups by status %v, %d of them stale; bounded scans by status %v, %d of them stale; every key exact %.1f s after the kill",
		probe.boundedCodes, probe.staleAnswers, probe.scanCodes, probe.staleScans, time.Since(killed).Seconds())
	for _, f := range probe.failures[:min(len(probe.failures), 5)] {
		t.Error(f)
	}
	if len(probe.failures) > 5 {
		t.Errorf("%d failures in all", len(probe.failures))
	}
	if probe.staleAnswers == 0 {
		t.Error("no bounded lookup was answered by a copy other than the owner's committed state")
	}
	if probe.staleScans == 0 {
		t.Error("no bounded scan was read from a copy other than the owner's committed state")
	}
	exactOnEveryMember(t, survivors, all.truth)
}

// run asks every key through each survivor in turn until stop.
func (pr *lookupProbe) run(t *testing.T, survivors []*testkit.Instance, keys []string, first workload, f *feeder, stop chan struct{}) {
	for turn := 0; ; turn++ {
		select {
		case <-stop:
			return
		case <-time.After(20 * time.Millisecond):
		}
		in := survivors[turn%len(survivors)]
		code, body, err := in.Get("/api/v1/stores/" + storeName + "/keys?limit=1000&max_lag=1000000")
		pr.scan(in.Name, code, body, err, first, f)
		for _, k := range keys {
			path := "/api/v1/stores/" + storeName + "/keys/" + url.PathEscape(k)
			code, body, err := in.Get(path + "?max_lag=1000000")
			produced := first.truth[k] + f.sentOf(k, f.sent.Load())
			pr.bounded(in.Name, k, code, body, err, produced)
			code, body, err = in.Get(path)
			produced = first.truth[k] + f.sentOf(k, f.sent.Load())
			pr.unbounded(in.Name, k, code, body, err, produced)
		}
	}
}

func (pr *lookupProbe) fail(format string, a ...any) {
	pr.failures = append(pr.failures, fmt.Sprintf(format, a...))
}

func (pr *lookupProbe) bounded(member, key string, code int, body []byte, err error, produced int64) {
	pr.mu.Lock()
	defer pr.mu.Unlock()
	if err != nil {
		pr.fail("bounded lookup of %q at %s: %v", key, member, err)
		return
	}
	pr.boundedCodes[code]++
	if code != 200 {
		pr.fail("bounded lookup of %q at %s: %d %s", key, member, code, body)
		return
	}
	var a boundedAnswer
	if err := json.Unmarshal(body, &a); err != nil || a.Lag == nil || a.Stale == nil {
		pr.fail("bounded lookup of %q at %s: %s, without lag and stale", key, member, body)
		return
	}
	if a.Value > produced {
		pr.fail("bounded lookup of %q at %s: %d, above the %d produced", key, member, a.Value, produced)
	}
	if *a.Stale != (a.Position == nil) {
		pr.fail("bounded lookup of %q at %s: %s; a position comes with the owner's committed state, and only with it", key, member, body)
	}
	if *a.Stale {
		pr.staleAnswers++
		return
	}
	pr.committed(member, key, a.Value, produced, "bounded, not stale")
}

// scan checks a bounded scan's page: a 200 holding every key of the first
// workload (counted before the kill), none above what was produced.
func (pr *lookupProbe) scan(member string, code int, body []byte, err error, first workload, f *feeder) {
	pr.mu.Lock()
	defer pr.mu.Unlock()
	if err != nil {
		pr.fail("bounded scan at %s: %v", member, err)
		return
	}
	pr.scanCodes[code]++
	if code != 200 {
		pr.fail("bounded scan at %s: %d %s", member, code, body)
		return
	}
	var page struct {
		Items []struct {
			Key   string `json:"key"`
			Value int64  `json:"value"`
		} `json:"items"`
		Lag   *int64 `json:"lag"`
		Stale *bool  `json:"stale"`
	}
	if err := json.Unmarshal(body, &page); err != nil || page.Lag == nil || page.Stale == nil {
		pr.fail("bounded scan at %s: %.200s, without lag and stale", member, body)
		return
	}
	if *page.Stale {
		pr.staleScans++
	}
	seen := 0
	for _, it := range page.Items {
		if _, ok := first.truth[it.Key]; ok {
			seen++
		}
		if produced := first.truth[it.Key] + f.sentOf(it.Key, f.sent.Load()); it.Value > produced {
			pr.fail("bounded scan at %s: %q at %d, above the %d produced", member, it.Key, it.Value, produced)
		}
	}
	if seen != len(first.truth) {
		pr.fail("bounded scan at %s: %d of the %d keys counted before the kill", member, seen, len(first.truth))
	}
}

func (pr *lookupProbe) unbounded(member, key string, code int, body []byte, err error, produced int64) {
	pr.mu.Lock()
	defer pr.mu.Unlock()
	switch {
	case err != nil:
		pr.fail("lookup of %q at %s: %v", key, member, err)
	case code == 503:
	case code != 200:
		pr.fail("lookup of %q at %s: %d %s", key, member, code, body)
	default:
		var a boundedAnswer
		if err := json.Unmarshal(body, &a); err != nil || a.Lag != nil || a.Stale != nil {
			pr.fail("lookup of %q at %s: %s", key, member, body)
			return
		}
		pr.committed(member, key, a.Value, produced, "unbounded")
	}
}

// committed checks an answer that claims the owner's committed count:
// never lower than an earlier one, never above what was produced.
func (pr *lookupProbe) committed(member, key string, value, produced int64, what string) {
	if value < pr.last[key] {
		pr.fail("%s lookup of %q at %s: %d, lower than the %d answered before (a stale value)", what, key, member, value, pr.last[key])
	}
	if value > produced {
		pr.fail("%s lookup of %q at %s: %d, above the %d produced", what, key, member, value, produced)
	}
	pr.last[key] = max(pr.last[key], value)
}

// Read your writes: a record produced with the real client and looked up
// at once with ?after=partition:offset from its delivery report, through
// a member that does not own it, is counted in the answer. 200 times,
// four at a time, while other input flows.
func TestReadYourWritesWithAfter(t *testing.T) {
	b := testkit.StartBroker(t, 6)
	pods := trio(t, b.Addr(), map[string]string{"ABACUS_PARTITIONS": "6"})
	load := skewed(121, 60_000, 500)
	f := startFeeder(t, b.Addr(), load, 1_500)
	producer, err := kafka.NewProducer(&kafka.ConfigMap{"bootstrap.servers": b.Addr(), "partitioner": "murmur2_random",
		"enable.idempotence": true, "linger.ms": 1, "log_level": 3, "enable.metrics.push": false})
	if err != nil {
		t.Fatal(err)
	}
	defer producer.Close()
	topic := input
	var mu sync.Mutex
	var misses []string
	var waited []time.Duration
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 50 {
				key := fmt.Sprintf("ryw-%d-%d", w, i)
				report := make(chan kafka.Event, 1)
				if err := producer.Produce(&kafka.Message{TopicPartition: kafka.TopicPartition{Topic: &topic, Partition: kafka.PartitionAny},
					Key: []byte(key), Value: []byte("1")}, report); err != nil {
					t.Error(err)
					return
				}
				m := (<-report).(*kafka.Message)
				if m.TopicPartition.Error != nil {
					t.Error(m.TopicPartition.Error)
					return
				}
				p, o := m.TopicPartition.Partition, int64(m.TopicPartition.Offset)
				asked := notOwner(pods, p)
				began := time.Now()
				code, body, err := asked.Get(fmt.Sprintf("/api/v1/stores/%s/keys/%s?after=%d:%d&wait=10s", storeName, url.PathEscape(key), p, o))
				took := time.Since(began)
				var a struct {
					Value    int64 `json:"value"`
					Position struct {
						Partition int32 `json:"partition"`
						Offset    int64 `json:"offset"`
					} `json:"position"`
				}
				mu.Lock()
				waited = append(waited, took)
				if err != nil || code != 200 || json.Unmarshal(body, &a) != nil || a.Value != 1 || a.Position.Partition != p || a.Position.Offset <= o {
					misses = append(misses, fmt.Sprintf("%s at %d:%d through %s: %d %s %v", key, p, o, asked.Name, code, body, err))
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	<-f.done
	f.check(t)
	slices.Sort(waited)
	t.Logf("200 reads of a record just produced, through a member that does not own it: median %s, slowest %s", waited[len(waited)/2].Round(time.Millisecond), waited[len(waited)-1].Round(time.Millisecond))
	for _, m := range misses[:min(len(misses), 5)] {
		t.Errorf("missed: %s", m)
	}
	if len(misses) > 0 {
		t.Errorf("%d of 200 reads missed the record", len(misses))
	}
}

// notOwner is a member that does not own partition p in its own view.
func notOwner(pods []*testkit.Instance, p int32) *testkit.Instance {
	for _, in := range pods {
		v, _, err := in.Cluster()
		if err != nil {
			continue
		}
		for _, m := range v.Members {
			if m.Member == in.Name && !slices.Contains(m.Partitions, p) {
				return in
			}
		}
	}
	return pods[0]
}

// A key subscription with ?max_lag is fed by the standby of the key's
// task while its owner cannot serve: asked of a third member right after
// the owner is killed (kill -9), it gets the key's exact count from the
// standby while the group has not moved the partition yet, when the
// strict subscription beside it only waits; both then follow the key to
// its new owner, with values strictly increasing to the truth, on streams
// that never end.
func TestSubscriptionWithMaxLagFedByAStandby(t *testing.T) {
	b := testkit.StartBroker(t, 6)
	pods := trio(t, b.Addr(), standbyEnv("exactly_once_v2"))
	const key, n = "fed-by-a-standby", 300
	testkit.Produce(t, b.Addr(), input, "murmur2_random", sseRecords(key, n))
	waitCounts(t, time.Minute, pods, map[string]int64{key: n}, false)
	pl := awaitStandbys(t, pods, 6, 1)
	p := partitioner.Murmur2([]byte(key), 6)
	victim, _ := ssePodNamed(t, pods, pl.Active[p])
	var entry *testkit.Instance
	for _, in := range pods {
		if in.Name != victim.Name && !slices.Contains(pl.Standbys[p], in.Name) {
			entry = in
		}
	}
	t.Logf("partition %d of %q: active on %s, standby on %v; subscribing through %s", p, key, victim.Name, pl.Standbys[p], entry.Name)

	victim.Kill()
	killed := time.Now()
	strict := sseMustSubscribe(t, sseURL(entry, key, false), nil)
	bounded := sseMustSubscribe(t, sseURL(entry, key, false)+"&max_lag=1000", nil)
	bounded.waitValues(t, 10*time.Second, map[string]int64{key: n})
	fed := time.Since(killed)
	if got := strict.counts(t); len(got) != 0 {
		t.Errorf("the strict subscription got %+v while the owner was dead; want a wait", got)
	}
	if owner, _ := sseOwnerOf(t, entry, key); owner != victim.Name {
		t.Logf("the group had moved partition %d to %s already", p, owner)
	}
	t.Logf("the bounded subscription had the count %d from the standby %s after the kill", n, fed.Round(time.Millisecond))

	testkit.Produce(t, b.Addr(), input, "murmur2_random", sseRecords(key, 50))
	for _, s := range []*sseStream{strict, bounded} {
		s.waitValues(t, time.Minute, map[string]int64{key: n + 50})
		sseCheckStream(t, s, key, false)
		if _, done, err := s.snapshot(); done {
			t.Errorf("%s ended: %v", s.url, err)
		}
	}
}
