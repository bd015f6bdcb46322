package e2e

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/abacus-streams/abacus/internal/testkit"
	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
)

// noSessionFailures fails the test if a member's log shows a failed session
// or the ERROR state.
func noSessionFailures(t *testing.T, pods []*testkit.Instance) {
	t.Helper()
	for _, in := range pods {
		log := in.Log()
		for _, bad := range []string{"session failed", `"state":"ERROR"`, "state=ERROR"} {
			if i := strings.Index(log, bad); i >= 0 {
				t.Errorf("%s logged %q: %s", in.Name, bad, log[max(0, i-400):min(len(log), i+200)])
			}
		}
	}
}

// A scale-out is routine: three members started together (the first one
// counts while the others join, a cooperative rebalance) count a burst
// exactly under at_least_once, with no failed session; then input flows
// while a fourth member joins and later leaves on SIGTERM, and every key
// is still exact. The group refuses offsets committed while it
// rebalances; the member commits them again in the new generation
// instead of starting over from the last committed offsets.
func TestRoutineRebalancesCountExactlyAtLeastOnce(t *testing.T) {
	b := testkit.StartBroker(t, 6)
	env := scaling(map[string]string{"ABACUS_PARTITIONS": "6"})
	pods := testkit.StartMembers(t, b.Addr(), 4, env)
	fourth := pods[3]
	fourth.Stop(time.Minute) // started with the others for its address; joins later
	pods = pods[:3]
	w := skewed(7, 30_000, 2_500)
	testkit.Produce(t, b.Addr(), input, "murmur2_random", w.records)
	waitCounts(t, 2*time.Minute, pods, w.truth, false)
	exactOnEveryMember(t, pods, w.truth)
	noSessionFailures(t, pods)

	more := skewed(8, 40_000, 2_500)
	f := startFeeder(t, b.Addr(), more, 2_000)
	waitProgress(t, f, 0.2)
	fourth.Restart()
	fourth.WaitReady(2 * time.Minute)
	testkit.Eventually(t, time.Minute, func() error { return atLeastMetric(fourth, "abacus_records_processed_total", 1) })
	waitProgress(t, f, 0.7)
	fourth.Stop(time.Minute)
	<-f.done
	f.check(t)
	waitCounts(t, 2*time.Minute, pods, w.add(more).truth, false)
	exactOnEveryMember(t, pods, w.add(more).truth)
	noSessionFailures(t, append(pods, fourth))
}

// exactOnEveryMember asks every member for every key (a member that does
// not own a key asks its owner) and wants the exact count from each.
func exactOnEveryMember(t *testing.T, pods []*testkit.Instance, truth map[string]int64) {
	t.Helper()
	for _, in := range pods {
		wrong := 0
		for k, want := range truth {
			kc, code, err := in.Count(storeName, k)
			if err != nil || code != 200 || kc.Value != want {
				if wrong++; wrong <= 3 {
					t.Errorf("%s answers %q with %d %d (%v), want %d", in.Name, k, code, kc.Value, err, want)
				}
			}
		}
		if wrong > 3 {
			t.Errorf("%s answers %d keys of %d wrongly", in.Name, wrong, len(truth))
		}
	}
}

// scaling are settings for tests where members leave for good: a static
// member's partitions move when its session times out, 15 s here, long
// enough for a loaded machine's heartbeats (see steady). A static member
// stopped just after it rejoined a rebalance (the fourth member of
// TestRoutineRebalancesCountExactlyAtLeastOnce, stopped as soon as all
// four are ready, can be) holds the rebalance until its rebalance timeout,
// on Kafka as on the embedded broker: librdkafka's max.poll.interval.ms,
// 30 s here as in the rolling tests (docs/reliability.md), where the 5
// minutes of its default outlast every wait of the tests.
func scaling(env map[string]string) map[string]string {
	out := map[string]string{"ABACUS_KAFKA_SESSION_TIMEOUT_MS": "15000", "ABACUS_KAFKA_HEARTBEAT_INTERVAL_MS": "1000",
		"ABACUS_KAFKA_MAX_POLL_INTERVAL_MS": "30000"}
	for k, v := range env {
		out[k] = v
	}
	return out
}

// waitProgress waits until the feeder has handed share of its records over.
func waitProgress(t *testing.T, f *feeder, share float64) {
	t.Helper()
	testkit.Eventually(t, 2*time.Minute, func() error {
		if p := f.progress(); p < share {
			return fmt.Errorf("feeder at %.0f%%, waiting for %.0f%%", 100*p, 100*share)
		}
		return nil
	})
}

// Scaling 1 -> 3 -> 1 while input flows: members join and leave on
// SIGTERM, and every key is exact under at_least_once. A static member
// does not leave the group on SIGTERM: its partitions move when its
// session times out (15 s here).
func TestScaleOutAndInAtLeastOnce(t *testing.T) {
	b := testkit.StartBroker(t, 6)
	env := scaling(map[string]string{"ABACUS_PARTITIONS": "6"})
	pods := testkit.StartMembers(t, b.Addr(), 3, env)
	for _, in := range pods[1:] {
		in.Stop(time.Minute)
	}
	w := skewed(9, 60_000, 2_500)
	f := startFeeder(t, b.Addr(), w, 2_000)
	waitProgress(t, f, 0.15)
	for _, in := range pods[1:] {
		in.Restart()
	}
	for _, in := range pods[1:] {
		in.WaitReady(2 * time.Minute)
		testkit.Eventually(t, time.Minute, func() error { return atLeastMetric(in, "abacus_records_processed_total", 1) })
	}
	waitProgress(t, f, 0.6)
	for _, in := range pods[1:] {
		in.Stop(time.Minute)
	}
	<-f.done
	f.check(t)
	waitCounts(t, 2*time.Minute, pods[:1], w.truth, false)
	noSessionFailures(t, pods)
}

// changelogEnd is the sum of the changelog's end offsets.
func changelogEnd(t *testing.T, brokers string) int64 {
	t.Helper()
	c, err := kafka.NewConsumer(&kafka.ConfigMap{"bootstrap.servers": brokers, "group.id": "e2e-watermarks", "allow.auto.create.topics": false})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var sum int64
	for p := range 6 {
		_, high, err := c.QueryWatermarkOffsets(changelog, int32(p), 10_000)
		if err != nil {
			t.Fatal(err)
		}
		sum += high
	}
	return sum
}

// A rolling restart of three members while input flows (SIGTERM, restart
// on the same disk, ready, then the next), under both guarantees: every
// key is exact afterwards, no session fails, and each member restores no
// more than the changelog records written while it was down.
func TestRollingRestart(t *testing.T) {
	for _, guarantee := range []string{"at_least_once", "exactly_once_v2"} {
		t.Run(guarantee, func(t *testing.T) {
			b := testkit.StartBroker(t, 6)
			pods := testkit.StartMembers(t, b.Addr(), 3, steady(map[string]string{
				"ABACUS_PARTITIONS": "6", "ABACUS_PROCESSING_GUARANTEE": guarantee}))
			base := skewed(10, 40_000, 2_500)
			testkit.Produce(t, b.Addr(), input, "murmur2_random", base.records)
			waitCounts(t, 2*time.Minute, pods, base.truth, false)
			w := skewed(11, 60_000, 2_500)
			f := startFeeder(t, b.Addr(), w, 2_000)
			waitProgress(t, f, 0.1)
			for _, in := range pods {
				before := changelogEnd(t, b.Addr())
				in.Stop(time.Minute)
				in.Restart()
				in.WaitReady(2 * time.Minute)
				written := changelogEnd(t, b.Addr()) - before
				if got := metric(t, in, "abacus_restored_records_total"); got > float64(written) {
					t.Errorf("%s restored %v changelog records after its restart, more than the %d written while it was down", in.Name, got, written)
				}
			}
			<-f.done
			f.check(t)
			waitCounts(t, 2*time.Minute, pods, base.add(w).truth, false)
			noSessionFailures(t, pods)
		})
	}
}

// topicPartitions reads every topic's partition count from the broker.
func topicPartitions(t *testing.T, brokers string) map[string]int {
	t.Helper()
	admin, err := kafka.NewAdminClient(&kafka.ConfigMap{"bootstrap.servers": brokers, "allow.auto.create.topics": false})
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	md, err := admin.GetMetadata(nil, true, 10_000)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]int{}
	for name, tm := range md.Topics {
		out[name] = len(tm.Partitions)
	}
	return out
}

// Five members started at the same moment on a fresh broker that
// auto-creates topics with 3 partitions all become ready, and every topic
// has ABACUS_PARTITIONS (6): no client of abacus lets the broker
// auto-create a topic.
func TestParallelFirstStartCreatesEveryTopicWithItsPartitions(t *testing.T) {
	for round := range 10 {
		t.Run(fmt.Sprintf("round%d", round), func(t *testing.T) {
			b := testkit.StartBroker(t, 3)
			pods := testkit.StartMembers(t, b.Addr(), 5, map[string]string{"ABACUS_PARTITIONS": "6"})
			got := topicPartitions(t, b.Addr())
			for _, topic := range []string{input, output, changelog, dlq} {
				if got[topic] != 6 {
					t.Errorf("topic %s has %d partitions, want 6 (all: %v)", topic, got[topic], got)
				}
			}
			noSessionFailures(t, pods)
			for _, in := range pods {
				in.Kill()
			}
		})
	}
}

// A subscriber is never refused for a reason that passes by itself: a key
// subscription on a member that does not own the key answers 200 at once
// and follows the key while its owner and then the third member restart
// (SIGTERM, same disk), input flowing all along. A subscription opened
// while the owner is down answers 200 too, with a comment saying what it
// waits for. Both end on the key's exact count, with values that only
// ever rose, on a stream that never ended.
func TestSubscriptionFollowsItsKeyThroughARollingRestart(t *testing.T) {
	b := testkit.StartBroker(t, 6)
	pods := testkit.StartMembers(t, b.Addr(), 3, steady(map[string]string{"ABACUS_PARTITIONS": "6"}))
	w := skewed(12, 40_000, 2_000)
	key, _ := w.hottest()
	owner, others, _ := sseOwner(t, pods, key)
	entry, third := others[0], others[1]

	first, a, err := sseOpen(sseClient, sseURL(entry, key, false), nil)
	if err != nil || first == nil {
		t.Fatalf("subscribe at %s: %s %v; want 200", entry.Name, a, err)
	}
	t.Cleanup(first.close)
	f := startFeeder(t, b.Addr(), w, 2_500)
	waitProgress(t, f, 0.1)
	owner.Stop(time.Minute)
	second, a, err := sseOpen(sseClient, sseURL(entry, key, false), nil)
	if err != nil || second == nil {
		t.Fatalf("subscribe at %s while the owner %s is down: %s %v; want 200", entry.Name, owner.Name, a, err)
	}
	t.Cleanup(second.close)
	owner.Restart()
	owner.WaitReady(2 * time.Minute)
	third.Stop(time.Minute)
	third.Restart()
	third.WaitReady(2 * time.Minute)
	<-f.done
	f.check(t)
	for _, s := range []*sseStream{first, second} {
		s.waitValues(t, 2*time.Minute, map[string]int64{key: w.truth[key]})
		prev := int64(-1)
		for _, e := range s.counts(t) {
			if e.Value <= prev {
				t.Errorf("%s: %q went from %d to %d", s.url, key, prev, e.Value)
			}
			prev = e.Value
		}
		if _, done, err := s.snapshot(); done {
			t.Errorf("%s ended: %v", s.url, err)
		}
	}
	waiting := false
	blocks, _, _ := second.snapshot()
	for _, bl := range blocks {
		waiting = waiting || strings.HasPrefix(bl.Comment, "waiting: ")
	}
	if !waiting {
		t.Errorf("the subscription opened while the owner was down said nothing of waiting: %+v", blocks[:min(5, len(blocks))])
	}
	noSessionFailures(t, pods)
}
