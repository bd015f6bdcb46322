package e2e

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/abacus-streams/abacus/internal/partitioner"
	"github.com/abacus-streams/abacus/internal/testkit"
	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// Under at_least_once a restore keeps the larger of the stored and the
// changelog's count of a key: a member that lost its partitions can have
// sends that land after the new owner's newer counts, and replaying them in
// order would take counts back for good (the input offsets behind the
// newer counts are committed). The test appends lower counts to the
// changelog after the real ones, as such late sends do, and one higher
// count, then restores: from the checkpoint on the member's own disk, and
// the whole changelog on an empty one.
func TestRestoreKeepsTheLargerCountAtLeastOnce(t *testing.T) {
	b := testkit.StartBroker(t, 4)
	in := testkit.StartInstance(t, testkit.InstanceConfig{Name: "abacus-0", Brokers: b.Addr(), Env: steady(nil)})
	in.WaitReady(time.Minute)
	w := skewed(21, 5_000, 500)
	testkit.Produce(t, b.Addr(), input, "murmur2_random", w.records)
	waitCounts(t, 2*time.Minute, []*testkit.Instance{in}, w.truth, false)
	in.Stop(30 * time.Second)

	// The ten hottest keys get a late, lower count; one more key a newer,
	// higher one (which a restore must take).
	keys := slices.SortedFunc(maps.Keys(w.truth), func(a, b string) int { return int(w.truth[b] - w.truth[a]) })
	want := maps.Clone(w.truth)
	var late []testkit.Record
	for _, k := range keys[:10] {
		late = append(late, testkit.Record{Key: []byte(k), Value: []byte(strconv.FormatInt(w.truth[k]/2, 10))})
	}
	raised := keys[10]
	want[raised] += 3
	late = append(late, testkit.Record{Key: []byte(raised), Value: []byte(strconv.FormatInt(want[raised], 10))})
	// murmur2, as abacus places a key's changelog records: its task's partition.
	testkit.Produce(t, b.Addr(), changelog, "murmur2_random", late)

	in.Restart()
	in.WaitReady(time.Minute)
	if got := metric(t, in, "abacus_restored_records_total"); got != float64(len(late)) {
		t.Errorf("restart on its disk restored %v changelog records, want the %d appended", got, len(late))
	}
	waitCounts(t, 30*time.Second, []*testkit.Instance{in}, want, false)

	// An empty disk: the higher and the lower count meet in one restore.
	in.Stop(30 * time.Second)
	in.RestartWith(t.TempDir())
	in.WaitReady(time.Minute)
	waitCounts(t, 30*time.Second, []*testkit.Instance{in}, want, false)

	// Counting goes on from the kept count, and the changelog heals.
	more := workload{truth: map[string]int64{}}
	for _, k := range keys[:11] {
		more.records = append(more.records, testkit.Record{Key: []byte(k), Value: []byte("again")})
		more.truth[k]++
	}
	testkit.Produce(t, b.Addr(), input, "murmur2_random", more.records)
	for k, n := range more.truth {
		want[k] += n
	}
	waitCounts(t, time.Minute, []*testkit.Instance{in}, want, false)
	checkTopic(t, b.Addr(), changelog, "read_uncommitted", want, false)
}

// Under exactly_once_v2 a restore reads the changelog read_committed, whose
// end is the last stable offset: a transaction still open on the partition
// (a previous owner cut off from the broker, whose commit lands late)
// hides its records. The restore must wait for it to end, not stop at that
// end: once it commits, the input offsets it committed are the ones the
// member starts from, and counts restored without its records would be
// lost for good, with every input offset committed.
func TestRestoreWaitsForAnOpenTransactionExactlyOnce(t *testing.T) {
	b := testkit.StartBroker(t, 4)
	const key = "late-key"
	part := partitioner.Murmur2([]byte(key), 4)
	topic := changelog
	createTopic(t, b.Addr(), input, 4)
	createTopic(t, b.Addr(), changelog, 4)
	// What an earlier owner committed: the count 1.
	p, err := kafka.NewProducer(&kafka.ConfigMap{"bootstrap.servers": b.Addr(), "transactional.id": "earlier-owner",
		"log_level": 3, "enable.metrics.push": false})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := p.InitTransactions(ctx); err != nil {
		t.Fatal(err)
	}
	send := func(value string) {
		t.Helper()
		if err := p.BeginTransaction(); err != nil {
			t.Fatal(err)
		}
		done := make(chan kafka.Event, 1)
		if err := p.Produce(&kafka.Message{TopicPartition: kafka.TopicPartition{Topic: &topic, Partition: part}, Key: []byte(key), Value: []byte(value)}, done); err != nil {
			t.Fatal(err)
		}
		select {
		case ev := <-done:
			if err := ev.(*kafka.Message).TopicPartition.Error; err != nil {
				t.Fatalf("deliver %s=%s to the changelog: %v", key, value, err)
			}
		case <-time.After(30 * time.Second):
			t.Fatalf("%s=%s not delivered to the changelog in 30 s", key, value)
		}
	}
	send("1")
	if err := p.CommitTransaction(ctx); err != nil {
		t.Fatal(err)
	}
	// Its last transaction, still open when the member starts: the count 5.
	send("5")

	in := testkit.StartInstance(t, testkit.InstanceConfig{Name: "abacus-0", Brokers: b.Addr(),
		Env: steady(map[string]string{"ABACUS_PROCESSING_GUARANTEE": "exactly_once_v2"})})
	testkit.Eventually(t, time.Minute, func() error {
		if code, _, err := in.Get("/api/v1/streams/status"); err != nil || code != 200 {
			return fmt.Errorf("status: %d %v", code, err)
		}
		return nil
	})
	// While the transaction is open the task must not become ready with
	// the count 1.
	answersNothing(t, in, key, 3*time.Second, "while a transaction on its changelog partition was open: the restore ended without it")
	if err := p.CommitTransaction(ctx); err != nil {
		t.Fatal(err)
	}
	waitValue(t, in, key, 5, "the late transaction's count")
}

// A previous owner whose transaction committed input offsets (a
// TxnOffsetCommit the broker accepted while it still owned the partition)
// but whose changelog records were still on their way when the next owner
// began its restore: the partition moved without a revocation (a member
// cut off from the broker and expired). The next owner's consumer fetches
// the committed offset stable, after that transaction ends, so it starts
// past the transaction's input; a restore that read the changelog's end
// before the records landed ends without them: counts lost. The restore
// must first wait for the partition's committed offset to be stable, as
// Kafka Streams reads it before restoring.
func TestRestoreWaitsForAStableCommittedOffsetExactlyOnce(t *testing.T) {
	b := testkit.StartBroker(t, 4)
	const key = "moved-key"
	part := partitioner.Murmur2([]byte(key), 4)
	createTopic(t, b.Addr(), input, 4)
	createTopic(t, b.Addr(), changelog, 4)
	five := make([]testkit.Record, 5)
	for i := range five {
		five[i] = testkit.Record{Key: []byte(key), Value: []byte("v")}
	}
	testkit.Produce(t, b.Addr(), input, "murmur2_random", five)

	// The previous owner: its transaction has committed the input offset 5
	// for the group, and not yet sent its changelog record (the count 5).
	p, err := kafka.NewProducer(&kafka.ConfigMap{"bootstrap.servers": b.Addr(), "transactional.id": "previous-owner",
		"log_level": 3, "enable.metrics.push": false})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := p.InitTransactions(ctx); err != nil {
		t.Fatal(err)
	}
	if err := p.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	group, err := kafka.NewTestConsumerGroupMetadata("counts-app")
	if err != nil {
		t.Fatal(err)
	}
	inputTopic := input
	if err := p.SendOffsetsToTransaction(ctx, []kafka.TopicPartition{{Topic: &inputTopic, Partition: part, Offset: 5}}, group); err != nil {
		t.Fatalf("send the input offset to the transaction: %v", err)
	}

	in := testkit.StartInstance(t, testkit.InstanceConfig{Name: "abacus-0", Brokers: b.Addr(),
		Env: steady(map[string]string{"ABACUS_PROCESSING_GUARANTEE": "exactly_once_v2"})})
	// The member is assigned the partition and its restore starts while the
	// transaction is open; give it the time to end, were it to end early.
	testkit.Eventually(t, time.Minute, func() error {
		n, err := in.Metric("abacus_rebalances_total")
		if err != nil || n < 1 {
			return fmt.Errorf("no assignment yet (%v %v)", n, err)
		}
		return nil
	})
	// Longer than one committed-offset query (5 s), so that the wait is
	// logged.
	answersNothing(t, in, key, 6*time.Second, "while the transaction that committed its input offset was open: the restore ended before it")

	topic := changelog
	done := make(chan kafka.Event, 1)
	if err := p.Produce(&kafka.Message{TopicPartition: kafka.TopicPartition{Topic: &topic, Partition: part}, Key: []byte(key), Value: []byte("5")}, done); err != nil {
		t.Fatal(err)
	}
	if err := (<-done).(*kafka.Message).TopicPartition.Error; err != nil {
		t.Fatalf("deliver %s=5 to the changelog: %v", key, err)
	}
	if err := p.CommitTransaction(ctx); err != nil {
		t.Fatal(err)
	}
	testkit.Produce(t, b.Addr(), input, "murmur2_random", five[:1])
	waitValue(t, in, key, 6, "5 from the previous owner, 1 since")
	if !strings.Contains(in.Log(), "waiting for a transaction that commits the task's input offset") {
		t.Errorf("the member did not log why its restore waited")
	}
}

// waitValue waits, at most a minute, until in answers key with want
// (what the count is, for the failure message).
func waitValue(t *testing.T, in *testkit.Instance, key string, want int64, what string) {
	t.Helper()
	testkit.Eventually(t, time.Minute, func() error {
		kc, code, err := in.Count(storeName, key)
		if err != nil || code != 200 {
			return fmt.Errorf("GET %s: %d %v", key, code, err)
		}
		if kc.Value != want {
			return fmt.Errorf("%q = %d, want %d (%s)", key, kc.Value, want, what)
		}
		return nil
	})
}

// answersNothing asserts that key gets no count from in for the whole of
// within (sampled every 100 ms): its task must still be restoring.
func answersNothing(t *testing.T, in *testkit.Instance, key string, within time.Duration, why string) {
	t.Helper()
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		if kc, code, err := in.Count(storeName, key); err == nil && code == 200 {
			t.Fatalf("answered %d for %q %s", kc.Value, key, why)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// A restored task starts where its state ends by seeking there, and
// librdkafka refuses the seek (ERR__STATE) until the consumer has started
// fetching the partition, which waits for the consumer's own query of the
// committed offsets. When that query is slower than the restore (it waits
// behind an open transaction, another partition's query, or a coordinator
// being found), the task must wait for it rather than end the session:
// a session restart rebalances the whole group. The broker answers the
// consumer's query (both partitions) with UNSTABLE_OFFSET_COMMIT while the
// restore's own query (one partition) goes through.
func TestRestoredTaskWaitsForTheConsumerToStartFetchingExactlyOnce(t *testing.T) {
	b := testkit.StartBroker(t, 1)
	createTopic(t, b.Addr(), input, 2)
	createTopic(t, b.Addr(), changelog, 2)
	env := steady(map[string]string{"ABACUS_PROCESSING_GUARANTEE": "exactly_once_v2", "ABACUS_PARTITIONS": "2"})
	in := testkit.StartInstance(t, testkit.InstanceConfig{Name: "abacus-0", Brokers: b.Addr(), Env: env})
	in.WaitReady(time.Minute)
	w := skewed(31, 2_000, 200)
	testkit.Produce(t, b.Addr(), input, "murmur2_random", w.records)
	waitCounts(t, 2*time.Minute, []*testkit.Instance{in}, w.truth, false)
	in.Stop(30 * time.Second)

	// Like a broker with a transaction open on the group: each partition
	// of the answer is UNSTABLE_OFFSET_COMMIT, and librdkafka asks again.
	c := b.Cluster()
	var unstable atomic.Bool
	unstable.Store(true)
	c.ControlKey(int16(kmsg.OffsetFetch), func(req kmsg.Request) (kmsg.Response, error, bool) {
		if !unstable.Load() {
			return nil, nil, false
		}
		c.KeepControl()
		of := req.(*kmsg.OffsetFetchRequest)
		if offsetFetchPartitions(of) < 2 {
			return nil, nil, false
		}
		return unstableOffsets(of), nil, true
	})
	defer unstable.Store(false)
	in.Restart()
	testkit.Eventually(t, time.Minute, func() error {
		if n := strings.Count(in.Log(), "waiting for the consumer to start fetching its input"); n < 2 {
			return fmt.Errorf("%d of 2 restored tasks wait for the consumer to start fetching", n)
		}
		return nil
	})
	if code, _, err := in.Get("/readyz"); err != nil || code != 503 {
		t.Fatalf("ready while its tasks wait to start: %d, %v (want 503)", code, err)
	}
	unstable.Store(false)

	more := skewed(32, 500, 200)
	testkit.Produce(t, b.Addr(), input, "murmur2_random", more.records)
	want := maps.Clone(w.truth)
	for k, n := range more.truth {
		want[k] += n
	}
	waitCounts(t, 2*time.Minute, []*testkit.Instance{in}, want, false)
	if n, err := in.Metric("abacus_session_restarts_total"); err != nil || n != 0 {
		t.Fatalf("abacus_session_restarts_total = %v, %v; want 0 (the session ended instead of waiting)", n, err)
	}
}

// unstableOffsets answers every partition of an OffsetFetch with
// UNSTABLE_OFFSET_COMMIT.
func unstableOffsets(req *kmsg.OffsetFetchRequest) *kmsg.OffsetFetchResponse {
	resp := req.ResponseKind().(*kmsg.OffsetFetchResponse)
	for _, g := range req.Groups {
		rg := kmsg.NewOffsetFetchResponseGroup()
		rg.Group = g.Group
		for _, tp := range g.Topics {
			rt := kmsg.NewOffsetFetchResponseGroupTopic()
			rt.Topic = tp.Topic
			for _, p := range tp.Partitions {
				rp := kmsg.NewOffsetFetchResponseGroupTopicPartition()
				rp.Partition, rp.Offset, rp.LeaderEpoch, rp.ErrorCode = p, -1, -1, kerr.UnstableOffsetCommit.Code
				rt.Partitions = append(rt.Partitions, rp)
			}
			rg.Topics = append(rg.Topics, rt)
		}
		resp.Groups = append(resp.Groups, rg)
	}
	for _, tp := range req.Topics {
		rt := kmsg.NewOffsetFetchResponseTopic()
		rt.Topic = tp.Topic
		for _, p := range tp.Partitions {
			rp := kmsg.NewOffsetFetchResponseTopicPartition()
			rp.Partition, rp.Offset, rp.LeaderEpoch, rp.ErrorCode = p, -1, -1, kerr.UnstableOffsetCommit.Code
			rt.Partitions = append(rt.Partitions, rp)
		}
		resp.Topics = append(resp.Topics, rt)
	}
	return resp
}

// offsetFetchPartitions counts the partitions an OffsetFetch asks for.
func offsetFetchPartitions(req *kmsg.OffsetFetchRequest) int {
	n := 0
	for _, tp := range req.Topics {
		n += len(tp.Partitions)
	}
	for _, g := range req.Groups {
		for _, tp := range g.Topics {
			n += len(tp.Partitions)
		}
	}
	return n
}
