package bench

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"slices"
	"sync"
	"testing"
	"text/tabwriter"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"

	"github.com/abacus-streams/abacus/internal/partitioner"
	"github.com/abacus-streams/abacus/internal/testkit"
)

// The rolling restart benchmark: three members under a steady input rate,
// restarted one after the other as a StatefulSet's rolling update does
// (SIGTERM, the same disk, ready, then the next).
const (
	rollPartitions = 6
	rollRate       = 2_000 // input records per second
	rollKeys       = 5_000
	rollApp        = "counts-app"
	rollInput      = "input-topic"

	targetUnanswerable = 2 * time.Second // longest time a partition has no owner able to answer
	targetSteady       = 5 * time.Second // from the last member's readiness to lag back to steady
)

// BenchmarkRollingRestart measures, over a rolling restart of three
// members: the longest time any partition has no member able to answer a
// lookup of its keys (one key per partition asked through every member
// every 50 ms); the peak consumer lag (input end offsets minus the group's
// committed offsets, every 100 ms) against the peak of the 10 s before;
// and the time from the last member's readiness until the lag is back
// within the steady peak (x1.5, at least one commit interval's input).
func BenchmarkRollingRestart(b *testing.B) {
	for range b.N {
		rollingRestart(b)
	}
}

func rollingRestart(b *testing.B) {
	br := testkit.StartBroker(b, rollPartitions)
	brokers := br.Addr()
	pods := testkit.StartMembers(b, brokers, 3, map[string]string{
		"ABACUS_PARTITIONS": fmt.Sprint(rollPartitions),
		// The chart's session timeout: a member back within it gets its
		// partitions again without a rebalance.
		"ABACUS_KAFKA_SESSION_TIMEOUT_MS":    "60000",
		"ABACUS_KAFKA_HEARTBEAT_INTERVAL_MS": "3000",
	})
	admin := newAdmin(b, brokers)
	probeKeys := keyPerPartition(rollPartitions)
	var seed []testkit.Record
	for _, k := range probeKeys {
		seed = append(seed, testkit.Record{Key: []byte(k), Value: []byte("0")})
	}
	testkit.Produce(b, brokers, rollInput, "murmur2_random", seed)
	testkit.Eventually(b, time.Minute, func() error {
		for _, k := range probeKeys {
			if code, _, err := pods[0].Get("/api/v1/stores/" + storeName + "/keys/" + url.PathEscape(k)); err != nil || code != 200 {
				return fmt.Errorf("%q: %d %v", k, code, err)
			}
		}
		return nil
	})

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	wg.Add(3)
	go func() { defer wg.Done(); feed(ctx, b, brokers, rollRate) }()
	probes := newOutageProbe(probeKeys)
	go func() { defer wg.Done(); probes.run(ctx, pods) }()
	lags := &lagSeries{}
	go func() { defer wg.Done(); lags.run(ctx, admin.admin) }()

	time.Sleep(10 * time.Second) // the steady state to compare with: a measurement window, not a synchronisation
	baseline := lags.peakSince(time.Time{})
	rolled := time.Now()
	for _, in := range pods {
		in.Stop(time.Minute)
		in.Restart()
		in.WaitReady(2 * time.Minute)
	}
	lastReady := time.Now()
	steady := max(baseline+baseline/2, rollRate/5) // 200 ms commit interval's input
	var back time.Duration
	testkit.Eventually(b, 2*time.Minute, func() error {
		at, ok := lags.firstAtMostAfter(lastReady, steady)
		if !ok {
			return fmt.Errorf("lag above %d since the last member's readiness", steady)
		}
		back = at.Sub(lastReady)
		return nil
	})
	time.Sleep(2 * time.Second) // a tail of probes after the roll
	cancel()
	wg.Wait()

	longest, worstKey := probes.longest()
	peak := lags.peakSince(rolled)
	var restored float64
	for _, in := range pods {
		v, _ := in.Metric("abacus_restored_records_total")
		restored += v
	}
	w := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintf(w, "rolling restart of 3 members, %d partitions, %d records/s\t\n", rollPartitions, rollRate)
	fmt.Fprintf(w, "roll took\t%s\t(first SIGTERM to last ready)\n", secs(lastReady.Sub(rolled)))
	fmt.Fprintf(w, "longest unanswerable partition\t%s\t(key %q; target <= %s) %s\n", secs(longest), worstKey, targetUnanswerable, verdict(longest <= targetUnanswerable))
	fmt.Fprintf(w, "peak consumer lag\t%d\t(steady peak before the roll: %d)\n", peak, baseline)
	fmt.Fprintf(w, "lag back to steady\t%s\t(after the last readiness; target <= %s) %s\n", secs(back), targetSteady, verdict(back <= targetSteady))
	fmt.Fprintf(w, "changelog records restored\t%.0f\t(all members, after their restarts)\n", restored)
	w.Flush()
}

// keyPerPartition is one key of each partition under murmur2.
func keyPerPartition(n int) []string {
	keys := make([]string, n)
	found := 0
	for i := 0; found < n; i++ {
		k := fmt.Sprintf("probe-%d", i)
		if p := partitioner.Murmur2([]byte(k), int32(n)); keys[p] == "" {
			keys[p] = k
			found++
		}
	}
	return keys
}

// feed produces uniform keys at rate per second until ctx ends.
func feed(ctx context.Context, b testing.TB, brokers string, rate int) {
	p, err := kafka.NewProducer(&kafka.ConfigMap{
		"bootstrap.servers": brokers, "partitioner": "murmur2_random", "linger.ms": 5,
		"log_level": 3, "enable.metrics.push": false, "go.delivery.reports": false,
	})
	if err != nil {
		b.Error(err)
		return
	}
	defer p.Close()
	topic := rollInput
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	began, sent := time.Now(), 0
	for {
		select {
		case <-ctx.Done():
			p.Flush(5000)
			return
		case <-tick.C:
		}
		for due := int(time.Since(began).Seconds() * float64(rate)); sent < due; sent++ {
			_ = p.Produce(&kafka.Message{TopicPartition: kafka.TopicPartition{Topic: &topic, Partition: kafka.PartitionAny},
				Key: fmt.Appendf(nil, "key-%d", sent%rollKeys), Value: []byte("1")}, nil)
		}
	}
}

// outageProbe asks every member for one key of each partition and keeps,
// per key, the longest stretch in which no member answered it.
type outageProbe struct {
	keys  []string
	mu    sync.Mutex
	since []time.Time // start of the current outage; zero while answered
	worst []time.Duration
}

func newOutageProbe(keys []string) *outageProbe {
	return &outageProbe{keys: keys, since: make([]time.Time, len(keys)), worst: make([]time.Duration, len(keys))}
}

func (o *outageProbe) run(ctx context.Context, pods []*testkit.Instance) {
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for ctx.Err() == nil {
		for i, k := range o.keys {
			answered := false
			for _, in := range pods {
				if code, _, err := in.Get("/api/v1/stores/" + storeName + "/keys/" + url.PathEscape(k)); err == nil && code == 200 {
					answered = true
					break
				}
			}
			now := time.Now()
			o.mu.Lock()
			switch {
			case !answered && o.since[i].IsZero():
				o.since[i] = now
			case answered && !o.since[i].IsZero():
				o.worst[i] = max(o.worst[i], now.Sub(o.since[i]))
				o.since[i] = time.Time{}
			}
			o.mu.Unlock()
		}
		select {
		case <-ctx.Done():
		case <-tick.C:
		}
	}
}

func (o *outageProbe) longest() (time.Duration, string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	var d time.Duration
	key := ""
	for i, w := range o.worst {
		if !o.since[i].IsZero() {
			w = max(w, time.Since(o.since[i]))
		}
		if w > d {
			d, key = w, o.keys[i]
		}
	}
	return d, key
}

// lagSeries samples the group's lag on the input topic.
type lagSeries struct {
	mu  sync.Mutex
	at  []time.Time
	lag []int64
}

func (l *lagSeries) run(ctx context.Context, admin *kafka.AdminClient) {
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		if lag, err := inputLag(ctx, admin); err == nil {
			l.mu.Lock()
			l.at, l.lag = append(l.at, time.Now()), append(l.lag, lag)
			l.mu.Unlock()
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

func (l *lagSeries) peakSince(t time.Time) int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	var peak int64
	for i, at := range l.at {
		if !at.Before(t) {
			peak = max(peak, l.lag[i])
		}
	}
	return peak
}

// firstAtMostAfter is the first sample after t at or below limit.
func (l *lagSeries) firstAtMostAfter(t time.Time, limit int64) (time.Time, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	i, _ := slices.BinarySearchFunc(l.at, t, func(a, b time.Time) int { return a.Compare(b) })
	for ; i < len(l.at); i++ {
		if l.lag[i] <= limit {
			return l.at[i], true
		}
	}
	return time.Time{}, false
}

// inputLag is the input topic's end offsets minus the group's committed
// offsets, summed over partitions.
func inputLag(ctx context.Context, admin *kafka.AdminClient) (int64, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	topic := rollInput
	specs := map[kafka.TopicPartition]kafka.OffsetSpec{}
	for p := range int32(rollPartitions) {
		specs[kafka.TopicPartition{Topic: &topic, Partition: p}] = kafka.LatestOffsetSpec
	}
	high, err := admin.ListOffsets(ctx, specs)
	if err != nil {
		return 0, err
	}
	var end int64
	for _, h := range high.ResultInfos {
		if h.Error.Code() != kafka.ErrNoError {
			return 0, h.Error
		}
		end += int64(h.Offset)
	}
	committed, err := testkit.CommittedRecords(admin, rollApp, topic)
	if err != nil {
		return 0, err
	}
	return end - committed, nil
}
